package wasmhost

import (
	"strconv"
	"sync"
	"time"
)

// LocalReply is a response produced by Envoy instead of the upstream: from
// proxy_send_local_response, or 503 when the VM has failed.
type LocalReply struct {
	StatusCode int
	Body       []byte
	Headers    []Pair
	Details    string
	GrpcStatus int32
	// Failure is true for the 503 Envoy sends when the VM has failed.
	Failure bool
}

// StreamEvent is an effect a plugin requested during a callback, applied by
// the filter manager once the callback has returned.
type StreamEvent int

// Stream events.
const (
	// EventContinueRequest is proxy_continue_stream(HTTP_REQUEST).
	EventContinueRequest StreamEvent = iota + 1
	// EventContinueResponse is proxy_continue_stream(HTTP_RESPONSE).
	EventContinueResponse
	// EventLocalReply is a local reply (see Stream.LocalReply).
	EventLocalReply
	// EventReset is proxy_close_stream: Envoy resets the stream.
	EventReset
)

// String names the event.
func (e StreamEvent) String() string {
	switch e {
	case EventContinueRequest:
		return "continue-request"
	case EventContinueResponse:
		return "continue-response"
	case EventLocalReply:
		return "local-reply"
	case EventReset:
		return "reset"
	}
	return "event(" + strconv.Itoa(int(e)) + ")"
}

// Stream is one HTTP stream through the filter: Envoy's per-stream wasm
// Context. Its methods are the filter callbacks the HTTP connection manager
// makes (decodeHeaders, decodeData, ...), with Envoy's conversions of the
// plugin's return values and its rules on which maps and buffers the
// plugin can reach at each point. VM.Do drives a Stream like Envoy's filter
// manager; benchmarks and fine-grained tests can call the methods directly.
type Stream struct {
	vm   *VM
	c    *vmContext // nil: created on a failed VM (fail-closed empty context)
	id   uint32
	gen  uint64
	skip bool // fail-open on a failed VM: the filter is not in the chain

	reqHeaders, reqTrailers   *HeaderMap
	respHeaders, respTrailers *HeaderMap
	reqChunk, respChunk       *[]byte
	decodingBuf, encodingBuf  *[]byte
	bufferingReq, bufferingRs bool
	endOfStream               bool

	inVMCreated           bool
	destroyed             bool
	streamFailed          bool
	failureLocalReplySent bool

	accessLogPhase                        bool
	alReqHeaders, alRespHeaders, alRespTr *HeaderMap
	addedReqTrailers, addedRespTrailers   *HeaderMap

	filterState  map[string][]byte
	routeClears  int
	localReply   *LocalReply
	resetDetails string

	info streamInfo

	evMu   sync.Mutex
	events []StreamEvent
	evWake chan struct{}
}

// streamInfo is the part of Envoy's StreamInfo that properties expose.
type streamInfo struct {
	start        time.Time
	connectionID uint64
	protocol     string
	responseCode int
	bytesRecv    uint64
}

// NewStream creates the filter instance for a new HTTP stream, as Envoy's
// createFilter does: on a failed VM, FailOpen leaves the filter out,
// FailClosed installs an empty context answering 503, and FailReload first
// tries to reload the VM once the backoff has passed.
func (vm *VM) NewStream() *Stream {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	h := vm.host
	if vm.failState == FailRuntimeError && h.cfg.FailurePolicy == FailReload && !vm.closed &&
		time.Since(vm.loadedAt) >= h.cfg.ReloadBackoff {
		vm.reload()
	}
	s := &Stream{
		vm:     vm,
		gen:    vm.gen,
		evWake: make(chan struct{}, 1),
		info:   streamInfo{start: h.cfg.Now(), connectionID: h.connSeq.Add(1), protocol: "HTTP/1.1"},
	}
	if vm.failState != FailNone || vm.closed || vm.root == nil {
		if h.cfg.FailurePolicy == FailOpen {
			s.skip = true
		}
		return s
	}
	c := vm.newContext(vm.root.id, false)
	c.stream = s
	s.c = c
	s.id = c.id
	return s
}

