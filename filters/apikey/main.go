// Command apikey is the Tollgate API-key filter: it verifies the caller's key
// against the keystore (or a local table), authorises the method and path
// against the key's API products, strips the key and sets identity headers
// for the filters after it. This file only wires proxy-wasm callbacks to the
// pure packages: policy (decisions), gate (cache and coalescing) and
// identity (the header contract). See docs/apikey.md.
package main

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"time"

	"github.com/tollgate/tollgate/filters/apikey/gate"
	"github.com/tollgate/tollgate/filters/apikey/internal/hostctx"
	"github.com/tollgate/tollgate/filters/apikey/policy"
	"github.com/tollgate/tollgate/shared/cache"
	"github.com/tollgate/tollgate/shared/proxywasm"
)

func init() {
	proxywasm.SetPluginFactory(func(rootID uint32) proxywasm.PluginContext { return &plugin{rootID: rootID} })
}

func main() {}

type plugin struct {
	proxywasm.DefaultPluginContext
	rootID   uint32
	pol      *policy.Policy
	gate     *gate.Gate
	outcomes map[policy.Outcome]proxywasm.Counter
	events   map[gate.Event]proxywasm.Counter
}

func (p *plugin) OnPluginStart(raw []byte) error {
	pol, err := policy.ParseConfig(raw)
	if err != nil {
		return err
	}
	p.pol = pol
	if pol.Mode == policy.ModeStrip {
		return nil
	}
	if err := p.defineMetrics(); err != nil {
		return err
	}
	var shared *cache.Cache
	if pol.Local == nil {
		shared, err = cache.New(sharedData{}, cache.Options{
			Namespace:  "tollgate.apikey.v1." + pol.Keystore.Cluster + pol.Keystore.Path,
			MaxEntries: pol.Cache.MaxEntries,
		})
		if err != nil {
			return err
		}
		if err := shared.Init(); err != nil {
			return err
		}
	}
	p.gate = gate.New(pol, shared, host{p}, ownerID(p.rootID))
	return nil
}

func (p *plugin) defineMetrics() error {
	p.outcomes = map[policy.Outcome]proxywasm.Counter{}
	for _, o := range policy.Outcomes {
		c, err := proxywasm.DefineCounter(policy.RequestsMetric(o))
		if err != nil {
			return err
		}
		p.outcomes[o] = c
	}
	p.events = map[gate.Event]proxywasm.Counter{}
	names := map[gate.Event]string{
		gate.CacheHit:     policy.CacheMetric("hit"),
		gate.CacheMiss:    policy.CacheMetric("miss"),
		gate.CalloutOK:    policy.CalloutsMetric("ok"),
		gate.CalloutError: policy.CalloutsMetric("error"),
		gate.Coalesced:    policy.MetricCoalesced,
		gate.CacheError:   policy.MetricCacheErrors,
	}
	for e, name := range names {
		c, err := proxywasm.DefineCounter(name)
		if err != nil {
			return err
		}
		p.events[e] = c
	}
	return nil
}

// ownerID is this VM's identity in cache claims: random, so a restarted VM
// never mistakes an old claim for its own.
func ownerID(rootID uint32) uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err == nil {
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
	return uint64(time.Now().UnixNano())<<8 | uint64(rootID&0xff) | 1
}

func (p *plugin) OnTick() {
	if p.gate != nil {
		p.gate.Tick()
	}
}

func (p *plugin) NewHttpContext(id uint32) proxywasm.HttpContext { return &stream{p: p, id: id} }

// apply carries out a decision on the current stream; it reports whether a
// local reply was sent.
func (p *plugin) apply(d policy.Decision) (replied bool) {
	if c, ok := p.outcomes[d.Outcome]; ok {
		_ = c.Increment(1)
	}
	if d.Pass {
		for _, kv := range d.Identity.Pairs(p.pol.Identity) {
			if err := proxywasm.RequestHeaders.Replace(kv[0], kv[1]); err != nil {
				proxywasm.Logf(proxywasm.LogLevelWarn, "apikey: set %s: %v", kv[0], err)
			}
		}
		return false
	}
	if err := proxywasm.SendError(d.Error, p.pol.Style, d.Headers...); err != nil {
		proxywasm.Logf(proxywasm.LogLevelError, "apikey: send %d: %v", d.Error.Status, err)
	}
	return true
}

// host adapts proxy-wasm to gate.Host.
type host struct{ p *plugin }

