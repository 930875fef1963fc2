package proxywasm

import (
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/config"
)

// bytesPtr returns the address of b's data, nil for an empty slice; the host accepts (nil, 0) for empty values.
func bytesPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// stringPtr returns the address of s's data without copying.
func stringPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

// takePinned returns the host-filled buffer at addr and unpins it; the host returns (0, 0) for empty values.
func takePinned(addr, n uint32) ([]byte, error) {
	if n == 0 {
		delete(vm.pins, addr)
		return nil, nil
	}
	b, ok := vm.pins[addr]
	if !ok || uint32(len(b)) < n {
		return nil, ErrInvalidMemoryAccess
	}
	delete(vm.pins, addr)
	return b[:n:n], nil
}

// Log writes a message to the host log at the given level.
func Log(level LogLevel, msg string) {
	_ = proxy_log(uint32(level), stringPtr(msg), uint32(len(msg)))
}

// SetTickPeriod asks the host to call OnTick every d (0 stops the ticks); Envoy's resolution is milliseconds.
func SetTickPeriod(d time.Duration) error {
	if h := vm.hook; h != nil {
		return h.c.setTick(h.idx, d)
	}
	return StatusToError(Status(proxy_set_tick_period_milliseconds(uint32(d / time.Millisecond))))
}

// ---- header maps ----

// HeaderMap names one of the host's header maps; its methods act on the current stream.
type HeaderMap MapType

// The header maps an HTTP filter can read and change.
const (
	RequestHeaders   = HeaderMap(MapRequestHeaders)
	RequestTrailers  = HeaderMap(MapRequestTrailers)
	ResponseHeaders  = HeaderMap(MapResponseHeaders)
	ResponseTrailers = HeaderMap(MapResponseTrailers)
)

// Get returns the first value of a header; ErrNotFound when it is absent.
// From the second access to a map in a callback on, it is answered from one
// read of the whole map (headercache.go).
func (m HeaderMap) Get(key string) (string, error) {
	if e := vm.hdr.entry(MapType(m)); e != nil && e.load(MapType(m)) {
		if v, ok := e.get(key); ok {
			return v, nil
		}
		return "", ErrNotFound
	}
	r := &vm.ret
	st := proxy_get_header_map_value(uint32(m), stringPtr(key), uint32(len(key)), &r.a, &r.b)
	if err := StatusToError(Status(st)); err != nil {
		return "", err
	}
	b, err := takePinned(r.a, r.b)
	return ownedString(b), err
}

// GetAll returns every header pair in order, repeated names included. The
// pairs are the caller's; a later Get in the same callback reuses a copy.
func (m HeaderMap) GetAll() ([][2]string, error) {
	pairs, err := getHeaderMapPairs(MapType(m))
	if e := vm.hdr.entry(MapType(m)); e != nil && err == nil && len(pairs) > 0 && len(pairs) < maxCachedPairs {
		e.set(pairs)
		e.valid = true
	}
	return pairs, err
}

// SetAll replaces the whole map.
func (m HeaderMap) SetAll(pairs [][2]string) error {
	buf := EncodeHeaderMap(pairs)
	err := StatusToError(Status(proxy_set_header_map_pairs(uint32(m), bytesPtr(buf), uint32(len(buf)))))
	if e := vm.hdr.entry(MapType(m)); e != nil {
		e.valid = false // the host may order or merge the new map its own way: read it again if asked
	}
	return err
}

// Add appends a value, keeping existing ones.
func (m HeaderMap) Add(key, value string) error {
	err := StatusToError(Status(proxy_add_header_map_value(uint32(m), stringPtr(key), uint32(len(key)), stringPtr(value), uint32(len(value)))))
	if e := vm.hdr.entry(MapType(m)); e != nil && e.valid {
		if err == nil {
			e.add(key, value)
		} else {
			e.valid = false
		}
	}
	return err
}

