package wasmhost

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Response is what the downstream client received from Envoy.
type Response struct {
	// StatusCode is the :status the client got.
	StatusCode int
	// Header is the response header map without pseudo-headers.
	Header http.Header
	// Headers is the exact header map sent to the client, :status first.
	Headers *HeaderMap
	// Body is the body the client read: an HTTP/1.1 client stops at the
	// content-length the headers announce, so a plugin that grows a body
	// without fixing content-length gets it cut, as with real Envoy.
	Body []byte
	// Trailer holds response trailers, if any.
	Trailer http.Header
	// LocalReply is true when Envoy answered locally (plugin local reply,
	// fail-closed 503, route timeout, no upstream) instead of the upstream.
	LocalReply bool
	// LocalReplyDetails is the response code details of a local reply.
	LocalReplyDetails string
	// ContentLengthMismatch reports that the body passed through the filter
	// did not match the announced content-length.
	ContentLengthMismatch bool
	// StreamID is the filter's context id for the stream (0 if none).
	StreamID uint32
	// RouteCacheClears counts route cache clears during the stream.
	RouteCacheClears int
}

// Errors returned by VM.Do.
var (
	// ErrStreamReset: the stream was reset (proxy_close_stream, a local
	// reply after the response started, an upstream reset mid-response).
	ErrStreamReset = errors.New("stream reset")
	// ErrShortBody: the body was shorter than its content-length; a real
	// client would wait for the missing bytes until a timeout.
	ErrShortBody = errors.New("body shorter than content-length")
)

// chunked is a request body delivered to the filter chunk by chunk.
type chunked struct {
	chunks [][]byte
	r      io.Reader
}

// Read implements io.Reader over the concatenated chunks.
func (c *chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

// Close implements io.Closer.
func (c *chunked) Close() error { return nil }

// Chunks returns a request body that VM.Do hands to the filter as separate
// data frames (each one a proxy_on_request_body call), e.g. to exercise
// body buffering. Use it as the body of httptest.NewRequest.
func Chunks(chunks ...string) io.ReadCloser {
	c := &chunked{}
	var rs []io.Reader
	for _, s := range chunks {
		c.chunks = append(c.chunks, []byte(s))
		rs = append(rs, strings.NewReader(s))
	}
	c.r = io.MultiReader(rs...)
	return c
}

// dirState is the filter manager's view of one direction of the stream at
// this filter.
type dirState struct {
	headersForwarded bool
	stopped          bool // iteration stopped here; needs continue
	stopAll          bool // StopAll*: new data is buffered without calling the filter
	fmBuf            []byte
	fmEOS            bool
	fmTrailers       *HeaderMap
	eosHeld          bool
	heldTrailers     *HeaderMap
	done             bool // end of stream forwarded past the filter
}

// exchange drives one stream like Envoy's HTTP connection manager with this
// filter followed by the router.
type exchange struct {
	vm  *VM
	s   *Stream
	ctx context.Context

	reqHeaders  *HeaderMap
	reqChunks   [][]byte
	reqTrailers *HeaderMap
	nextChunk   int
	reqEnded    bool // every request input was handed to the filter manager

	rq, rs dirState

	upStarted  bool
	upStart    time.Time
	upCancel   context.CancelFunc
	upBody     *streamBody
	upReq      *http.Request
	upCL       int64
	upSent     int64
	upEvents   *evQueue
	routeTimer *time.Timer
	routeFire  <-chan time.Time

	rsHeaders     *HeaderMap // response headers as they reached the filter
	rsHeadersEOS  bool
	respFromLocal bool // the response being encoded is a local reply
	resp          Response
	clientHdrs    *HeaderMap
	clientCL      int64
	finished      bool
	err           error
}

// evQueue is an unbounded queue of upstream events.
type evQueue struct {
	mu    sync.Mutex
	items []upstreamEvent
	wake  chan struct{}
}

func newEvQueue() *evQueue { return &evQueue{wake: make(chan struct{}, 1)} }

func (q *evQueue) push(ev upstreamEvent) {
	q.mu.Lock()
	q.items = append(q.items, ev)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *evQueue) pop() (upstreamEvent, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return upstreamEvent{}, false
	}
	ev := q.items[0]
	q.items = q.items[1:]
	return ev, true
}

