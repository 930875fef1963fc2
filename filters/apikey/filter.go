// Package apikey is the Tollgate API-key filter: it verifies the caller's key
// against the keystore (or a local table), authorises the method and path
// against the key's API products, strips the key and sets identity headers
// for the filters after it. This file only wires proxy-wasm callbacks to the
// pure packages: policy (decisions), gate (cache and coalescing) and
// identity (the header contract). See docs/apikey.md.
package apikey

import (
	"crypto/rand"
	"encoding/binary"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/filters/apikey/gate"
	"github.com/tollgate/tollgate/filters/apikey/policy"
	"github.com/tollgate/tollgate/shared/cache"
	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/table/shareddata"
)

// RootID is the root_id a module holding several filters registers New under.
const RootID = "apikey"

// New creates the filter's root context, for proxywasm.SetPluginFactory or
// proxywasm.RegisterPlugin; wasm/ is the standalone module.
func New(rootID uint32) proxywasm.PluginContext { return &plugin{rootID: rootID} }

type plugin struct {
	proxywasm.DefaultPluginContext
	rootID  uint32
	pol     *policy.Policy
	gate    *gate.Gate
	metrics *proxywasm.Metrics
	waiting map[uint32]*stream // streams paused until the gate finishes them
	hasher  *policy.Hasher     // nil when no random secret could be drawn
	// metric names by outcome and gate event, built once: no string is
	// built per request
	outcomeNames map[policy.Outcome]string
	eventNames   map[gate.Event]string
}

