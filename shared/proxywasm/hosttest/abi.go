//go:build !wasip1

package hosttest

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/shared/proxywasm"
)

// The NativeHost methods: what the plugin's host calls do in this host.

type status = proxywasm.Status

const (
	ok          = proxywasm.StatusOK
	notFound    = proxywasm.StatusNotFound
	badArgument = proxywasm.StatusBadArgument
)

// abi is the host seen from the plugin: Host's NativeHost methods, kept off Host's test API.
type abi Host

var _ proxywasm.NativeHost = (*abi)(nil)

func (h *Host) stream() *Stream { return h.streams[h.current] }

// Log keeps the message.
func (a *abi) Log(level proxywasm.LogLevel, msg string) status {
	h := (*Host)(a)
	h.logs = append(h.logs, LogEntry{Level: level, Msg: msg})
	return ok
}

// LogLevel answers Config.LogLevel.
func (a *abi) LogLevel() (proxywasm.LogLevel, status) { return a.cfg.LogLevel, ok }

// SetTickPeriod records the period; the test ticks with Tick.
func (a *abi) SetTickPeriod(ms uint32) status {
	h := (*Host)(a)
	h.tick = time.Duration(ms) * time.Millisecond
	return ok
}

// CurrentTimeNanos is the wall clock.
func (a *abi) CurrentTimeNanos() (uint64, status) { return uint64(time.Now().UnixNano()), ok }

func (h *Host) buffer(t proxywasm.BufferType) (*[]byte, bool, status) {
	switch t {
	case proxywasm.BufferRequestBody, proxywasm.BufferResponseBody:
		s := h.stream()
		if s == nil {
			return nil, false, notFound
		}
		if t == proxywasm.BufferRequestBody {
			return &s.req.buf, true, ok
		}
		return &s.resp.buf, true, ok
	case proxywasm.BufferHttpCallResponseBody:
		if h.answering == nil {
			return nil, false, notFound
		}
		return &h.answering.Body, false, ok
	case proxywasm.BufferPluginConfiguration:
		if !h.inConfig {
			return nil, false, notFound
		}
		return &h.cfg.PluginConfig, false, ok
	case proxywasm.BufferVMConfiguration:
		if !h.inVM {
			return nil, false, notFound
		}
		return &h.cfg.VMConfig, false, ok
	}
	return nil, false, notFound
}

// BufferSize is proxy_get_buffer_status.
func (a *abi) BufferSize(t proxywasm.BufferType) (int, status) {
	h := (*Host)(a)
	b, _, st := h.buffer(t)
	if st != ok {
		return 0, st
	}
	return len(*b), ok
}

// BufferBytes is proxy_get_buffer_bytes.
func (a *abi) BufferBytes(t proxywasm.BufferType, start, maxSize uint32) ([]byte, status) {
	h := (*Host)(a)
	b, _, st := h.buffer(t)
	if st != ok {
		return nil, st
	}
	n := uint64(len(*b))
	if uint64(start) > n {
		return nil, badArgument
	}
	end := min(uint64(start)+uint64(maxSize), n)
	return slices.Clone((*b)[start:end]), ok
}

// SetBufferBytes is proxy_set_buffer_bytes with Envoy's semantics: start 0
// drains size bytes and prepends data, start at or past the end appends.
func (a *abi) SetBufferBytes(t proxywasm.BufferType, start, size uint32, data []byte) status {
	h := (*Host)(a)
	b, mutable, st := h.buffer(t)
	if st != ok {
		return st
	}
	if !mutable {
		return badArgument
	}
	switch {
	case start == 0:
		drop := min(int(size), len(*b))
		*b = append(slices.Clone(data), (*b)[drop:]...)
	case int(start) >= len(*b):
		*b = append(*b, data...)
	default:
		return badArgument
	}
	return ok
}