// Do sends one request through the filter and the router, the way Envoy's
// HTTP connection manager runs it over HTTP/1.1: request headers, each body
// chunk (then an empty end-of-stream chunk, or the trailers), the upstream
// call, and the response callbacks, applying Envoy's status semantics
// (pauses, buffering, continue_stream, local replies, failure policy). It
// returns when the client has the whole response, or with an error when
// the stream is reset or ctx ends while the stream is paused.
func (vm *VM) Do(ctx context.Context, req *http.Request) (*Response, error) {
	x := &exchange{vm: vm, ctx: ctx, upEvents: newEvQueue(), upCL: -1, clientCL: -1}
	if err := x.readRequest(req); err != nil {
		return nil, err
	}
	x.s = vm.NewStream()
	x.resp.StreamID = x.s.ID()
	defer x.cleanup()

	vm.mu.Lock()
	x.startRequest()
	vm.mu.Unlock()
	for !x.finished {
		if evs := x.s.TakeEvents(); len(evs) > 0 {
			vm.mu.Lock()
			for _, e := range evs {
				if !x.finished {
					x.onEvent(e)
				}
			}
			vm.mu.Unlock()
			continue
		}
		if ev, ok := x.upEvents.pop(); ok {
			vm.mu.Lock()
			x.onUpstream(ev)
			vm.mu.Unlock()
			continue
		}
		select {
		case <-x.s.evWake:
		case <-x.upEvents.wake:
		case <-x.routeFire:
			vm.mu.Lock()
			x.onRouteTimeout()
			vm.mu.Unlock()
		case <-ctx.Done():
			x.err = fmt.Errorf("stream %d not complete: %w", x.s.ID(), ctx.Err())
			x.finished = true
		}
	}
	vm.mu.Lock()
	x.s.log(x.reqHeaders, x.clientHdrs, nil)
	x.s.destroy()
	x.resp.RouteCacheClears = x.s.routeClears
	vm.mu.Unlock()
	if x.err != nil {
		return &x.resp, x.err
	}
	return &x.resp, nil
}

func (x *exchange) cleanup() {
	if x.upCancel != nil {
		x.upCancel()
	}
	if x.upBody != nil {
		x.upBody.end(io.ErrUnexpectedEOF)
	}
	if x.routeTimer != nil {
		x.routeTimer.Stop()
	}
}

