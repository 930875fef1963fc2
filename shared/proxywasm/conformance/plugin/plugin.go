// Package plugin is the proxy-wasm conformance plugin: each request path
// exercises one ABI feature so that the same test cases can run against the
// wazero host, the native hosttest host and real Envoy (module: wasm/). It
// is a test artefact, not a product filter.
package plugin

import (
	"encoding/json"
	"errors"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/shared/proxywasm"
)

// New creates the plugin's root context.
func New(uint32) proxywasm.PluginContext { return &plugin{} }

// config is the plugin configuration (JSON).
type config struct {
	CalloutCluster string `json:"callout_cluster"`
	TickMillis     int    `json:"tick_ms"`
}

type plugin struct {
	proxywasm.DefaultPluginContext
	cfg      config
	vmID     string
	ticks    int
	queueID  uint32
	casSeen  map[string]uint32
	requests proxywasm.Counter
	inflight proxywasm.Gauge
	sizes    proxywasm.Histogram
}

func (p *plugin) OnPluginStart(raw []byte) error {
	p.cfg = config{CalloutCluster: "callout", TickMillis: 50}
	if len(raw) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p.cfg); err != nil {
			return err
		}
	}
	p.vmID = strconv.FormatInt(time.Now().UnixNano(), 36)
	p.casSeen = map[string]uint32{}
	var err error
	if p.requests, err = proxywasm.DefineCounter("conformance_requests_total"); err != nil {
		return err
	}
	if p.inflight, err = proxywasm.DefineGauge("conformance_inflight"); err != nil {
		return err
	}
	if p.sizes, err = proxywasm.DefineHistogram("conformance_request_path_bytes"); err != nil {
		return err
	}
	if p.queueID, err = proxywasm.RegisterSharedQueue("conformance_queue"); err != nil {
		return err
	}
	if p.cfg.TickMillis > 0 {
		return proxywasm.SetTickPeriod(time.Duration(p.cfg.TickMillis) * time.Millisecond)
	}
	return nil
}

func (p *plugin) OnTick() {
	p.ticks++
	key := "ticks:" + p.vmID
	_ = proxywasm.SetSharedData(key, []byte(strconv.Itoa(p.ticks)), 0)
}

func (p *plugin) OnQueueReady(id uint32) {
	for {
		item, err := proxywasm.DequeueSharedQueue(id)
		if err != nil {
			return
		}
		_ = proxywasm.SetSharedData("queue:last", item, 0)
	}
}

func (p *plugin) NewHttpContext(uint32) proxywasm.HttpContext { return &stream{p: p} }

type stream struct {
	proxywasm.DefaultHttpContext
	p     *plugin
	path  string
	query url.Values
}

// reply sends a local JSON response with a marker header.
func reply(status int, v any, extra ...[2]string) proxywasm.Action {
	body, _ := json.Marshal(v)
	hdrs := append([][2]string{{"content-type", "application/json"}, {"x-conformance", "local"}}, extra...)
	if err := proxywasm.SendLocalResponse(status, hdrs, body, "conformance"); err != nil {
		proxywasm.Log(proxywasm.LogLevelError, "send local response: "+err.Error())
	}
	return proxywasm.ActionPause
}