// Replace sets a header to exactly one value.
func (m HeaderMap) Replace(key, value string) error {
	err := StatusToError(Status(proxy_replace_header_map_value(uint32(m), stringPtr(key), uint32(len(key)), stringPtr(value), uint32(len(value)))))
	if e := vm.hdr.entry(MapType(m)); e != nil && e.valid {
		if err == nil {
			e.replace(key, value)
		} else {
			e.valid = false
		}
	}
	return err
}

// Remove deletes every value of a header; removing an absent header is not
// an error, and once the map was read in this callback costs no host call.
func (m HeaderMap) Remove(key string) error {
	e := vm.hdr.entry(MapType(m))
	if e != nil && e.load(MapType(m)) && !e.has(key) {
		return nil
	}
	err := StatusToError(Status(proxy_remove_header_map_value(uint32(m), stringPtr(key), uint32(len(key)))))
	if e != nil && e.valid {
		if err == nil {
			e.remove(key)
		} else {
			e.valid = false
		}
	}
	return err
}

func getHeaderMapPairs(m MapType) ([][2]string, error) {
	r := &vm.ret
	if err := StatusToError(Status(proxy_get_header_map_pairs(uint32(m), &r.a, &r.b))); err != nil {
		return nil, err
	}
	b, err := takePinned(r.a, r.b)
	if err != nil {
		return nil, err
	}
	return decodeHeaderMap(b, true)
}

// ---- buffers ----

// Buffer names one of the host's byte buffers; its methods act on the current stream.
type Buffer BufferType

// The bodies an HTTP filter can read and change.
const (
	RequestBody  = Buffer(BufferRequestBody)
	ResponseBody = Buffer(BufferResponseBody)
)

// Size returns the buffer's current length (the accumulated body while buffering).
func (b Buffer) Size() (int, error) {
	total, err := bufferSize(BufferType(b))
	if err != nil {
		return 0, err
	}
	if off := vm.view.at(BufferType(b)); off > 0 {
		return int(total - min(off, total)), nil
	}
	return int(total), nil
}

// bufferSize is the whole host buffer's length: known in this callback, or
// asked of the host.
func bufferSize(t BufferType) (uint32, error) {
	if vm.body.of(t) && vm.body.sized {
		return vm.body.size, nil
	}
	r := &vm.ret
	if err := StatusToError(Status(proxy_get_buffer_status(uint32(t), &r.a, &r.b))); err != nil {
		return 0, err
	}
	size := r.a
	vm.body.know(t, size)
	return size, nil
}

// Get returns up to max bytes starting at start.
func (b Buffer) Get(start, max int) ([]byte, error) {
	return getBufferBytes(BufferType(b), uint32(start)+vm.view.at(BufferType(b)), uint32(max))
}

// GetAll returns the whole buffer.
func (b Buffer) GetAll() ([]byte, error) {
	size, err := b.Size()
	if err != nil || size == 0 {
		return nil, err
	}
	return b.Get(0, size)
}

// Replace swaps the whole buffer's content for data.
func (b Buffer) Replace(data []byte) error {
	size, err := b.Size()
	if err != nil {
		return err
	}
	return b.set(0, uint32(size), data)
}

// Append adds data at the end of the buffer.
func (b Buffer) Append(data []byte) error {
	size, err := b.Size()
	if err != nil {
		return err
	}
	return b.set(uint32(size), 0, data)
}

// Prepend inserts data at the start of the buffer.
func (b Buffer) Prepend(data []byte) error { return b.set(0, 0, data) }

func (b Buffer) set(start, size uint32, data []byte) error {
	vm.bufDirty = true
	t := BufferType(b)
	if off := vm.view.at(t); off > 0 {
		return b.setInView(off, start, size, data)
	}
	whole := start == 0 && vm.body.of(t) && vm.body.sized && size >= vm.body.size
	vm.body.reset()
	if err := StatusToError(Status(proxy_set_buffer_bytes(uint32(b), start, size, bytesPtr(data), uint32(len(data))))); err != nil {
		return err
	}
	if whole { // Envoy drains size bytes from the start and prepends data
		vm.body.replaced(t, data)
	}
	return nil
}

