//go:build !wasip1

package hosttest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/shared/proxywasm"
)

// Config describes the plugin and the Envoy around it.
type Config struct {
	// Plugin constructs the root context; nil uses what the package under
	// test registered (SetPluginFactory, or RegisterPlugin under RootID).
	Plugin func(rootContextID uint32) proxywasm.PluginContext
	// PluginConfig is the plugin's configuration, VMConfig the VM's.
	PluginConfig, VMConfig []byte
	// RootID, PluginName and VMID answer the plugin_* properties.
	RootID, PluginName, VMID string
	// AllowOnHeadersStopIteration is the PluginConfig option of that name.
	AllowOnHeadersStopIteration bool
	// Clusters are the clusters callouts may name; nil accepts any.
	Clusters []string
	// Callouts answers each callout after the callback that made it returns;
	// nil leaves callouts pending for Respond.
	Callouts func(c *Callout) *Response
	// Upstream answers requests the filter lets through; nil answers 200
	// with an empty body.
	Upstream func(r *Upstream) *Response
	// Properties adds or overrides properties by dotted path ("source.address").
	Properties map[string][]byte
	// LogLevel is the level the host reports (default info); every message is kept.
	LogLevel proxywasm.LogLevel
}

// Response is an HTTP answer from the upstream or a callout; Failed stands
// for a reset or an unreachable cluster (a callout answer with no headers).
type Response struct {
	Status   int
	Headers  [][2]string
	Body     []byte
	Trailers [][2]string
	// Chunks, when set, deliver the body in several data frames instead of Body.
	Chunks [][]byte
	Failed bool
}

// Callout is one proxy_http_call the plugin made.
type Callout struct {
	Token   uint32
	Cluster string
	Headers [][2]string
	Body    []byte
	Timeout time.Duration
	// Context is the context that dispatched it.
	Context uint32
}

// Header returns the first value of a callout request header, or "".
func (c *Callout) Header(name string) string { return get(c.Headers, name) }

// Upstream is the request as the plugin let it through to the upstream.
type Upstream struct {
	Headers  [][2]string
	Body     []byte
	Trailers [][2]string
}

// Header returns the first value of an upstream request header, or "".
func (u *Upstream) Header(name string) string { return get(u.Headers, name) }

// LogEntry is one message the plugin logged.
type LogEntry struct {
	Level proxywasm.LogLevel
	Msg   string
}

type metric struct {
	typ    proxywasm.MetricType
	name   string
	value  uint64
	values []uint64 // histogram observations
}

type sharedValue struct {
	value []byte
	cas   uint32
}

type queue struct {
	name  string
	items [][]byte
	owner *Host // the VM that registered it last: OnQueueReady runs there
}

// envoy is what one Envoy process shares between its workers' VMs.
type envoy struct {
	shared  map[string]sharedValue
	cas     uint32
	queues  []*queue
	metrics []*metric
	byName  map[string]uint32
}

// Host is one Envoy worker with the plugin loaded, for one test.
type Host struct {
	t        testing.TB
	cfg      Config
	guest    *proxywasm.Guest
	root     uint32
	current  uint32
	streams  map[uint32]*Stream
	inConfig bool // the plugin configuration is readable
	inVM     bool

	*envoy // shared data, queues and metrics, shared with the other workers

	callouts  []*Callout
	answering *Response // the callout answer being delivered

	tick     time.Duration
	logs     []LogEntry
	tasks    []func()
	draining bool
	done     int // proxy_done calls
}

// Start loads the plugin and configures it, like Envoy applying a listener
// with this filter; the error is the one Envoy would report for a rejected
// configuration. The host is removed when the test ends.
func Start(t testing.TB, cfg Config) (*Host, error) {
	t.Helper()
	return start(t, cfg, &envoy{shared: map[string]sharedValue{}, cas: 1, byName: map[string]uint32{}})
}