// recurse calls itself n deep; each frame keeps a little state so the
// compiler can neither inline nor loop it.
//
//go:noinline
func recurse(n int) int {
	if n == 0 {
		return 0
	}
	var pad [8]byte
	pad[n%8] = byte(n)
	return recurse(n-1) + int(pad[n%8]&1)
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func (s *stream) OnRequestHeaders(int, bool) proxywasm.Action {
	full, err := proxywasm.RequestHeaders.Get(":path")
	if err != nil {
		return reply(500, map[string]string{"error": "no :path: " + err.Error()})
	}
	s.path, s.query = full, url.Values{}
	if i := strings.IndexByte(full, '?'); i >= 0 {
		s.path = full[:i]
		s.query, _ = url.ParseQuery(full[i+1:])
	}
	_ = s.p.requests.Increment(1)
	_ = s.p.inflight.Add(1)
	_ = s.p.sizes.Record(uint64(len(full)))
	q := s.query.Get

	switch s.path {
	case "/headers":
		_ = proxywasm.RequestHeaders.Add("x-conf-added", "yes")
		_ = proxywasm.RequestHeaders.Remove("x-conf-remove")
		_ = proxywasm.RequestHeaders.Replace("x-conf-replace", "replaced")
		_ = proxywasm.RequestHeaders.Remove("x-conf-never-present")
		return proxywasm.ActionContinue
	case "/headers/all":
		all, err := proxywasm.RequestHeaders.GetAll()
		if err != nil {
			return reply(500, map[string]string{"error": err.Error()})
		}
		all = append(all, [2]string{"x-conf-set-all", strconv.Itoa(len(all))})
		if err := proxywasm.RequestHeaders.SetAll(all); err != nil {
			return reply(500, map[string]string{"error": err.Error()})
		}
		return proxywasm.ActionContinue
	case "/zero":
		_, missingErr := proxywasm.RequestHeaders.Get("x-conf-missing")
		empty, emptyErr := proxywasm.RequestHeaders.Get("x-conf-empty")
		return reply(200, map[string]any{
			"missing_not_found": errors.Is(missingErr, proxywasm.ErrNotFound),
			"empty_value":       empty, "empty_err": errString(emptyErr),
		})
	case "/local":
		return reply(418, map[string]string{"teapot": "yes", "path": s.path}, [2]string{"x-conf-local", "1"})
	case "/panic":
		panic("deliberate panic in request headers")
	case "/trap/stack":
		// A genuine Wasm trap, not a recovered Go panic: recursion deeper than
		// the engine's native stack (V8: "RangeError: Maximum call stack size
		// exceeded") kills the VM. FAIL_RELOAD replaces it on the next request.
		return reply(200, map[string]int{"depth": recurse(1 << 20)})
	case "/vmid":
		return reply(200, map[string]string{"vm": s.p.vmID})
	case "/property":
		pathProp, err1 := proxywasm.GetProperty("request", "path")
		name, err2 := proxywasm.GetProperty("plugin_name")
		return reply(200, map[string]string{
			"request.path": string(pathProp), "plugin_name": string(name),
			"err": errString(errors.Join(err1, err2)),
		})
	case "/log":
		proxywasm.Log(proxywasm.LogLevelWarn, "conformance-log-marker "+q("m"))
		return reply(200, map[string]string{"logged": q("m")})
	case "/shared/set":
		err := proxywasm.SetSharedData("kv:"+q("key"), []byte(q("value")), 0)
		return reply(200, map[string]string{"err": errString(err)})
	case "/shared/get":
		v, cas, err := proxywasm.GetSharedData("kv:" + q("key"))
		if errors.Is(err, proxywasm.ErrNotFound) {
			return reply(404, map[string]string{"err": "not found"})
		}
		return reply(200, map[string]any{"value": string(v), "cas": cas, "err": errString(err)})
	case "/cas/read":
		_, cas, err := proxywasm.GetSharedData("kv:" + q("key"))
		s.p.casSeen[q("key")] = cas
		return reply(200, map[string]any{"vm": s.p.vmID, "cas": cas, "err": errString(err)})
	case "/cas/write-stale":
		err := proxywasm.SetSharedData("kv:"+q("key"), []byte(q("value")), s.p.casSeen[q("key")])
		if errors.Is(err, proxywasm.ErrCASMismatch) {
			return reply(409, map[string]string{"vm": s.p.vmID, "err": "cas mismatch"})
		}
		return reply(200, map[string]string{"vm": s.p.vmID, "err": errString(err)})
	case "/bench/cas":
		// One compare-and-swap increment, the unit of every shared counter.
		for i := 0; i < 3; i++ {
			v, cas, err := proxywasm.GetSharedData("bench:cas")
			if err != nil && !errors.Is(err, proxywasm.ErrNotFound) {
				break
			}
			n, _ := strconv.Atoi(string(v))
			if proxywasm.SetSharedData("bench:cas", []byte(strconv.Itoa(n+1)), cas) == nil {
				break
			}
		}
		return proxywasm.ActionContinue
	case "/ticks":
		v, _, err := proxywasm.GetSharedData("ticks:" + s.p.vmID)
		n, _ := strconv.Atoi(string(v))
		return reply(200, map[string]any{"vm": s.p.vmID, "ticks": n, "local": s.p.ticks, "err": errString(err)})
	case "/queue/put":
		qid, err := proxywasm.ResolveSharedQueue(q("vm_id"), "conformance_queue")
		if err == nil {
			err = proxywasm.EnqueueSharedQueue(qid, []byte(q("item")))
		}
		return reply(200, map[string]string{"err": errString(err)})
	case "/queue/last":
		v, _, err := proxywasm.GetSharedData("queue:last")
		return reply(200, map[string]string{"item": string(v), "err": errString(err)})
	case "/metrics/value":
		v, err := s.p.requests.Value()
		return reply(200, map[string]any{"requests": v, "err": errString(err)})
	case "/memstats":
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return reply(200, map[string]any{"vm": s.p.vmID, "heap_alloc": ms.HeapAlloc, "heap_sys": ms.HeapSys, "sys": ms.Sys, "num_gc": ms.NumGC})
	case "/foreign/unknown":
		_, err := proxywasm.CallForeignFunction("tollgate_no_such_function", nil)
		return reply(200, map[string]string{"err": errString(err)})
	case "/route":
		_ = proxywasm.RequestHeaders.Replace("x-conf-target", q("target"))
		err := proxywasm.ClearRouteCache()
		_ = proxywasm.RequestHeaders.Replace("x-conf-route-cleared", errString(err))
		return proxywasm.ActionContinue
	case "/callout":
		return s.callout(s.p.cfg.CalloutCluster)
	case "/callout/unknown-cluster":
		return s.callout("no_such_cluster")
	case "/body/rewrite", "/body/append", "/body/prepend", "/panic/body":
		// The body changes size, so the original length must not reach the upstream.
		_ = proxywasm.RequestHeaders.Remove("content-length")
		return proxywasm.ActionContinue
	case "/response/rewrite":
		return proxywasm.ActionContinue
	}
	return proxywasm.ActionContinue
}

func (s *stream) callout(cluster string) proxywasm.Action {
	headers := [][2]string{{":method", "GET"}, {":path", "/callout-target?from=" + s.path}, {":authority", "callout.local"}, {"x-conf-callout", "1"}}
	_, err := proxywasm.DispatchHttpCall(cluster, headers, nil, nil, 2*time.Second, func(resp *proxywasm.CallResponse) {
		if resp.Failed {
			reply(502, map[string]string{"err": "callout failed"})
			return
		}
		_ = proxywasm.RequestHeaders.Replace("x-callout-status", strconv.Itoa(resp.Status))
		_ = proxywasm.RequestHeaders.Replace("x-callout-body-bytes", strconv.Itoa(len(resp.Body)))
		if err := proxywasm.ContinueRequest(); err != nil {
			proxywasm.Log(proxywasm.LogLevelError, "continue after callout: "+err.Error())
		}
	})
	if err != nil {
		return reply(502, map[string]string{"err": err.Error()})
	}
	return proxywasm.ActionPause
}

func (s *stream) OnRequestBody(size int, eos bool) proxywasm.Action {
	switch s.path {
	case "/body/rewrite", "/body/append", "/body/prepend", "/panic/body":
	default:
		return proxywasm.ActionContinue
	}
	if !eos {
		return proxywasm.ActionPause
	}
	body, err := proxywasm.RequestBody.GetAll()
	if err != nil {
		return reply(500, map[string]string{"err": err.Error()})
	}
	switch s.path {
	case "/panic/body":
		panic("deliberate panic in request body")
	case "/body/rewrite":
		err = proxywasm.RequestBody.Replace([]byte(strings.ToUpper(string(body)) + "|size=" + strconv.Itoa(size)))
	case "/body/append":
		err = proxywasm.RequestBody.Append([]byte("+appended"))
	case "/body/prepend":
		err = proxywasm.RequestBody.Prepend([]byte("prepended+"))
	}
	if err != nil {
		return reply(500, map[string]string{"err": err.Error()})
	}
	return proxywasm.ActionContinue
}

func (s *stream) OnResponseHeaders(int, bool) proxywasm.Action {
	_ = proxywasm.ResponseHeaders.Add("x-conf-response", "seen")
	if s.path == "/response/rewrite" {
		_ = proxywasm.ResponseHeaders.Remove("content-length")
	}
	return proxywasm.ActionContinue
}

func (s *stream) OnResponseBody(size int, eos bool) proxywasm.Action {
	if s.path != "/response/rewrite" {
		return proxywasm.ActionContinue
	}
	if !eos {
		return proxywasm.ActionPause
	}
	body, _ := proxywasm.ResponseBody.GetAll()
	out, _ := json.Marshal(map[string]any{"rewritten": true, "original_bytes": len(body), "callback_size": size})
	if err := proxywasm.ResponseBody.Replace(out); err != nil {
		proxywasm.Log(proxywasm.LogLevelError, "replace response body: "+err.Error())
	}
	return proxywasm.ActionContinue
}

func (s *stream) OnDone() { _ = s.p.inflight.Add(-1) }

// ChainRootID is the root_id of the conformance plugin run as the only link
// of a proxywasm chain, so that the conformance table also holds the chain
// machinery (the fused filter's) to real Envoy's behaviour.
const ChainRootID = "conformance-chain"

// NewChained constructs the chain of the conformance plugin alone.
func NewChained() func(rootContextID uint32) proxywasm.PluginContext {
	return proxywasm.NewChain([]proxywasm.Link{{Name: "conformance", New: New, AllowOnHeadersStopIteration: true}})
}

// ChainConfig is the chain's configuration for a conformance configuration.
func ChainConfig(config string) string { return `{"conformance": ` + config + `}` }