// setInView changes a chain link's part of a buffer that starts at off.
// Envoy only prepends, replaces from the start or appends, so the whole
// buffer is rewritten with the link's part changed.
func (b Buffer) setInView(off, start, size uint32, data []byte) error {
	t := BufferType(b)
	total, err := bufferSize(t)
	if err != nil {
		return err
	}
	all, err := getBufferBytes(t, 0, total)
	if err != nil {
		return err
	}
	from := min(off+start, uint32(len(all)))
	to := min(from+size, uint32(len(all)))
	out := make([]byte, 0, len(all)-int(to-from)+len(data))
	out = append(append(append(out, all[:from]...), data...), all[to:]...)
	vm.body.reset()
	if err := StatusToError(Status(proxy_set_buffer_bytes(uint32(b), 0, total, bytesPtr(out), uint32(len(out))))); err != nil {
		return err
	}
	vm.body.replaced(t, out)
	return nil
}

// getBufferBytes reads [start, start+max) of a buffer: from the body cache
// when this callback already read it to the end, else from the host.
func getBufferBytes(t BufferType, start, max uint32) ([]byte, error) {
	cacheable := t == BufferRequestBody || t == BufferResponseBody
	if cacheable {
		if b, ok := vm.body.get(t, start, max); ok {
			return b, nil
		}
	}
	r := &vm.ret
	if err := StatusToError(Status(proxy_get_buffer_bytes(uint32(t), start, max, &r.a, &r.b))); err != nil {
		return nil, err
	}
	b, err := takePinned(r.a, r.b)
	if err == nil && cacheable {
		vm.body.read(t, start, max, b)
	}
	return b, err
}

// ---- stream control ----

// ContinueRequest resumes a request paused in a headers or body callback.
func ContinueRequest() error {
	vm.hdr.reset() // the host may run the filters after this one before it returns
	vm.body.reset()
	if chainContinue(StreamRequest) {
		return nil
	}
	return StatusToError(Status(proxy_continue_stream(uint32(StreamRequest))))
}

// ContinueResponse resumes a paused response.
func ContinueResponse() error {
	vm.hdr.reset()
	vm.body.reset()
	if chainContinue(StreamResponse) {
		return nil
	}
	return StatusToError(Status(proxy_continue_stream(uint32(StreamResponse))))
}

// SendLocalResponse answers the client directly; the request never reaches the upstream.
// details is recorded as the response-code detail (whitespace becomes '_', as Envoy requires).
func SendLocalResponse(status int, headers [][2]string, body []byte, details string) error {
	details = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return '_'
		}
		return r
	}, details)
	hdrs := EncodeHeaderMap(headers)
	vm.hdr.reset()
	vm.body.reset()
	st := proxy_send_local_response(uint32(status),
		stringPtr(details), uint32(len(details)),
		bytesPtr(body), uint32(len(body)),
		bytesPtr(hdrs), uint32(len(hdrs)), -1)
	if err := StatusToError(Status(st)); err != nil {
		return err
	}
	if s, ok := vm.streams[vm.current]; ok {
		s.replied = true
	}
	return nil
}

// SendError answers the client with a Tollgate error body in the configured style plus extra headers.
func SendError(e *apierror.Error, style apierror.Style, extra ...[2]string) error {
	headers := append(apierror.Headers(), extra...)
	return SendLocalResponse(e.Status, headers, e.Body(style), "tollgate_"+e.Code)
}

// ---- HTTP callouts ----