// headerMap returns the map the plugin addresses and whether it may change it.
func (h *Host) headerMap(m proxywasm.MapType) (*[][2]string, status) {
	switch m {
	case proxywasm.MapHttpCallResponseHeaders, proxywasm.MapHttpCallResponseTrailers:
		if h.answering == nil {
			return nil, badArgument
		}
		if m == proxywasm.MapHttpCallResponseHeaders {
			return &h.answering.Headers, ok
		}
		return &h.answering.Trailers, ok
	}
	s := h.stream()
	if s == nil {
		return nil, badArgument
	}
	switch m {
	case proxywasm.MapRequestHeaders:
		if s.inLog {
			return &s.req.outHeaders, ok
		}
		if s.req.gone || s.req.headers == nil {
			return nil, badArgument
		}
		return &s.req.headers, ok
	case proxywasm.MapRequestTrailers:
		if s.req.trailers == nil {
			return nil, badArgument
		}
		return &s.req.trailers, ok
	case proxywasm.MapResponseHeaders:
		if s.resp.headers == nil {
			return nil, badArgument
		}
		return &s.resp.headers, ok
	case proxywasm.MapResponseTrailers:
		if s.resp.trailers == nil {
			return nil, badArgument
		}
		return &s.resp.trailers, ok
	}
	return nil, badArgument
}

func mapKey(k string) string {
	k = strings.ToLower(k)
	if k == "host" {
		return ":authority"
	}
	return k
}

// HeaderMapPairs is proxy_get_header_map_pairs; an unavailable map is empty.
func (a *abi) HeaderMapPairs(m proxywasm.MapType) ([][2]string, status) {
	h := (*Host)(a)
	p, st := h.headerMap(m)
	if st != ok {
		return nil, ok
	}
	return slices.Clone(*p), ok
}

// SetHeaderMapPairs is proxy_set_header_map_pairs.
func (a *abi) SetHeaderMapPairs(m proxywasm.MapType, pairs [][2]string) status {
	h := (*Host)(a)
	p, st := h.headerMap(m)
	if st != ok {
		return st
	}
	out := make([][2]string, 0, len(pairs))
	for _, kv := range pairs {
		out = append(out, [2]string{mapKey(kv[0]), kv[1]})
	}
	*p = out
	return ok
}

// HeaderMapValue is proxy_get_header_map_value: the first value.
func (a *abi) HeaderMapValue(m proxywasm.MapType, key string) (string, status) {
	h := (*Host)(a)
	p, st := h.headerMap(m)
	if st != ok {
		return "", st
	}
	k := mapKey(key)
	for _, kv := range *p {
		if kv[0] == k {
			return kv[1], ok
		}
	}
	return "", notFound
}

// AddHeaderMapValue is proxy_add_header_map_value.
func (a *abi) AddHeaderMapValue(m proxywasm.MapType, key, value string) status {
	h := (*Host)(a)
	p, st := h.headerMap(m)
	if st != ok {
		return st
	}
	*p = append(*p, [2]string{mapKey(key), value})
	return ok
}

// ReplaceHeaderMapValue is proxy_replace_header_map_value: every value goes, one is appended.
func (a *abi) ReplaceHeaderMapValue(m proxywasm.MapType, key, value string) status {
	if st := a.RemoveHeaderMapValue(m, key); st != ok {
		return st
	}
	return a.AddHeaderMapValue(m, key, value)
}

// RemoveHeaderMapValue is proxy_remove_header_map_value; a missing key is fine.
func (a *abi) RemoveHeaderMapValue(m proxywasm.MapType, key string) status {
	h := (*Host)(a)
	p, st := h.headerMap(m)
	if st != ok {
		return st
	}
	k := mapKey(key)
	*p = slices.DeleteFunc(*p, func(kv [2]string) bool { return kv[0] == k })
	return ok
}

// ContinueStream resumes the current stream after the running callback.
func (a *abi) ContinueStream(t proxywasm.StreamType) status {
	h := (*Host)(a)
	s := h.stream()
	if s == nil {
		return notFound
	}
	switch t {
	case proxywasm.StreamRequest:
		h.later(func() { s.resume(&s.req) })
	case proxywasm.StreamResponse:
		h.later(func() { s.resume(&s.resp) })
	default:
		return badArgument
	}
	return ok
}

// CloseStream resets the current stream.
func (a *abi) CloseStream(proxywasm.StreamType) status {
	h := (*Host)(a)
	s := h.stream()
	if s == nil {
		return notFound
	}
	s.reset = true
	return ok
}

// SendLocalResponse records a local reply, carried out after the callback.
func (a *abi) SendLocalResponse(code uint32, details string, body []byte, headers [][2]string, _ int32) status {
	h := (*Host)(a)
	s := h.stream()
	if s == nil {
		return notFound
	}
	if s.reply != nil {
		return ok
	}
	s.reply = &localReply{status: int(code), details: details, body: body, headers: headers}
	s.replied = true
	h.later(s.sendReply)
	return ok
}