// reload recreates the module instance after a runtime failure (FAIL_RELOAD).
// Caller holds mu.
func (vm *VM) reload() {
	if vm.mod != nil {
		_ = vm.mod.Close(vm.baseCtx)
	}
	vm.logf(LogInfo, 0, "reloading failed VM")
	if err := vm.load(vm.baseCtx); err != nil {
		vm.logf(LogError, 0, "reload failed: %v", err)
		if vm.failState == FailNone {
			vm.failState = FailRuntimeError
		}
		vm.loadedAt = time.Now()
	}
}

// ID is the stream's context id (0 when the VM had failed).
func (s *Stream) ID() uint32 { return s.id }

// Skipped reports a stream whose filter was left out (fail open).
func (s *Stream) Skipped() bool { return s.skip }

func (s *Stream) isFailed() bool {
	return s.c == nil || s.gen != s.vm.gen || s.vm.failState != FailNone
}

func (s *Stream) push(e StreamEvent) {
	s.evMu.Lock()
	s.events = append(s.events, e)
	s.evMu.Unlock()
	select {
	case s.evWake <- struct{}{}:
	default:
	}
}

// TakeEvents returns and clears the events requested so far.
func (s *Stream) TakeEvents() []StreamEvent {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	ev := s.events
	s.events = nil
	return ev
}

// LocalReply returns the local reply requested on the stream, if any.
func (s *Stream) LocalReply() *LocalReply {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.localReply
}

// RouteCacheClears counts route cache clears: request header changes (ABI
// up to 0.2.1 clears on every change) and clear_route_cache calls.
func (s *Stream) RouteCacheClears() int {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.routeClears
}

// FilterState returns a value set through proxy_set_property.
func (s *Stream) FilterState(path string) ([]byte, bool) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	v, ok := s.filterState[path]
	return v, ok
}

// sendLocalReply is the deferred decoder_callbacks_->sendLocalReply.
func (s *Stream) sendLocalReply(lr *LocalReply) {
	if s.localReply != nil {
		return // Envoy ignores a second local reply on the same stream.
	}
	s.localReply = lr
	s.push(EventLocalReply)
}

func (s *Stream) failStream() {
	if s.failureLocalReplySent {
		return
	}
	s.failureLocalReplySent = true
	if s.localReply == nil {
		s.localReply = &LocalReply{StatusCode: 503, Details: "wasm_fail_stream", GrpcStatus: 14, Failure: true}
		s.push(EventLocalReply)
	}
}

// checkFail is CHECK_FAIL_HTTP: on a failed VM the first check sends 503.
func (s *Stream) checkFail() bool {
	if !s.isFailed() {
		return false
	}
	if !s.streamFailed {
		s.failStream()
		s.streamFailed = true
	}
	return true
}

func (s *Stream) fn(name string) *guestFn {
	if s.isFailed() {
		return nil
	}
	return s.vm.fns[name]
}

func (s *Stream) onCreate() {
	if !s.isFailed() && !s.inVMCreated {
		s.vm.callFn(s.c, s.vm.fns["proxy_on_context_create"], uint64(s.id), uint64(s.c.parentID))
		s.vm.runAfter()
	}
	s.inVMCreated = true
}

func (s *Stream) convertHeaders(raw uint64) HeadersStatus {
	switch {
	case s.vm.stopIter || raw > 4:
		return HeadersStopAllIterationAndWatermark
	case raw == 1 && !s.vm.host.cfg.AllowOnHeadersStopIteration:
		return HeadersStopAllIterationAndWatermark
	case raw == 2:
		return HeadersContinue // ContinueAndDontEndStream maps to Continue in Envoy.
	}
	return HeadersStatus(raw)
}

func (s *Stream) convertData(raw uint64) DataStatus {
	if s.vm.stopIter || raw > 3 {
		return DataStopIterationNoBuffer
	}
	return DataStatus(raw)
}

func (s *Stream) convertTrailers(raw uint64) TrailersStatus {
	if s.vm.stopIter || raw > 1 {
		return TrailersStopIteration
	}
	return TrailersStatus(raw)
}