// DispatchHttpCall sends an HTTP request to a cluster; handler runs later with the response, with the
// dispatching stream current again. headers must include :method, :path and :authority.
func DispatchHttpCall(cluster string, headers [][2]string, body []byte, trailers [][2]string, timeout time.Duration, handler CallResponseHandler) (uint32, error) {
	hdrs := EncodeHeaderMap(headers)
	var trl []byte
	if len(trailers) > 0 {
		trl = EncodeHeaderMap(trailers)
	}
	var token uint32
	st := proxy_http_call(stringPtr(cluster), uint32(len(cluster)),
		bytesPtr(hdrs), uint32(len(hdrs)),
		bytesPtr(body), uint32(len(body)),
		bytesPtr(trl), uint32(len(trl)),
		uint32(timeout/time.Millisecond), &token)
	if err := StatusToError(Status(st)); err != nil {
		return 0, config.Wrap("http call to cluster "+strconv.Quote(cluster)+": ", err, "")
	}
	vm.callouts[token] = callout{handler: handler, ctxID: vm.current, hook: vm.hook}
	return token, nil
}

// ---- shared data ----

// GetSharedData reads a value shared by every VM with the same vm_id, with its CAS token; ErrNotFound when absent.
func GetSharedData(key string) (value []byte, cas uint32, err error) {
	r := &vm.ret
	st := proxy_get_shared_data(stringPtr(key), uint32(len(key)), &r.a, &r.b, &r.c)
	if err := StatusToError(Status(st)); err != nil {
		return nil, 0, err
	}
	cas = r.c
	value, err = takePinned(r.a, r.b)
	return value, cas, err
}

// SetSharedData writes a shared value; cas 0 writes unconditionally, a stale cas fails with ErrCASMismatch.
func SetSharedData(key string, value []byte, cas uint32) error {
	return StatusToError(Status(proxy_set_shared_data(stringPtr(key), uint32(len(key)), bytesPtr(value), uint32(len(value)), cas)))
}

// ---- shared queues ----

// RegisterSharedQueue creates (or finds) a queue owned by this VM; OnQueueReady fires when items arrive.
func RegisterSharedQueue(name string) (uint32, error) {
	var id uint32
	err := StatusToError(Status(proxy_register_shared_queue(stringPtr(name), uint32(len(name)), &id)))
	return id, err
}

// ResolveSharedQueue finds a queue registered by a VM with the given vm_id.
func ResolveSharedQueue(vmID, name string) (uint32, error) {
	var id uint32
	err := StatusToError(Status(proxy_resolve_shared_queue(stringPtr(vmID), uint32(len(vmID)), stringPtr(name), uint32(len(name)), &id)))
	return id, err
}

// EnqueueSharedQueue appends an item to a queue.
func EnqueueSharedQueue(queueID uint32, data []byte) error {
	return StatusToError(Status(proxy_enqueue_shared_queue(queueID, bytesPtr(data), uint32(len(data)))))
}

// DequeueSharedQueue pops an item; ErrEmpty when there is none.
func DequeueSharedQueue(queueID uint32) ([]byte, error) {
	r := &vm.ret
	if err := StatusToError(Status(proxy_dequeue_shared_queue(queueID, &r.a, &r.b))); err != nil {
		return nil, err
	}
	return takePinned(r.a, r.b)
}

// ---- metrics ----

func defineMetric(t MetricType, name string) (uint32, error) {
	var id uint32
	err := StatusToError(Status(proxy_define_metric(uint32(t), stringPtr(name), uint32(len(name)), &id)))
	if err != nil {
		return 0, config.Wrap("define metric "+strconv.Quote(name)+": ", err, "")
	}
	return id, nil
}

// Counter is a monotonically increasing host metric (Envoy shows it in /stats/prometheus).
type Counter uint32

// DefineCounter creates or finds a counter; encode labels in the name for Envoy stats_tags to extract.
func DefineCounter(name string) (Counter, error) {
	id, err := defineMetric(MetricCounter, name)
	return Counter(id), err
}

// Increment adds delta (Envoy rejects zero, so zero is a no-op here).
func (c Counter) Increment(delta uint64) error {
	if delta == 0 {
		return nil
	}
	return StatusToError(Status(proxy_increment_metric(uint32(c), int64(delta))))
}

