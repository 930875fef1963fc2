//go:build !wasip1

package proxywasm

// Native builds (go test, a debugger, coverage) have no Wasm host: the raw
// imports below forward every call to the NativeHost a test installed with
// Attach (shared/proxywasm/hosttest is one), and answer StatusUnimplemented
// while none is attached. Guest memory is ordinary Go memory here, so the
// host's answers are pinned under fake addresses exactly as
// proxy_on_memory_allocate pins them in Wasm, and the typed API above runs
// unchanged.

import (
	"sync"
	"unsafe"
)

// NativeHost is the host side of ABI v0.2.1 for natively built plugins, with
// pointers already turned into Go values. Every method answers a Status as
// the Wasm host would; header maps are decoded pairs. Like a real host it
// covers the whole ABI, also calls this package does not wrap (the host's
// log level and clock, proxy_close_stream).
type NativeHost interface {
	Log(level LogLevel, msg string) Status
	LogLevel() (LogLevel, Status)
	SetTickPeriod(ms uint32) Status
	CurrentTimeNanos() (uint64, Status)

	BufferSize(t BufferType) (int, Status)
	BufferBytes(t BufferType, start, maxSize uint32) ([]byte, Status)
	SetBufferBytes(t BufferType, start, size uint32, data []byte) Status

	HeaderMapPairs(m MapType) ([][2]string, Status)
	SetHeaderMapPairs(m MapType, pairs [][2]string) Status
	HeaderMapValue(m MapType, key string) (string, Status)
	AddHeaderMapValue(m MapType, key, value string) Status
	ReplaceHeaderMapValue(m MapType, key, value string) Status
	RemoveHeaderMapValue(m MapType, key string) Status

	ContinueStream(s StreamType) Status
	CloseStream(s StreamType) Status
	SendLocalResponse(status uint32, details string, body []byte, headers [][2]string, grpcStatus int32) Status

	HttpCall(cluster string, headers [][2]string, body []byte, trailers [][2]string, timeoutMs uint32) (token uint32, st Status)

	SharedData(key string) (value []byte, cas uint32, st Status)
	SetSharedData(key string, value []byte, cas uint32) Status
	RegisterSharedQueue(name string) (uint32, Status)
	ResolveSharedQueue(vmID, name string) (uint32, Status)
	EnqueueSharedQueue(id uint32, data []byte) Status
	DequeueSharedQueue(id uint32) ([]byte, Status)

	DefineMetric(t MetricType, name string) (uint32, Status)
	IncrementMetric(id uint32, delta int64) Status
	RecordMetric(id uint32, value uint64) Status
	Metric(id uint32) (uint64, Status)

	Property(path []string) ([]byte, Status)
	SetProperty(path []string, value []byte) Status
	CallForeignFunction(name string, args []byte) ([]byte, Status)
	SetEffectiveContext(contextID uint32) Status
	Done() Status
}

// Guest is the plugin side of the ABI in a native build: the proxy_on_*
// callbacks a NativeHost invokes, running the same dispatch code as the Wasm
// exports. Several hosts may be attached at once (each test its own); every
// callback runs with its guest's host installed, one callback at a time, so
// hosts must hand out context ids and callout tokens that do not collide.
type Guest struct {
	host    NativeHost
	factory func(uint32) PluginContext
}

var native struct {
	mu   sync.Mutex // held while a callback runs: one host is installed at a time
	host NativeHost
	next uint32 // last fake address handed out for host-filled memory
}

// Attach returns the guest callbacks that run with h as the host.
func Attach(h NativeHost) *Guest { return &Guest{host: h} }

// Use makes f construct this guest's root contexts, in place of what the
// package registered (tests of an importable filter pass its constructor).
func (g *Guest) Use(f func(rootContextID uint32) PluginContext) { g.factory = f }

// run installs g's host for one callback.
func (g *Guest) run(f func()) {
	native.mu.Lock()
	defer native.mu.Unlock()
	prev := native.host
	native.host = g.host
	defer func() { native.host = prev }()
	f()
}

// Forget drops callouts that will never be answered (the host is going away).
func (g *Guest) Forget(tokens ...uint32) {
	g.run(func() {
		for _, t := range tokens {
			delete(vm.callouts, t)
		}
	})
}