// readRequest converts the client request into Envoy's request header map
// (HTTP/1 pseudo-headers first, then the headers, then the ones the HCM
// adds before filters run: x-forwarded-proto and x-request-id).
func (x *exchange) readRequest(req *http.Request) error {
	host := req.Host
	if host == "" && req.URL != nil {
		host = req.URL.Host
	}
	path := "/"
	if req.URL != nil {
		path = req.URL.RequestURI()
	}
	m := newRequestHeaderMap(Pair{":authority", host}, Pair{":path", path}, Pair{":method", req.Method}, Pair{":scheme", "http"})
	m.addHTTPHeader(req.Header)
	if req.Body != nil && req.Body != http.NoBody {
		if c, ok := req.Body.(*chunked); ok {
			for _, ch := range c.chunks {
				if len(ch) > 0 {
					x.reqChunks = append(x.reqChunks, ch)
				}
			}
		} else {
			b, err := io.ReadAll(req.Body)
			if err != nil {
				return fmt.Errorf("read request body: %w", err)
			}
			if len(b) > 0 {
				x.reqChunks = [][]byte{b}
			}
		}
	}
	total := 0
	for _, c := range x.reqChunks {
		total += len(c)
	}
	if _, ok := m.Get("content-length"); !ok && req.ContentLength > 0 {
		m.Add("content-length", strconv.FormatInt(req.ContentLength, 10))
	} else if !ok && total > 0 && req.ContentLength == 0 && len(x.reqChunks) == 1 {
		m.Add("content-length", strconv.Itoa(total))
	}
	m.Set("x-forwarded-proto", "http")
	if _, ok := m.Get("x-request-id"); !ok {
		m.Add("x-request-id", newRequestID())
	}
	x.reqHeaders = m
	if len(req.Trailer) > 0 {
		t := NewHeaderMap()
		t.addHTTPHeader(req.Trailer)
		x.reqTrailers = t
	}
	return nil
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// --- request path -------------------------------------------------------

func (x *exchange) startRequest() {
	headersOnly := len(x.reqChunks) == 0 && x.reqTrailers == nil
	for _, c := range x.reqChunks {
		x.s.info.bytesRecv += uint64(len(c))
	}
	st := x.s.decodeHeaders(x.reqHeaders, headersOnly)
	if x.finished || x.respFromLocal {
		return
	}
	switch st {
	case HeadersContinue:
		x.forwardReqHeaders(headersOnly)
	case HeadersStopIteration:
		x.rq.stopped = true
	default:
		x.rq.stopped, x.rq.stopAll = true, true
	}
	if headersOnly {
		x.reqEnded = true
		x.rq.eosHeld = x.rq.stopped
		return
	}
	x.pumpRequest()
}

// pumpRequest hands the remaining request inputs to the filter manager.
func (x *exchange) pumpRequest() {
	for !x.reqEnded && !x.finished && !x.respFromLocal {
		if x.rq.stopAll {
			for ; x.nextChunk < len(x.reqChunks); x.nextChunk++ {
				x.rq.fmBuf = append(x.rq.fmBuf, x.reqChunks[x.nextChunk]...)
			}
			if x.reqTrailers != nil {
				x.rq.fmTrailers = x.reqTrailers
			} else {
				x.rq.fmEOS = true
			}
			x.reqEnded = true
			return
		}
		if x.nextChunk < len(x.reqChunks) {
			c := x.reqChunks[x.nextChunk]
			x.nextChunk++
			x.decodeDataStep(c, false)
			continue
		}
		x.reqEnded = true
		if x.reqTrailers != nil {
			x.decodeTrailersStep(x.reqTrailers)
		} else {
			x.decodeDataStep(nil, true)
		}
	}
}

func (x *exchange) decodeDataStep(chunk []byte, eos bool) {
	st, cur := x.s.decodeData(chunk, eos)
	if x.finished || x.respFromLocal {
		return
	}
	switch st {
	case DataContinue:
		if !x.rq.headersForwarded {
			x.forwardReqHeaders(false)
		}
		data := cur
		if x.s.decodingBuf != nil {
			data = append(*x.s.decodingBuf, cur...)
			x.s.decodingBuf = nil
		}
		x.rq.stopped = false
		x.forwardReqData(data, eos)
	case DataStopIterationAndBuffer, DataStopIterationAndWatermark:
		x.s.appendDecoding(cur)
		x.rq.stopped = true
		x.rq.eosHeld = x.rq.eosHeld || eos
	default:
		x.rq.stopped = true
		x.rq.eosHeld = x.rq.eosHeld || eos
	}
	if t := x.s.addedReqTrailers; t != nil && eos && st == DataContinue {
		x.s.addedReqTrailers = nil
		x.forwardReqTrailers(t)
	}
}

func (x *exchange) decodeTrailersStep(t *HeaderMap) {
	st := x.s.decodeTrailers(t)
	if x.finished || x.respFromLocal {
		return
	}
	if st == TrailersContinue {
		if !x.rq.headersForwarded {
			x.forwardReqHeaders(false)
		}
		if x.s.decodingBuf != nil {
			x.forwardReqData(*x.s.decodingBuf, false)
			x.s.decodingBuf = nil
		}
		x.rq.stopped = false
		x.forwardReqTrailers(t)
		return
	}
	x.rq.stopped = true
	x.rq.heldTrailers = t
}

// continueDecoding is decoder_callbacks->continueDecoding().
func (x *exchange) continueDecoding() {
	switch {
	case x.rq.done:
		return
	case x.rq.stopAll:
		x.rq.stopAll, x.rq.stopped = false, false
		hasData := len(x.rq.fmBuf) > 0
		headersOnly := !hasData && !x.rq.fmEOS && x.rq.fmTrailers == nil
		if !x.rq.headersForwarded {
			x.forwardReqHeaders(headersOnly && x.reqEnded)
		}
		if headersOnly && x.reqEnded {
			return
		}
		if hasData || x.rq.fmEOS {
			buf, eos := x.rq.fmBuf, x.rq.fmEOS
			x.rq.fmBuf, x.rq.fmEOS = nil, false
			x.decodeDataStep(buf, eos)
		}
		if t := x.rq.fmTrailers; t != nil && !x.rq.stopped && !x.finished && !x.respFromLocal {
			x.rq.fmTrailers = nil
			x.decodeTrailersStep(t)
		}
		x.pumpRequest()
	case x.rq.stopped:
		x.rq.stopped = false
		eos := x.rq.eosHeld && x.rq.heldTrailers == nil
		if !x.rq.headersForwarded {
			x.forwardReqHeaders(eos && x.s.decodingBuf == nil && x.nextChunk == 0 && len(x.reqChunks) == 0)
		}
		if x.rq.done {
			return
		}
		if x.s.decodingBuf != nil || eos {
			var data []byte
			if x.s.decodingBuf != nil {
				data = *x.s.decodingBuf
				x.s.decodingBuf = nil
			}
			x.forwardReqData(data, eos)
		}
		if t := x.rq.heldTrailers; t != nil {
			x.rq.heldTrailers = nil
			x.forwardReqTrailers(t)
		}
		x.pumpRequest()
	}
}

// forwardReqHeaders passes the request headers to the router, which starts
// the upstream request with the header map as the plugin left it.
func (x *exchange) forwardReqHeaders(eos bool) {
	x.rq.headersForwarded = true
	h := x.reqHeaders.Clone()
	if x.vm.host.cfg.Upstream == nil {
		x.sendRouterReply(503, "no healthy upstream", "no_healthy_upstream")
		return
	}
	method, _ := h.Get(":method")
	path, _ := h.Get(":path")
	authority, _ := h.Get(":authority")
	u, err := url.ParseRequestURI(path)
	if err != nil {
		u = &url.URL{Path: path}
	}
	ctx, cancel := context.WithCancel(context.Background())
	x.upCancel = cancel
	hdr := h.HTTPHeader()
	hdr.Set("X-Envoy-Expected-Rq-Timeout-Ms", strconv.FormatInt(x.vm.host.cfg.RouteTimeout.Milliseconds(), 10))
	x.upBody = newStreamBody()
	req := (&http.Request{
		Method:     method,
		URL:        u,
		Host:       authority,
		Header:     hdr,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		RemoteAddr: x.vm.host.cfg.DestinationAddress,
		RequestURI: path,
		Body:       x.upBody,
		Trailer:    http.Header{},
	}).WithContext(ctx)
	req.ContentLength = -1
	if cl, ok := h.Get("content-length"); ok {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil {
			req.ContentLength, x.upCL = n, n
		}
	}
	if eos {
		req.ContentLength = 0
		req.Body = http.NoBody
		x.upBody.end(nil)
		x.rq.done = true
	}
	x.upReq = req
	x.upStarted = true
	x.upStart = time.Now()
	if eos {
		x.armRouteTimeout()
	}
	handler := x.vm.host.cfg.Upstream
	events := x.upEvents
	go func() {
		w := newUpstreamWriter(events.push)
		defer func() {
			if r := recover(); r != nil {
				events.push(upstreamEvent{err: fmt.Errorf("upstream handler panic: %v", r)})
				return
			}
			w.finish()
		}()
		handler.ServeHTTP(w, req)
	}()
}

// forwardReqData streams body bytes to the upstream; like an HTTP/1.1
// upstream, it reads no more than the announced content-length.
func (x *exchange) forwardReqData(b []byte, eos bool) {
	if x.upBody == nil || x.rq.done {
		return
	}
	if x.upCL >= 0 {
		room := x.upCL - x.upSent
		if int64(len(b)) > room {
			x.vm.logf(LogWarn, x.s.ID(), "request body exceeds content-length %d: upstream reads %d bytes", x.upCL, x.upCL)
			b = b[:room]
		}
	}
	x.upSent += int64(len(b))
	if len(b) > 0 {
		x.upBody.write(b)
	}
	if eos {
		x.rq.done = true
		if x.upCL >= 0 && x.upSent < x.upCL {
			x.upBody.end(io.ErrUnexpectedEOF)
		} else {
			x.upBody.end(nil)
		}
		x.armRouteTimeout()
	}
}

func (x *exchange) forwardReqTrailers(t *HeaderMap) {
	if x.upBody == nil || x.rq.done {
		return
	}
	x.upBody.mu.Lock()
	for _, p := range t.Pairs() {
		x.upReq.Trailer.Add(p.Key, p.Value)
	}
	x.upBody.mu.Unlock()
	x.rq.done = true
	x.upBody.end(nil)
	x.armRouteTimeout()
}

func (x *exchange) armRouteTimeout() {
	if x.routeTimer == nil && x.upStarted {
		x.routeTimer = time.NewTimer(x.vm.host.cfg.RouteTimeout)
		x.routeFire = x.routeTimer.C
	}
}

func (x *exchange) onRouteTimeout() {
	x.routeFire = nil
	if x.rs.done || x.finished {
		return
	}
	if x.clientHdrs != nil {
		x.reset()
		return
	}
	x.sendRouterReply(504, "upstream request timeout", "upstream_response_timeout")
}

// --- response path ------------------------------------------------------

func (x *exchange) onUpstream(ev upstreamEvent) {
	if x.finished || x.respFromLocal {
		return
	}
	switch {
	case ev.err != nil:
		if x.clientHdrs != nil || x.s.respHeaders != nil {
			x.reset()
			return
		}
		x.sendRouterReply(503, "upstream connect error or disconnect/reset before headers. reset reason: remote reset", "upstream_reset_before_response_started")
	case ev.headers != nil:
		if x.routeTimer != nil {
			x.routeTimer.Stop()
			x.routeFire = nil
		}
		// The router adds the upstream service time to upstream responses.
		ev.headers.Add("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(x.upStart).Milliseconds(), 10))
		x.encodeHeadersStep(ev.headers, ev.eos)
	case ev.trailers != nil:
		x.respInput(nil, false, ev.trailers)
	default:
		x.respInput(ev.data, ev.eos, nil)
	}
}

func (x *exchange) encodeHeadersStep(h *HeaderMap, eos bool) {
	st := x.s.encodeHeaders(h, eos)
	if x.finished {
		return
	}
	x.rsHeaders, x.rsHeadersEOS = h, eos
	switch st {
	case HeadersContinue:
		x.forwardRespHeaders(h, eos)
	case HeadersStopIteration:
		x.rs.stopped = true
		x.rs.eosHeld = eos
	default:
		x.rs.stopped, x.rs.stopAll = true, true
		x.rs.fmEOS = eos
	}
}

// respInput is a response data frame or trailers arriving from upstream.
func (x *exchange) respInput(data []byte, eos bool, trailers *HeaderMap) {
	if x.rs.stopAll {
		x.rs.fmBuf = append(x.rs.fmBuf, data...)
		if trailers != nil {
			x.rs.fmTrailers = trailers
		}
		x.rs.fmEOS = x.rs.fmEOS || eos
		return
	}
	if trailers != nil {
		x.encodeTrailersStep(trailers)
		return
	}
	x.encodeDataStep(data, eos)
}

func (x *exchange) encodeDataStep(chunk []byte, eos bool) {
	st, cur := x.s.encodeData(chunk, eos)
	if x.finished {
		return
	}
	switch st {
	case DataContinue:
		if !x.rs.headersForwarded {
			x.forwardRespHeaders(x.rsHeaders, false)
		}
		data := cur
		if x.s.encodingBuf != nil {
			data = append(*x.s.encodingBuf, cur...)
			x.s.encodingBuf = nil
		}
		x.rs.stopped = false
		x.forwardRespData(data, eos)
		if t := x.s.addedRespTrailers; t != nil && eos {
			x.s.addedRespTrailers = nil
			x.forwardRespTrailers(t)
		}
	case DataStopIterationAndBuffer, DataStopIterationAndWatermark:
		x.s.appendEncoding(cur)
		x.rs.stopped = true
		x.rs.eosHeld = x.rs.eosHeld || eos
	default:
		x.rs.stopped = true
		x.rs.eosHeld = x.rs.eosHeld || eos
	}
}

func (x *exchange) encodeTrailersStep(t *HeaderMap) {
	st := x.s.encodeTrailers(t)
	if x.finished {
		return
	}
	if st == TrailersContinue {
		if !x.rs.headersForwarded {
			x.forwardRespHeaders(x.rsHeaders, false)
		}
		if x.s.encodingBuf != nil {
			x.forwardRespData(*x.s.encodingBuf, false)
			x.s.encodingBuf = nil
		}
		x.rs.stopped = false
		x.forwardRespTrailers(t)
		return
	}
	x.rs.stopped = true
	x.rs.heldTrailers = t
}

// continueEncoding is encoder_callbacks->continueEncoding().
func (x *exchange) continueEncoding() {
	switch {
	case x.rs.done || x.rsHeaders == nil:
		return
	case x.rs.stopAll:
		x.rs.stopAll, x.rs.stopped = false, false
		headersOnly := len(x.rs.fmBuf) == 0 && x.rs.fmTrailers == nil && x.rs.fmEOS && x.rsHeadersEOS
		if !x.rs.headersForwarded {
			x.forwardRespHeaders(x.rsHeaders, headersOnly)
		}
		if headersOnly {
			return
		}
		if len(x.rs.fmBuf) > 0 || x.rs.fmEOS && x.rs.fmTrailers == nil {
			buf, eos := x.rs.fmBuf, x.rs.fmEOS && x.rs.fmTrailers == nil
			x.rs.fmBuf = nil
			x.encodeDataStep(buf, eos)
		}
		if t := x.rs.fmTrailers; t != nil && !x.rs.stopped && !x.finished {
			x.rs.fmTrailers = nil
			x.encodeTrailersStep(t)
		}
	case x.rs.stopped:
		x.rs.stopped = false
		eos := x.rs.eosHeld && x.rs.heldTrailers == nil
		if !x.rs.headersForwarded {
			x.forwardRespHeaders(x.rsHeaders, eos && x.s.encodingBuf == nil && x.rsHeadersEOS)
		}
		if x.rs.done {
			return
		}
		if x.s.encodingBuf != nil || eos {
			var data []byte
			if x.s.encodingBuf != nil {
				data = *x.s.encodingBuf
				x.s.encodingBuf = nil
			}
			x.forwardRespData(data, eos)
		}
		if t := x.rs.heldTrailers; t != nil {
			x.rs.heldTrailers = nil
			x.forwardRespTrailers(t)
		}
	}
}

func (x *exchange) forwardRespHeaders(h *HeaderMap, eos bool) {
	if x.rs.headersForwarded {
		return
	}
	x.rs.headersForwarded = true
	x.clientHdrs = h.Clone()
	code, _ := h.Get(":status")
	x.resp.StatusCode, _ = strconv.Atoi(code)
	x.resp.Headers = x.clientHdrs
	x.resp.Header = h.HTTPHeader()
	if cl, ok := h.Get("content-length"); ok {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil {
			x.clientCL = n
		}
	}
	if eos {
		x.completeResponse()
	}
}

func (x *exchange) forwardRespData(b []byte, eos bool) {
	if x.rs.done {
		return
	}
	x.resp.Body = append(x.resp.Body, b...)
	if eos {
		x.completeResponse()
	}
}

func (x *exchange) forwardRespTrailers(t *HeaderMap) {
	if x.rs.done {
		return
	}
	x.resp.Trailer = t.HTTPHeader()
	x.completeResponse()
}

// completeResponse ends the stream from the client's point of view.
func (x *exchange) completeResponse() {
	x.rs.done = true
	x.finished = true
	if x.clientCL >= 0 && int64(len(x.resp.Body)) != x.clientCL {
		x.resp.ContentLengthMismatch = true
		if int64(len(x.resp.Body)) > x.clientCL {
			x.resp.Body = x.resp.Body[:x.clientCL]
		} else {
			x.err = fmt.Errorf("%w: got %d of %d bytes", ErrShortBody, len(x.resp.Body), x.clientCL)
		}
	}
}

// --- local replies, resets, events --------------------------------------

func (x *exchange) onEvent(e StreamEvent) {
	switch e {
	case EventContinueRequest:
		x.continueDecoding()
	case EventContinueResponse:
		x.continueEncoding()
	case EventLocalReply:
		x.onLocalReply(x.s.localReply)
	case EventReset:
		x.reset()
	}
}

// onLocalReply applies sendLocalReply: during the request it replaces the
// upstream and runs through this filter's response callbacks; once this
// filter has seen response headers it replaces the response without
// calling the filter again; after the client got headers it resets.
func (x *exchange) onLocalReply(lr *LocalReply) {
	if lr == nil || x.finished {
		return
	}
	if x.clientHdrs != nil {
		x.reset()
		return
	}
	x.stopUpstream()
	x.rq.done = true
	h := localReplyHeaders(lr)
	x.resp.LocalReply = true
	x.resp.LocalReplyDetails = lr.Details
	if x.rsHeaders != nil || x.respFromLocal {
		// Response already at this filter: send directly.
		x.rs = dirState{}
		x.forwardRespHeaders(h, len(lr.Body) == 0)
		if len(lr.Body) > 0 {
			x.forwardRespData(lr.Body, true)
		}
		return
	}
	x.respFromLocal = true
	x.encodeLocal(h, lr.Body)
}

// encodeLocal runs a locally generated response through the filter.
func (x *exchange) encodeLocal(h *HeaderMap, body []byte) {
	x.encodeHeadersStep(h, len(body) == 0)
	if x.finished || len(body) == 0 {
		return
	}
	x.respInput(body, true, nil)
}

// sendRouterReply is a local reply produced by the router (no upstream,
// upstream reset, route timeout): it passes through the filter.
func (x *exchange) sendRouterReply(code int, body, details string) {
	x.stopUpstream()
	x.rq.done = true
	x.resp.LocalReply = true
	x.resp.LocalReplyDetails = details
	x.encodeLocal(localReplyHeaders(&LocalReply{StatusCode: code, Body: []byte(body)}), []byte(body))
}

func localReplyHeaders(lr *LocalReply) *HeaderMap {
	h := NewHeaderMap(Pair{":status", strconv.Itoa(lr.StatusCode)})
	for _, p := range lr.Headers {
		h.Add(p.Key, p.Value)
	}
	h.Set("content-length", strconv.Itoa(len(lr.Body)))
	if len(lr.Body) > 0 {
		if _, ok := h.Get("content-type"); !ok {
			h.Add("content-type", "text/plain")
		}
	}
	return h
}

func (x *exchange) stopUpstream() {
	if x.upCancel != nil {
		x.upCancel()
	}
	if x.upBody != nil {
		x.upBody.end(io.ErrUnexpectedEOF)
	}
	if x.routeTimer != nil {
		x.routeTimer.Stop()
		x.routeFire = nil
	}
	x.upEvents = newEvQueue()
}

func (x *exchange) reset() {
	x.stopUpstream()
	x.finished = true
	if x.clientHdrs != nil && x.clientCL >= 0 && int64(len(x.resp.Body)) >= x.clientCL {
		// The client already read the whole announced body: the reset that
		// follows is invisible to it.
		x.completeResponse()
		return
	}
	details := x.s.resetDetails
	if details == "" {
		details = "reset"
	}
	x.err = fmt.Errorf("%w (%s)", ErrStreamReset, details)
}