// HttpCall records a callout; Config.Callouts answers it after the callback.
func (a *abi) HttpCall(cluster string, headers [][2]string, body []byte, _ [][2]string, timeoutMs uint32) (uint32, status) {
	h := (*Host)(a)
	if h.cfg.Clusters != nil && !slices.Contains(h.cfg.Clusters, cluster) {
		return 0, badArgument
	}
	if get(headers, ":method") == "" || get(headers, ":path") == "" || get(headers, ":authority") == "" {
		return 0, badArgument
	}
	c := &Callout{Token: nextToken(), Cluster: cluster, Headers: headers, Body: body,
		Timeout: time.Duration(timeoutMs) * time.Millisecond, Context: h.current}
	h.callouts = append(h.callouts, c)
	if h.cfg.Callouts != nil {
		h.later(func() {
			i := slices.Index(h.callouts, c)
			if i < 0 {
				return
			}
			h.callouts = slices.Delete(h.callouts, i, i+1)
			h.answer(c.Token, h.cfg.Callouts(c))
		})
	}
	return c.Token, ok
}

// SharedData is proxy_get_shared_data.
func (a *abi) SharedData(key string) ([]byte, uint32, status) {
	h := (*Host)(a)
	v, found := h.shared[key]
	if !found {
		return nil, 0, notFound
	}
	return slices.Clone(v.value), v.cas, ok
}

// SetSharedData is proxy_set_shared_data: cas 0 writes unconditionally, a stale cas is CAS_MISMATCH.
func (a *abi) SetSharedData(key string, value []byte, cas uint32) status {
	h := (*Host)(a)
	if cur, found := h.shared[key]; found && cas != 0 && cas != cur.cas {
		return proxywasm.StatusCASMismatch
	}
	h.shared[key] = sharedValue{value: slices.Clone(value), cas: h.nextCAS()}
	return ok
}

// RegisterSharedQueue is proxy_register_shared_queue.
func (a *abi) RegisterSharedQueue(name string) (uint32, status) {
	h := (*Host)(a)
	if id, _ := a.ResolveSharedQueue(h.cfg.VMID, name); id != 0 {
		h.queues[id-1].owner = h
		return id, ok
	}
	h.queues = append(h.queues, &queue{name: name, owner: h})
	return uint32(len(h.queues)), ok
}

// ResolveSharedQueue is proxy_resolve_shared_queue.
func (a *abi) ResolveSharedQueue(vmID, name string) (uint32, status) {
	h := (*Host)(a)
	if vmID != h.cfg.VMID {
		return 0, notFound
	}
	for i, q := range h.queues {
		if q.name == name {
			return uint32(i + 1), ok
		}
	}
	return 0, notFound
}

// EnqueueSharedQueue appends and wakes OnQueueReady after the callback.
func (a *abi) EnqueueSharedQueue(id uint32, data []byte) status {
	h := (*Host)(a)
	if id == 0 || int(id) > len(h.queues) {
		return notFound
	}
	q := h.queues[id-1]
	q.items = append(q.items, slices.Clone(data))
	o := q.owner
	o.later(func() { o.call(o.root, func() { o.guest.OnQueueReady(o.root, id) }) })
	return ok
}

// DequeueSharedQueue pops the oldest item; EMPTY when none.
func (a *abi) DequeueSharedQueue(id uint32) ([]byte, status) {
	h := (*Host)(a)
	if id == 0 || int(id) > len(h.queues) {
		return nil, notFound
	}
	q := h.queues[id-1]
	if len(q.items) == 0 {
		return nil, proxywasm.StatusEmpty
	}
	v := q.items[0]
	q.items = q.items[1:]
	return v, ok
}

// DefineMetric is proxy_define_metric: one id per name and type.
func (a *abi) DefineMetric(t proxywasm.MetricType, name string) (uint32, status) {
	h := (*Host)(a)
	if t > proxywasm.MetricHistogram {
		return 0, badArgument
	}
	if id, found := h.byName[name]; found && proxywasm.MetricType(id&3) == t {
		return id, ok
	}
	h.metrics = append(h.metrics, &metric{typ: t, name: name})
	id := uint32(len(h.metrics))<<2 | uint32(t)
	h.byName[name] = id
	return id, ok
}