// OnContextCreate is proxy_on_context_create: parentID 0 creates a root (plugin) context.
func (g *Guest) OnContextCreate(contextID, parentID uint32) {
	g.run(func() {
		if g.factory != nil && parentID == 0 {
			f, p := vm.factory, vm.plugins
			vm.factory, vm.plugins = g.factory, nil
			defer func() { vm.factory, vm.plugins = f, p }()
		}
		vm.onContextCreate(contextID, parentID)
	})
}

// OnVMStart is proxy_on_vm_start.
func (g *Guest) OnVMStart(contextID, vmConfigSize uint32) bool {
	var r bool
	g.run(func() { r = vm.onVMStart(contextID, vmConfigSize) })
	return r
}

// OnConfigure is proxy_on_configure.
func (g *Guest) OnConfigure(contextID, configSize uint32) bool {
	var r bool
	g.run(func() { r = vm.onConfigure(contextID, configSize) })
	return r
}

// OnRequestHeaders is proxy_on_request_headers.
func (g *Guest) OnRequestHeaders(contextID, numHeaders uint32, endOfStream bool) Action {
	var r Action
	g.run(func() { r = onRequestHeaders(contextID, numHeaders, boolToU32(endOfStream)) })
	return r
}

// OnRequestBody is proxy_on_request_body.
func (g *Guest) OnRequestBody(contextID, bodySize uint32, endOfStream bool) Action {
	var r Action
	g.run(func() { r = onRequestBody(contextID, bodySize, boolToU32(endOfStream)) })
	return r
}

// OnRequestTrailers is proxy_on_request_trailers.
func (g *Guest) OnRequestTrailers(contextID, numTrailers uint32) Action {
	var r Action
	g.run(func() { r = onRequestTrailers(contextID, numTrailers) })
	return r
}

// OnResponseHeaders is proxy_on_response_headers.
func (g *Guest) OnResponseHeaders(contextID, numHeaders uint32, endOfStream bool) Action {
	var r Action
	g.run(func() { r = onResponseHeaders(contextID, numHeaders, boolToU32(endOfStream)) })
	return r
}

// OnResponseBody is proxy_on_response_body.
func (g *Guest) OnResponseBody(contextID, bodySize uint32, endOfStream bool) Action {
	var r Action
	g.run(func() { r = onResponseBody(contextID, bodySize, boolToU32(endOfStream)) })
	return r
}

// OnResponseTrailers is proxy_on_response_trailers.
func (g *Guest) OnResponseTrailers(contextID, numTrailers uint32) Action {
	var r Action
	g.run(func() { r = onResponseTrailers(contextID, numTrailers) })
	return r
}

// OnHttpCallResponse is proxy_on_http_call_response; the host must answer the
// response maps and body while it runs.
func (g *Guest) OnHttpCallResponse(contextID, token, numHeaders, bodySize, numTrailers uint32) {
	g.run(func() { vm.onHttpCallResponse(contextID, token, numHeaders, bodySize, numTrailers) })
}

// OnTick is proxy_on_tick.
func (g *Guest) OnTick(contextID uint32) {
	g.run(func() { onTick(contextID) })
}

// OnQueueReady is proxy_on_queue_ready.
func (g *Guest) OnQueueReady(contextID, queueID uint32) {
	g.run(func() { onQueueReady(contextID, queueID) })
}

// OnLog is proxy_on_log.
func (g *Guest) OnLog(contextID uint32) {
	g.run(func() { onLog(contextID) })
}

// OnDone is proxy_on_done.
func (g *Guest) OnDone(contextID uint32) bool {
	var r bool
	g.run(func() { r = vm.onDone(contextID) })
	return r
}

// OnDelete is proxy_on_delete.
func (g *Guest) OnDelete(contextID uint32) {
	g.run(func() { vm.onDelete(contextID) })
}

// ---- memory ----

func goBytes(p unsafe.Pointer, n uint32) []byte {
	if n == 0 || p == nil {
		return nil
	}
	return append([]byte(nil), unsafe.Slice((*byte)(p), n)...)
}

func goString(p unsafe.Pointer, n uint32) string { return string(goBytes(p, n)) }