func (s *Stream) callHeaders(name string, n int, eos bool) HeadersStatus {
	if s.checkFail() {
		return HeadersStopAllIterationAndWatermark
	}
	f := s.fn(name)
	if f == nil {
		return HeadersContinue
	}
	raw := s.vm.callFn(s.c, f, uint64(s.id), uint64(n), b2u(eos))
	if s.checkFail() {
		s.vm.runAfter()
		return HeadersStopAllIterationAndWatermark
	}
	r := s.convertHeaders(raw)
	s.vm.runAfter()
	return r
}

func (s *Stream) callData(name string, size int, eos bool) DataStatus {
	if s.checkFail() {
		return DataStopIterationNoBuffer
	}
	f := s.fn(name)
	if f == nil {
		return DataContinue
	}
	raw := s.vm.callFn(s.c, f, uint64(s.id), uint64(size), b2u(eos))
	if s.checkFail() {
		s.vm.runAfter()
		return DataStopIterationNoBuffer
	}
	r := s.convertData(raw)
	s.vm.runAfter()
	return r
}

func (s *Stream) callTrailers(name string, n int) TrailersStatus {
	if s.checkFail() {
		return TrailersStopIteration
	}
	f := s.fn(name)
	if f == nil {
		return TrailersContinue
	}
	raw := s.vm.callFn(s.c, f, uint64(s.id), uint64(n))
	if s.checkFail() {
		s.vm.runAfter()
		return TrailersStopIteration
	}
	r := s.convertTrailers(raw)
	s.vm.runAfter()
	return r
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// RequestHeaders is decodeHeaders: proxy_on_request_headers(n, eos). After
// Continue, Envoy drops the request header map from the plugin's reach.
func (s *Stream) RequestHeaders(h *HeaderMap, eos bool) HeadersStatus {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.decodeHeaders(h, eos)
}

func (s *Stream) decodeHeaders(h *HeaderMap, eos bool) HeadersStatus {
	if s.skip {
		return HeadersContinue
	}
	s.onCreate()
	s.reqHeaders = h
	s.endOfStream = eos
	r := s.callHeaders("proxy_on_request_headers", h.Len(), eos)
	if r == HeadersContinue {
		s.reqHeaders = nil
	}
	return r
}

// RequestBody is decodeData: proxy_on_request_body(size, eos), where size is
// the whole buffered body while the plugin keeps returning PAUSE
// (StopIterationAndBuffer), else the size of this chunk.
func (s *Stream) RequestBody(chunk []byte, eos bool) DataStatus {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	r, _ := s.decodeData(chunk, eos)
	return r
}

// decodeData returns the status and the chunk as the plugin left it.
func (s *Stream) decodeData(chunk []byte, eos bool) (DataStatus, []byte) {
	if s.skip || !s.inVMCreated {
		return DataContinue, chunk
	}
	cur := append([]byte(nil), chunk...)
	if s.bufferingReq {
		s.appendDecoding(cur)
		cur = nil
	}
	p := &cur
	s.reqChunk = p
	s.endOfStream = eos
	size := s.buffer(bufRequestBody).size()
	r := s.callData("proxy_on_request_body", size, eos)
	s.bufferingReq = false
	switch r {
	case DataContinue:
		s.reqChunk = nil
	case DataStopIterationAndBuffer:
		s.bufferingReq = true
	}
	return r, *p
}

func (s *Stream) appendDecoding(b []byte) {
	if s.decodingBuf == nil {
		s.decodingBuf = &[]byte{}
	}
	*s.decodingBuf = append(*s.decodingBuf, b...)
}

func (s *Stream) appendEncoding(b []byte) {
	if s.encodingBuf == nil {
		s.encodingBuf = &[]byte{}
	}
	*s.encodingBuf = append(*s.encodingBuf, b...)
}

// RequestTrailers is decodeTrailers: proxy_on_request_trailers(n).
func (s *Stream) RequestTrailers(t *HeaderMap) TrailersStatus {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.decodeTrailers(t)
}

func (s *Stream) decodeTrailers(t *HeaderMap) TrailersStatus {
	if s.skip || !s.inVMCreated {
		return TrailersContinue
	}
	s.reqTrailers = t
	r := s.callTrailers("proxy_on_request_trailers", t.Len())
	if r == TrailersContinue {
		s.reqTrailers = nil
	}
	return r
}

// ResponseHeaders is encodeHeaders: proxy_on_response_headers(n, eos).
func (s *Stream) ResponseHeaders(h *HeaderMap, eos bool) HeadersStatus {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.encodeHeaders(h, eos)
}

func (s *Stream) encodeHeaders(h *HeaderMap, eos bool) HeadersStatus {
	if code, ok := h.Get(":status"); ok {
		s.info.responseCode, _ = strconv.Atoi(code)
	}
	if s.skip || !s.inVMCreated || s.failureLocalReplySent {
		return HeadersContinue
	}
	s.respHeaders = h
	s.endOfStream = eos
	r := s.callHeaders("proxy_on_response_headers", h.Len(), eos)
	if r == HeadersContinue {
		s.respHeaders = nil
	}
	return r
}

// ResponseBody is encodeData: proxy_on_response_body(size, eos).
func (s *Stream) ResponseBody(chunk []byte, eos bool) DataStatus {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	r, _ := s.encodeData(chunk, eos)
	return r
}

func (s *Stream) encodeData(chunk []byte, eos bool) (DataStatus, []byte) {
	if s.skip || !s.inVMCreated || s.failureLocalReplySent {
		return DataContinue, chunk
	}
	cur := append([]byte(nil), chunk...)
	if s.bufferingRs {
		s.appendEncoding(cur)
		cur = nil
	}
	p := &cur
	s.respChunk = p
	s.endOfStream = eos
	size := s.buffer(bufResponseBody).size()
	r := s.callData("proxy_on_response_body", size, eos)
	s.bufferingRs = false
	switch r {
	case DataContinue:
		s.respChunk = nil
	case DataStopIterationAndBuffer:
		s.bufferingRs = true
	}
	return r, *p
}

// ResponseTrailers is encodeTrailers: proxy_on_response_trailers(n).
func (s *Stream) ResponseTrailers(t *HeaderMap) TrailersStatus {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.encodeTrailers(t)
}

func (s *Stream) encodeTrailers(t *HeaderMap) TrailersStatus {
	if s.skip || !s.inVMCreated || s.failureLocalReplySent {
		return TrailersContinue
	}
	s.respTrailers = t
	r := s.callTrailers("proxy_on_response_trailers", t.Len())
	if r == TrailersContinue {
		s.respTrailers = nil
	}
	return r
}

// Log is the access-log phase: proxy_on_log, with the final request and
// response maps readable (and the live maps not).
func (s *Stream) Log(reqHeaders, respHeaders, respTrailers *HeaderMap) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	s.log(reqHeaders, respHeaders, respTrailers)
}