// Value reads the counter.
func (c Counter) Value() (uint64, error) { return getMetric(uint32(c)) }

// Gauge is a host metric that goes up and down.
type Gauge uint32

// DefineGauge creates or finds a gauge.
func DefineGauge(name string) (Gauge, error) {
	id, err := defineMetric(MetricGauge, name)
	return Gauge(id), err
}

// Set records an absolute value.
func (g Gauge) Set(v uint64) error { return StatusToError(Status(proxy_record_metric(uint32(g), v))) }

// Add changes the gauge by delta, which may be negative.
func (g Gauge) Add(delta int64) error {
	if delta == 0 {
		return nil
	}
	return StatusToError(Status(proxy_increment_metric(uint32(g), delta)))
}

// Value reads the gauge.
func (g Gauge) Value() (uint64, error) { return getMetric(uint32(g)) }

// Histogram records a distribution of values.
type Histogram uint32

// DefineHistogram creates or finds a histogram.
func DefineHistogram(name string) (Histogram, error) {
	id, err := defineMetric(MetricHistogram, name)
	return Histogram(id), err
}

// Record adds one observation.
func (h Histogram) Record(v uint64) error {
	return StatusToError(Status(proxy_record_metric(uint32(h), v)))
}

func getMetric(id uint32) (uint64, error) {
	var v uint64
	err := StatusToError(Status(proxy_get_metric(id, &v)))
	return v, err
}

// ---- properties ----

// GetProperty reads a host attribute such as ("request", "path") or ("plugin_name").
func GetProperty(path ...string) ([]byte, error) {
	p, pn := propertyPath(path)
	r := &vm.ret
	if err := StatusToError(Status(proxy_get_property(p, pn, &r.a, &r.b))); err != nil {
		return nil, err
	}
	return takePinned(r.a, r.b)
}

// SetProperty writes a host attribute, e.g. filter state for access logs.
func SetProperty(path []string, value []byte) error {
	p, pn := propertyPath(path)
	return StatusToError(Status(proxy_set_property(p, pn, bytesPtr(value), uint32(len(value)))))
}

// propertyPath is EncodePropertyPath's bytes for the host; a one-segment
// path (filter state, tokencount sets several a request) is its own
// encoding and needs no copy.
func propertyPath(path []string) (unsafe.Pointer, uint32) {
	if len(path) == 1 {
		return stringPtr(path[0]), uint32(len(path[0]))
	}
	p := EncodePropertyPath(path)
	return bytesPtr(p), uint32(len(p))
}

// ---- foreign functions and lifecycle ----

// CallForeignFunction invokes a host extension by name; ErrNotFound when the host lacks it.
func CallForeignFunction(name string, args []byte) ([]byte, error) {
	vm.hdr.reset()
	vm.body.reset()
	var addr, n uint32
	st := proxy_call_foreign_function(stringPtr(name), uint32(len(name)), bytesPtr(args), uint32(len(args)), &addr, &n)
	if err := StatusToError(Status(st)); err != nil {
		return nil, err
	}
	return takePinned(addr, n)
}

// ClearRouteCache makes Envoy re-select the route after headers changed (Envoy ≥ 1.33).
func ClearRouteCache() error {
	_, err := CallForeignFunction("clear_route_cache", nil)
	return err
}

// Done tells the host that a plugin whose OnPluginDone returned false has finished.
func Done() error { return StatusToError(Status(proxy_done())) }

// SetEffectiveContext makes another context current for the rest of this callback,
// so a tick or another stream's callout response can resume or answer a paused stream.
func SetEffectiveContext(contextID uint32) error {
	if err := setEffectiveContext(contextID); err != nil {
		return err
	}
	vm.current = contextID
	return nil
}

func setEffectiveContext(ctxID uint32) error {
	vm.hdr.reset()
	vm.body.reset()
	return StatusToError(Status(proxy_set_effective_context(ctxID)))
}