func (host) Now() time.Time { return time.Now() }

func (h host) Dispatch(headers [][2]string, body []byte, timeout time.Duration, done func(int, []byte)) error {
	_, err := proxywasm.DispatchHttpCall(h.p.pol.Keystore.Cluster, headers, body, nil, timeout, func(r *proxywasm.CallResponse) {
		if r.Failed {
			done(0, nil)
			return
		}
		done(r.Status, r.Body)
	})
	if err != nil {
		proxywasm.Logf(proxywasm.LogLevelError, "apikey: keystore callout: %v", err)
	}
	return err
}

// Finish resumes a paused stream from whatever callback the answer arrived in.
func (h host) Finish(id uint32, d policy.Decision) {
	if err := hostctx.Set(id); err != nil {
		proxywasm.Logf(proxywasm.LogLevelWarn, "apikey: stream %d gone: %v", id, err)
		return
	}
	defer func() {
		if r := recover(); r != nil {
			proxywasm.Logf(proxywasm.LogLevelError, "apikey: panic finishing stream %d: %v", id, r)
			_ = proxywasm.SendLocalResponse(500, [][2]string{{"content-type", "application/json"}},
				[]byte(`{"error":{"message":"internal error in the apikey filter","type":"server_error","param":null,"code":"filter_panic"}}`), "tollgate_apikey_panic")
		}
	}()
	if !h.p.apply(d) {
		if err := proxywasm.ContinueRequest(); err != nil {
			proxywasm.Logf(proxywasm.LogLevelWarn, "apikey: resume stream %d: %v", id, err)
		}
	}
}

func (host) SetTick(d time.Duration) {
	if err := proxywasm.SetTickPeriod(d); err != nil {
		proxywasm.Logf(proxywasm.LogLevelError, "apikey: set tick period: %v", err)
	}
}

func (h host) Count(e gate.Event) {
	if c, ok := h.p.events[e]; ok {
		_ = c.Increment(1)
	}
}

// sharedData adapts proxy-wasm shared data to cache.Store.
type sharedData struct{}

func (sharedData) Get(key string) ([]byte, uint32, bool, error) {
	v, cas, err := proxywasm.GetSharedData(key)
	if errors.Is(err, proxywasm.ErrNotFound) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	return v, cas, true, nil
}

func (sharedData) Set(key string, value []byte, cas uint32) (bool, error) {
	err := proxywasm.SetSharedData(key, value, cas)
	if errors.Is(err, proxywasm.ErrCASMismatch) {
		return false, nil
	}
	return err == nil, err
}

type stream struct {
	proxywasm.DefaultHttpContext
	p      *plugin
	id     uint32
	paused bool
}

func (s *stream) OnRequestHeaders(int, bool) proxywasm.Action {
	pol := s.p.pol
	for _, name := range pol.IdentityList {
		_ = proxywasm.RequestHeaders.Remove(name)
	}
	if pol.Mode == policy.ModeStrip {
		return proxywasm.ActionContinue
	}
	path, _ := proxywasm.RequestHeaders.Get(":path")
	method, _ := proxywasm.RequestHeaders.Get(":method")
	x := pol.Extract(func(name string) (string, bool) {
		v, err := proxywasm.RequestHeaders.Get(name)
		return v, err == nil
	}, path)
	for _, name := range x.RemoveHeaders {
		_ = proxywasm.RequestHeaders.Remove(name)
	}
	if x.PathChanged {
		if err := proxywasm.RequestHeaders.Replace(":path", x.Path); err != nil {
			proxywasm.Logf(proxywasm.LogLevelWarn, "apikey: strip query key: %v", err)
		}
	}
	var d policy.Decision
	switch {
	case x.Key == "":
		d = pol.Missing()
	case !pol.Screen(x.Key):
		d = pol.Invalid(x.Source, "")
	default:
		var done bool
		d, done = s.p.gate.Check(gate.Request{Stream: s.id, Source: x.Source, Method: method, Path: x.Path}, policy.HashKey(x.Key))
		if !done {
			s.paused = true
			return proxywasm.ActionPause
		}
	}
	if s.p.apply(d) {
		return proxywasm.ActionPause
	}
	return proxywasm.ActionContinue
}

func (s *stream) OnDone() {
	if s.paused && s.p.gate != nil {
		s.p.gate.StreamDone(s.id)
	}
}