func (s *Stream) log(reqHeaders, respHeaders, respTrailers *HeaderMap) {
	if s.skip {
		return
	}
	if !s.inVMCreated {
		s.onCreate()
	}
	s.accessLogPhase = true
	s.alReqHeaders, s.alRespHeaders, s.alRespTr = reqHeaders, respHeaders, respTrailers
	if !s.isFailed() {
		s.vm.callFn(s.c, s.vm.fns["proxy_on_log"], uint64(s.id))
		s.vm.runAfter()
	}
	s.accessLogPhase = false
	s.alReqHeaders, s.alRespHeaders, s.alRespTr = nil, nil, nil
}

// Destroy is the filter's onDestroy: proxy_on_done then proxy_on_delete,
// after which the context id is gone.
func (s *Stream) Destroy() {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	s.destroy()
}

func (s *Stream) destroy() {
	if s.skip || s.destroyed {
		return
	}
	s.destroyed = true
	if s.inVMCreated && !s.isFailed() {
		s.vm.callFn(s.c, s.vm.fns["proxy_on_done"], uint64(s.id))
		s.vm.runAfter()
		if !s.isFailed() {
			s.vm.callFn(s.c, s.vm.fns["proxy_on_delete"], uint64(s.id))
			s.vm.runAfter()
		}
	}
	if s.c != nil && s.gen == s.vm.gen {
		delete(s.vm.contexts, s.id)
	}
}

// Finish runs the end of a stream as Envoy does: proxy_on_log, then
// proxy_on_done and proxy_on_delete.
func (s *Stream) Finish(reqHeaders, respHeaders, respTrailers *HeaderMap) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	s.log(reqHeaders, respHeaders, respTrailers)
	s.destroy()
}