// out pins b as the host's allocation and reports its fake address; empty
// values are (0, 0), as hosts never allocate for them.
func out(b []byte, retData, retSize *uint32) {
	if len(b) == 0 {
		*retData, *retSize = 0, 0
		return
	}
	native.next++
	if native.next == 0 {
		native.next = 1
	}
	vm.pins[native.next] = append([]byte(nil), b...)
	*retData, *retSize = native.next, uint32(len(b))
}

func decodeMap(p unsafe.Pointer, n uint32) ([][2]string, bool) {
	pairs, err := decodeHeaderMap(goBytes(p, n), true)
	return pairs, err == nil
}

func decodePath(p unsafe.Pointer, n uint32) []string {
	b := goBytes(p, n)
	var segs []string
	start := 0
	for i, c := range b {
		if c == 0 {
			segs = append(segs, string(b[start:i]))
			start = i + 1
		}
	}
	return append(segs, string(b[start:]))
}

const unimplemented = uint32(StatusUnimplemented)

// ---- the raw imports ----

func proxy_log(level uint32, msg unsafe.Pointer, msgLen uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	return uint32(native.host.Log(LogLevel(level), goString(msg, msgLen)))
}

func proxy_set_tick_period_milliseconds(ms uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	return uint32(native.host.SetTickPeriod(ms))
}

func proxy_get_buffer_status(bufferType uint32, size *uint32, flags *uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	n, st := native.host.BufferSize(BufferType(bufferType))
	*size, *flags = uint32(n), 0
	return uint32(st)
}

func proxy_get_buffer_bytes(bufferType, start, maxSize uint32, retData *uint32, retSize *uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	b, st := native.host.BufferBytes(BufferType(bufferType), start, maxSize)
	if st == StatusOK {
		out(b, retData, retSize)
	}
	return uint32(st)
}

func proxy_set_buffer_bytes(bufferType, start, size uint32, data unsafe.Pointer, dataLen uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	return uint32(native.host.SetBufferBytes(BufferType(bufferType), start, size, goBytes(data, dataLen)))
}

func proxy_get_header_map_pairs(mapType uint32, retData *uint32, retSize *uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	pairs, st := native.host.HeaderMapPairs(MapType(mapType))
	if st == StatusOK {
		out(EncodeHeaderMap(pairs), retData, retSize)
	}
	return uint32(st)
}

func proxy_set_header_map_pairs(mapType uint32, data unsafe.Pointer, dataLen uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	pairs, ok := decodeMap(data, dataLen)
	if !ok {
		return uint32(StatusBadArgument)
	}
	return uint32(native.host.SetHeaderMapPairs(MapType(mapType), pairs))
}

func proxy_get_header_map_value(mapType uint32, key unsafe.Pointer, keyLen uint32, retData *uint32, retSize *uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	v, st := native.host.HeaderMapValue(MapType(mapType), goString(key, keyLen))
	if st == StatusOK {
		out([]byte(v), retData, retSize)
	}
	return uint32(st)
}

func proxy_add_header_map_value(mapType uint32, key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	return uint32(native.host.AddHeaderMapValue(MapType(mapType), goString(key, keyLen), goString(value, valueLen)))
}

func proxy_replace_header_map_value(mapType uint32, key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	return uint32(native.host.ReplaceHeaderMapValue(MapType(mapType), goString(key, keyLen), goString(value, valueLen)))
}

func proxy_remove_header_map_value(mapType uint32, key unsafe.Pointer, keyLen uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	return uint32(native.host.RemoveHeaderMapValue(MapType(mapType), goString(key, keyLen)))
}

func proxy_continue_stream(streamType uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	return uint32(native.host.ContinueStream(StreamType(streamType)))
}

func proxy_send_local_response(status uint32, details unsafe.Pointer, detailsLen uint32, body unsafe.Pointer, bodyLen uint32, headers unsafe.Pointer, headersLen uint32, grpcStatus int32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	pairs, ok := decodeMap(headers, headersLen)
	if !ok {
		return uint32(StatusBadArgument)
	}
	return uint32(native.host.SendLocalResponse(status, goString(details, detailsLen), goBytes(body, bodyLen), pairs, grpcStatus))
}