// NewWorker starts another worker VM of the same Envoy: its own plugin
// instance and contexts, the same shared data, queues and metrics.
func (h *Host) NewWorker(t testing.TB) *Host {
	t.Helper()
	w, err := start(t, h.cfg, h.envoy)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func start(t testing.TB, cfg Config, env *envoy) (*Host, error) {
	t.Helper()
	if cfg.LogLevel == 0 {
		cfg.LogLevel = proxywasm.LogLevelInfo
	}
	h := &Host{t: t, cfg: cfg, streams: map[uint32]*Stream{}, envoy: env}
	h.guest = proxywasm.Attach((*abi)(h))
	if cfg.Plugin != nil {
		h.guest.Use(cfg.Plugin)
	}
	t.Cleanup(func() {
		h.close()
		if t.Failed() {
			for _, l := range h.logs {
				t.Logf("plugin log [%d] %s", l.Level, l.Msg)
			}
		}
	})
	h.root = nextID()
	h.call(h.root, func() { h.guest.OnContextCreate(h.root, 0) })
	var ok bool
	h.inVM = true
	h.call(h.root, func() { ok = h.guest.OnVMStart(h.root, uint32(len(cfg.VMConfig))) })
	h.inVM = false
	if !ok {
		return h, fmt.Errorf("hosttest: VM start failed: %s", h.lastError())
	}
	h.inConfig = true
	h.call(h.root, func() { ok = h.guest.OnConfigure(h.root, uint32(len(cfg.PluginConfig))) })
	h.inConfig = false
	h.drain()
	if !ok {
		return h, fmt.Errorf("hosttest: configuration rejected: %s", h.lastError())
	}
	return h, nil
}

// ids hands out context ids and callout tokens unique in the test binary:
// every host's plugin lives in the one native VM of the proxywasm package.
var ids struct {
	sync.Mutex
	context, token uint32
}

func nextID() uint32 {
	ids.Lock()
	defer ids.Unlock()
	ids.context++
	return ids.context
}

func nextToken() uint32 {
	ids.Lock()
	defer ids.Unlock()
	ids.token += 4
	return ids.token
}

// close deletes the host's contexts and forgets its unanswered callouts.
func (h *Host) close() {
	for _, s := range h.streams {
		s.End()
	}
	for _, c := range h.callouts {
		h.guest.Forget(c.Token)
	}
	h.call(h.root, func() { h.guest.OnDelete(h.root) })
}

// New is Start for a configuration the test expects to be accepted.
func New(t testing.TB, cfg Config) *Host {
	t.Helper()
	h, err := Start(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *Host) lastError() string {
	for i := len(h.logs) - 1; i >= 0; i-- {
		if h.logs[i].Level >= proxywasm.LogLevelError {
			return h.logs[i].Msg
		}
	}
	return "no error logged"
}

// call runs one guest callback with ctx current.
func (h *Host) call(ctx uint32, f func()) {
	prev := h.current
	h.current = ctx
	defer func() { h.current = prev }()
	f()
}

// defer queues work that Envoy does after the running callback returns.
func (h *Host) later(f func()) { h.tasks = append(h.tasks, f) }

// drain runs the deferred work (local replies, resumed streams, callout
// answers, queue wake-ups) until none is left.
func (h *Host) drain() {
	if h.draining {
		return
	}
	h.draining = true
	defer func() { h.draining = false }()
	for n := 0; len(h.tasks) > 0; n++ {
		if n > 100000 {
			h.t.Fatal("hosttest: deferred work does not settle (a callout answered by another callout forever?)")
		}
		f := h.tasks[0]
		h.tasks = h.tasks[1:]
		f()
	}
}

// ---- what a test inspects and drives ----

// Logs returns every message logged so far.
func (h *Host) Logs() []LogEntry { return slices.Clone(h.logs) }

// Logged reports whether a logged message contains s.
func (h *Host) Logged(s string) bool {
	for _, l := range h.logs {
		if strings.Contains(l.Msg, s) {
			return true
		}
	}
	return false
}

// Counter returns a counter's value by name (0 when undefined).
func (h *Host) Counter(name string) uint64 { return h.metricValue(name, proxywasm.MetricCounter) }

// Gauge returns a gauge's value by name (0 when undefined).
func (h *Host) Gauge(name string) uint64 { return h.metricValue(name, proxywasm.MetricGauge) }

// Histogram returns a histogram's observations by name.
func (h *Host) Histogram(name string) []uint64 {
	if id, ok := h.byName[name]; ok && proxywasm.MetricType(id&3) == proxywasm.MetricHistogram {
		return slices.Clone(h.metric(id).values)
	}
	return nil
}

// Metrics returns every defined metric name.
func (h *Host) Metrics() []string {
	var names []string
	for _, m := range h.metrics {
		names = append(names, m.name)
	}
	return names
}

func (h *Host) metricValue(name string, t proxywasm.MetricType) uint64 {
	if id, ok := h.byName[name]; ok && proxywasm.MetricType(id&3) == t {
		return h.metric(id).value
	}
	return 0
}

// SharedData returns a shared-data value and its CAS.
func (h *Host) SharedData(key string) ([]byte, uint32, bool) {
	v, ok := h.shared[key]
	return slices.Clone(v.value), v.cas, ok
}

// SetSharedData writes a shared-data value as another VM would.
func (h *Host) SetSharedData(key string, value []byte) {
	h.shared[key] = sharedValue{value: slices.Clone(value), cas: h.nextCAS()}
}

// TickPeriod is the period the plugin last asked for (0: no ticks).
func (h *Host) TickPeriod() time.Duration { return h.tick }

// Tick runs OnTick now, then whatever it deferred.
func (h *Host) Tick() {
	h.call(h.root, func() { h.guest.OnTick(h.root) })
	h.drain()
}

// Callouts returns the callouts still waiting for an answer, oldest first.
func (h *Host) Callouts() []*Callout { return slices.Clone(h.callouts) }

// Respond answers a pending callout and runs what the answer resumes.
func (h *Host) Respond(token uint32, r *Response) {
	h.t.Helper()
	i := slices.IndexFunc(h.callouts, func(c *Callout) bool { return c.Token == token })
	if i < 0 {
		h.t.Fatalf("hosttest: no pending callout with token %d", token)
	}
	h.callouts = slices.Delete(h.callouts, i, i+1)
	h.answer(token, r)
	h.drain()
}

func (h *Host) answer(token uint32, r *Response) {
	if r == nil {
		r = &Response{Failed: true}
	}
	r = normalise(r)
	var nh, nt uint32
	if !r.Failed {
		nh, nt = uint32(len(r.Headers)), uint32(len(r.Trailers))
	}
	h.answering = r
	defer func() { h.answering = nil }()
	size := uint32(len(r.Body))
	if r.Failed {
		size = 0
	}
	h.call(h.root, func() { h.guest.OnHttpCallResponse(h.root, token, nh, size, nt) })
}

// normalise puts :status first in a response's headers and joins chunks.
func normalise(r *Response) *Response {
	c := *r
	if c.Failed {
		return &c
	}
	if c.Status == 0 {
		c.Status = 200
	}
	if c.Chunks != nil {
		c.Body = nil
		for _, ch := range c.Chunks {
			c.Body = append(c.Body, ch...)
		}
	}
	hdrs := [][2]string{{":status", fmt.Sprint(c.Status)}}
	for _, kv := range c.Headers {
		if kv[0] != ":status" {
			hdrs = append(hdrs, [2]string{strings.ToLower(kv[0]), kv[1]})
		}
	}
	c.Headers = hdrs
	return &c
}

func get(pairs [][2]string, name string) string {
	for _, kv := range pairs {
		if kv[0] == name {
			return kv[1]
		}
	}
	return ""
}

func (h *Host) nextCAS() uint32 {
	c := h.cas
	h.cas++
	if h.cas == 0 {
		h.cas = 1
	}
	return c
}

func (h *Host) metric(id uint32) *metric {
	i := int(id >> 2)
	if i < 1 || i > len(h.metrics) || h.metrics[i-1].typ != proxywasm.MetricType(id&3) {
		return nil
	}
	return h.metrics[i-1]
}