// IncrementMetric is proxy_increment_metric.
func (a *abi) IncrementMetric(id uint32, delta int64) status {
	h := (*Host)(a)
	m := h.metric(id)
	if m == nil {
		return notFound
	}
	switch m.typ {
	case proxywasm.MetricCounter:
		if delta <= 0 {
			return badArgument
		}
		m.value += uint64(delta)
	case proxywasm.MetricGauge:
		m.value += uint64(delta)
	default:
		return badArgument
	}
	return ok
}

// RecordMetric is proxy_record_metric.
func (a *abi) RecordMetric(id uint32, v uint64) status {
	h := (*Host)(a)
	m := h.metric(id)
	if m == nil {
		return notFound
	}
	switch m.typ {
	case proxywasm.MetricCounter:
		m.value += v
	case proxywasm.MetricGauge:
		m.value = v
	default:
		m.values = append(m.values, v)
	}
	return ok
}

// Metric is proxy_get_metric.
func (a *abi) Metric(id uint32) (uint64, status) {
	h := (*Host)(a)
	m := h.metric(id)
	if m == nil {
		return 0, notFound
	}
	if m.typ == proxywasm.MetricHistogram {
		return 0, badArgument
	}
	return m.value, ok
}

// Property is proxy_get_property.
func (a *abi) Property(path []string) ([]byte, status) {
	h := (*Host)(a)
	key := strings.Join(path, ".")
	if v, found := h.cfg.Properties[key]; found {
		return slices.Clone(v), ok
	}
	switch key {
	case "plugin_name":
		return []byte(h.cfg.PluginName), ok
	case "plugin_root_id":
		return []byte(h.cfg.RootID), ok
	case "plugin_vm_id":
		return []byte(h.cfg.VMID), ok
	}
	s := h.stream()
	if s == nil {
		return nil, notFound
	}
	if v, found := s.props[key]; found {
		return slices.Clone(v), ok
	}
	switch key {
	case "source.address":
		return []byte("127.0.0.1:40000"), ok
	case "destination.address":
		return []byte("127.0.0.1:10000"), ok
	case "xds.route_name":
		return []byte{}, ok
	case "xds.cluster_name":
		return []byte("upstream"), ok
	case "response.code":
		if c := get(s.resp.headers, ":status"); c != "" {
			n, _ := strconv.ParseInt(c, 10, 64)
			return int64Bytes(n), ok
		}
		return nil, notFound
	}
	if strings.HasPrefix(key, "request.") {
		hdrs := s.req.headers
		if s.inLog {
			hdrs = s.req.outHeaders
		} else if s.req.gone {
			return nil, notFound
		}
		name := map[string]string{"request.path": ":path", "request.method": ":method",
			"request.host": ":authority", "request.scheme": ":scheme", "request.id": "x-request-id"}[key]
		if key == "request.url_path" {
			p := get(hdrs, ":path")
			if i := strings.IndexByte(p, '?'); i >= 0 {
				p = p[:i]
			}
			return []byte(p), ok
		}
		for _, kv := range hdrs {
			if name != "" && kv[0] == name {
				return []byte(kv[1]), ok
			}
		}
	}
	return nil, notFound
}

func int64Bytes(v int64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(uint64(v) >> (8 * i))
	}
	return b
}

// SetProperty stores a per-stream value, readable by its path.
func (a *abi) SetProperty(path []string, value []byte) status {
	h := (*Host)(a)
	s := h.stream()
	if s == nil {
		return notFound
	}
	s.props[strings.Join(path, ".")] = slices.Clone(value)
	return ok
}

// CallForeignFunction knows clear_route_cache, as Envoy does.
func (a *abi) CallForeignFunction(name string, _ []byte) ([]byte, status) {
	h := (*Host)(a)
	if name != "clear_route_cache" {
		return nil, notFound
	}
	if s := h.stream(); s != nil {
		s.clears++
	}
	return nil, ok
}

// SetEffectiveContext makes a live context current for the rest of the callback.
func (a *abi) SetEffectiveContext(id uint32) status {
	h := (*Host)(a)
	if _, live := h.streams[id]; !live && id != h.root {
		return badArgument
	}
	h.current = id
	return ok
}

// Done is proxy_done.
func (a *abi) Done() status {
	h := (*Host)(a)
	h.done++
	return ok
}