func proxy_http_call(cluster unsafe.Pointer, clusterLen uint32, headers unsafe.Pointer, headersLen uint32, body unsafe.Pointer, bodyLen uint32, trailers unsafe.Pointer, trailersLen uint32, timeoutMs uint32, token *uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	hdrs, ok := decodeMap(headers, headersLen)
	trl, ok2 := decodeMap(trailers, trailersLen)
	if !ok || !ok2 {
		return uint32(StatusBadArgument)
	}
	tok, st := native.host.HttpCall(goString(cluster, clusterLen), hdrs, goBytes(body, bodyLen), trl, timeoutMs)
	*token = tok
	return uint32(st)
}

func proxy_get_shared_data(key unsafe.Pointer, keyLen uint32, retData *uint32, retSize *uint32, cas *uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	v, c, st := native.host.SharedData(goString(key, keyLen))
	if st == StatusOK {
		out(v, retData, retSize)
		*cas = c
	}
	return uint32(st)
}

func proxy_set_shared_data(key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32, cas uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	return uint32(native.host.SetSharedData(goString(key, keyLen), goBytes(value, valueLen), cas))
}

func proxy_register_shared_queue(name unsafe.Pointer, nameLen uint32, queueID *uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	id, st := native.host.RegisterSharedQueue(goString(name, nameLen))
	*queueID = id
	return uint32(st)
}

func proxy_resolve_shared_queue(vmID unsafe.Pointer, vmIDLen uint32, name unsafe.Pointer, nameLen uint32, queueID *uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	id, st := native.host.ResolveSharedQueue(goString(vmID, vmIDLen), goString(name, nameLen))
	*queueID = id
	return uint32(st)
}

func proxy_enqueue_shared_queue(queueID uint32, data unsafe.Pointer, dataLen uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	return uint32(native.host.EnqueueSharedQueue(queueID, goBytes(data, dataLen)))
}

func proxy_dequeue_shared_queue(queueID uint32, retData *uint32, retSize *uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	b, st := native.host.DequeueSharedQueue(queueID)
	if st == StatusOK {
		out(b, retData, retSize)
	}
	return uint32(st)
}

func proxy_define_metric(metricType uint32, name unsafe.Pointer, nameLen uint32, metricID *uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	id, st := native.host.DefineMetric(MetricType(metricType), goString(name, nameLen))
	*metricID = id
	return uint32(st)
}

func proxy_increment_metric(metricID uint32, delta int64) uint32 {
	if native.host == nil {
		return unimplemented
	}
	return uint32(native.host.IncrementMetric(metricID, delta))
}

func proxy_record_metric(metricID uint32, value uint64) uint32 {
	if native.host == nil {
		return unimplemented
	}
	return uint32(native.host.RecordMetric(metricID, value))
}

func proxy_get_metric(metricID uint32, value *uint64) uint32 {
	if native.host == nil {
		return unimplemented
	}
	v, st := native.host.Metric(metricID)
	*value = v
	return uint32(st)
}

func proxy_get_property(path unsafe.Pointer, pathLen uint32, retData *uint32, retSize *uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	v, st := native.host.Property(decodePath(path, pathLen))
	if st == StatusOK {
		out(v, retData, retSize)
	}
	return uint32(st)
}

func proxy_set_property(path unsafe.Pointer, pathLen uint32, value unsafe.Pointer, valueLen uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	return uint32(native.host.SetProperty(decodePath(path, pathLen), goBytes(value, valueLen)))
}

func proxy_call_foreign_function(name unsafe.Pointer, nameLen uint32, args unsafe.Pointer, argsLen uint32, retData *uint32, retSize *uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	b, st := native.host.CallForeignFunction(goString(name, nameLen), goBytes(args, argsLen))
	if st == StatusOK {
		out(b, retData, retSize)
	}
	return uint32(st)
}

func proxy_set_effective_context(contextID uint32) uint32 {
	if native.host == nil {
		return unimplemented
	}
	return uint32(native.host.SetEffectiveContext(contextID))
}

func proxy_done() uint32 {
	if native.host == nil {
		return unimplemented
	}
	return uint32(native.host.Done())
}