func (p *plugin) OnPluginStart(raw []byte) error {
	pol, err := policy.ParseConfig(raw)
	if err != nil {
		return err
	}
	p.pol = pol
	p.waiting = map[uint32]*stream{}
	if pol.Mode == policy.ModeStrip {
		return nil
	}
	p.defineMetrics()
	var shared *cache.Cache
	if pol.Local == nil {
		shared, err = cache.New(shareddata.Store{}, cache.Options{
			Namespace:  pol.CacheNamespace(),
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
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err == nil {
		p.hasher = policy.NewHasher(seed, max(pol.Cache.MaxEntries, 1024))
	} else {
		proxywasm.Log(proxywasm.LogLevelWarn, "apikey: no random secret ("+err.Error()+"): hashing every key")
	}
	return nil
}

// eventMetric names the counter of a gate event.
func eventMetric(e gate.Event) string {
	switch e {
	case gate.CacheHit:
		return policy.CacheMetric("hit")
	case gate.CacheMiss:
		return policy.CacheMetric("miss")
	case gate.CalloutOK:
		return policy.CalloutsMetric("ok")
	case gate.CalloutError:
		return policy.CalloutsMetric("error")
	case gate.Coalesced:
		return policy.MetricCoalesced
	}
	return policy.MetricCacheErrors
}

// defineMetrics is best effort: hosts without custom metrics (Google Cloud
// Service Extensions) must still run the filter, so a metric the host refuses
// is logged once and then simply not counted.
func (p *plugin) defineMetrics() {
	p.metrics = proxywasm.NewMetrics("apikey")
	p.outcomeNames = make(map[policy.Outcome]string, len(policy.Outcomes))
	p.eventNames = make(map[gate.Event]string, len(gate.Events))
	names := make([]string, 0, len(policy.Outcomes)+len(gate.Events))
	for _, o := range policy.Outcomes {
		p.outcomeNames[o] = policy.RequestsMetric(o)
		names = append(names, p.outcomeNames[o])
	}
	for _, e := range gate.Events {
		p.eventNames[e] = eventMetric(e)
		names = append(names, p.eventNames[e])
	}
	_ = p.metrics.Define(names...)
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

// host adapts proxy-wasm to gate.Host.
type host struct{ p *plugin }

func (host) Now() time.Time { return proxywasm.Now() }

func (h host) Dispatch(headers [][2]string, body []byte, timeout time.Duration, done func(int, []byte)) error {
	_, err := proxywasm.DispatchHttpCall(h.p.pol.Keystore.Cluster, headers, body, nil, timeout, func(r *proxywasm.CallResponse) {
		if r.Failed {
			done(0, nil)
			return
		}
		done(r.Status, r.Body)
	})
	if err != nil {
		proxywasm.Log(proxywasm.LogLevelError, "apikey: keystore callout: "+err.Error())
	}
	return err
}

// Finish resumes a paused stream from whatever callback the answer arrived in.
func (h host) Finish(id uint32, d policy.Decision) {
	s, ok := h.p.waiting[id]
	if !ok {
		return
	}
	delete(h.p.waiting, id)
	if err := proxywasm.Resume(id, func() bool { return s.finish(d) }); err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "apikey: "+err.Error())
	}
}

func (host) SetTick(d time.Duration) {
	if err := proxywasm.SetTickPeriod(d); err != nil {
		proxywasm.Log(proxywasm.LogLevelError, "apikey: set tick period: "+err.Error())
	}
}

func (h host) Count(e gate.Event) {
	name, ok := h.p.eventNames[e]
	if !ok {
		name = eventMetric(e)
	}
	h.p.metrics.Inc(name)
}

// hash is the key's SHA-256 hex, remembered per VM under a keyed fingerprint.
func (p *plugin) hash(key string) string {
	if p.hasher == nil {
		return policy.HashKey(key)
	}
	return p.hasher.Hash(key, proxywasm.Now())
}

type stream struct {
	proxywasm.DefaultHttpContext
	p       *plugin
	id      uint32
	headers [][2]string       // the request headers as they arrived
	x       policy.Extraction // where the key was
}

func (s *stream) OnRequestHeaders(int, bool) proxywasm.Action {
	pol := s.p.pol
	// One snapshot in, at most one header-map write out: host calls that
	// return data are the filter's most expensive operations.
	all, err := proxywasm.RequestHeaders.GetAll()
	if err != nil {
		proxywasm.Log(proxywasm.LogLevelError, "apikey: read request headers: "+err.Error())
	}
	s.headers = all
	if pol.Mode == policy.ModeStrip {
		s.write(policy.Decision{Pass: true})
		return proxywasm.ActionContinue
	}
	get := func(name string) (string, bool) {
		for _, kv := range all {
			if kv[0] == name {
				return kv[1], true
			}
		}
		return "", false
	}
	path, _ := get(":path")
	method, _ := get(":method")
	s.x = pol.Extract(get, path)
	// The path the upstream will see (query keys cut out) is judged first:
	// an ambiguous one is refused before any key lookup.
	bad := policy.CheckPath(s.x.Path)
	var d policy.Decision
	switch {
	case bad != "":
		d = pol.BadPath(bad)
	case s.x.Key == "":
		d = pol.Missing()
	case !pol.Screen(s.x.Key):
		d = pol.Invalid(s.x.Source, "")
	default:
		var done bool
		d, done = s.p.gate.Check(gate.Request{Stream: s.id, Source: s.x.Source, Method: method, Path: s.x.Path}, s.p.hash(s.x.Key))
		if !done {
			s.p.waiting[s.id] = s
			return proxywasm.ActionPause
		}
	}
	s.x.Key = "" // not needed any more
	if s.finish(d) {
		return proxywasm.ActionPause
	}
	return proxywasm.ActionContinue
}

// finish carries out a decision on the current stream and reports whether a
// local reply was sent.
func (s *stream) finish(d policy.Decision) (replied bool) {
	s.x.Key = ""
	name, ok := s.p.outcomeNames[d.Outcome]
	if !ok {
		name = policy.RequestsMetric(d.Outcome)
	}
	s.p.metrics.Inc(name)
	s.write(d)
	if d.Pass {
		return false
	}
	if err := proxywasm.SendError(d.Error, s.p.pol.Style, d.Headers...); err != nil {
		proxywasm.Log(proxywasm.LogLevelError, "apikey: send "+strconv.Itoa(d.Error.Status)+": "+err.Error())
	}
	return true
}

// write replaces the request headers when the decision changes them: spoofed
// identity and key carriers out (denied requests too, so no key reaches an
// access log), identity in.
func (s *stream) write(d policy.Decision) {
	out, changed := s.p.pol.UpstreamHeaders(s.headers, s.x, d)
	if !changed {
		return
	}
	if err := proxywasm.RequestHeaders.SetAll(out); err != nil {
		proxywasm.Log(proxywasm.LogLevelError, "apikey: write request headers: "+err.Error())
	}
}

func (s *stream) OnDone() {
	if _, ok := s.p.waiting[s.id]; ok {
		delete(s.p.waiting, s.id)
		s.p.gate.StreamDone(s.id)
	}
}
