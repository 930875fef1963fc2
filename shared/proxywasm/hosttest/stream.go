//go:build !wasip1

package hosttest

import (
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/shared/proxywasm"
)

// Request is a client request for Do.
type Request struct {
	Method    string // default GET, or POST with a body
	Path      string // default /
	Authority string // default gateway.test
	Headers   [][2]string
	// Body is sent as one data frame with a content-length header; Chunks as
	// several frames without one.
	Body     []byte
	Chunks   [][]byte
	Trailers [][2]string
}

// Result is what the client received, and what reached the upstream.
type Result struct {
	Status   int
	Headers  [][2]string
	Body     []byte
	Trailers [][2]string
	// LocalReply is set when the plugin answered instead of the upstream;
	// Details is its response-code detail.
	LocalReply bool
	Details    string
	// Reset is set when the stream was reset (close_stream, or a local reply
	// after the response had started).
	Reset bool
	// Paused is set when the stream waits for something the test must do
	// (answer a callout, tick); Stream.Finish goes on from there.
	Paused bool
	// Upstream is the request as the upstream received it; nil when it never got there.
	Upstream *Upstream
	// RouteCacheClears counts clear_route_cache calls on the stream.
	RouteCacheClears int
	Stream           *Stream
}

// Header returns the first value of a response header, or "".
func (r *Result) Header(name string) string { return get(r.Headers, name) }

const (
	idle        = iota // headers not seen yet
	stoppedAll         // headers PAUSE: nothing moves until the plugin resumes
	stoppedIter        // headers PAUSE with allow_on_headers_stop_iteration: body callbacks go on
	flowing            // headers went on
)

// direction is one half of a stream as this filter sees it.
type direction struct {
	request  bool
	headers  [][2]string
	gone     bool // the request header map was released (Envoy frees it on continue)
	state    int
	buf      []byte // body buffered in the filter
	held     []byte // frames held while headers stop all iteration
	heldEOS  bool
	heldAny  bool
	trailers [][2]string
	trlHeld  bool // trailers arrived while headers stop all iteration
	trlPause bool // the trailers callback paused
	end      bool // the peer finished sending

	outHeaders  [][2]string // what went on (upstream or client)
	outBody     []byte
	outTrailers [][2]string
	complete    bool
}

type localReply struct {
	status  int
	details string
	body    []byte
	headers [][2]string
}

// Stream is one HTTP stream through the filter.
type Stream struct {
	h        *Host
	id       uint32
	req      direction
	resp     direction
	reply    *localReply // requested by the plugin
	replied  bool
	replying bool // the local reply is running through the response callbacks
	local    bool // the client got a local reply
	details  string
	reset    bool
	inLog    bool
	ended    bool
	props    map[string][]byte
	clears   int
	upstream *Upstream
}

// NewStream creates a stream context (proxy_on_context_create).
func (h *Host) NewStream() *Stream {
	s := &Stream{h: h, id: nextID(), req: direction{request: true}, props: map[string][]byte{}}
	h.streams[s.id] = s
	h.call(s.id, func() { h.guest.OnContextCreate(s.id, h.root) })
	return s
}

// Upstream is the request as it reached the upstream; nil while the filter
// holds it or when it never will.
func (s *Stream) Upstream() *Upstream { return s.upstream }

// ID is the stream's context id.
func (s *Stream) ID() uint32 { return s.id }

// Do sends a request through the filter and, when it lets it through, to
// Config.Upstream, then the response back; it answers callouts with
// Config.Callouts. A stream left waiting comes back with Paused set.
func (h *Host) Do(r Request) *Result {
	s := h.NewStream()
	s.SendRequest(r)
	return s.Finish()
}

// SendRequest delivers a whole client request, HTTP/1 style: headers, each
// body frame, an empty end-of-stream frame (or the trailers).
func (s *Stream) SendRequest(r Request) {
	method := r.Method
	if method == "" {
		method = "GET"
		if r.Body != nil || r.Chunks != nil {
			method = "POST"
		}
	}
	path := r.Path
	if path == "" {
		path = "/"
	}
	auth := r.Authority
	if auth == "" {
		auth = "gateway.test"
	}
	hdrs := [][2]string{{":authority", auth}, {":path", path}, {":method", method}, {":scheme", "http"}}
	hasCL := false
	for _, kv := range r.Headers {
		k := strings.ToLower(kv[0])
		hasCL = hasCL || k == "content-length"
		hdrs = append(hdrs, [2]string{k, kv[1]})
	}
	chunks := r.Chunks
	if r.Body != nil {
		chunks = [][]byte{r.Body}
		if !hasCL {
			hdrs = append(hdrs, [2]string{"content-length", strconv.Itoa(len(r.Body))})
		}
	}
	hasBody := len(chunks) > 0 && (len(chunks) > 1 || len(chunks[0]) > 0)
	s.RequestHeaders(hdrs, !hasBody && r.Trailers == nil)
	if hasBody {
		for _, c := range chunks {
			s.RequestBody(c, false)
		}
		if r.Trailers == nil {
			s.RequestBody(nil, true)
		}
	}
	if r.Trailers != nil {
		s.RequestTrailers(r.Trailers)
	}
}

// Finish goes on with a stream: to the upstream when the request went
// through, the response back through the filter, then the stream's end. A
// stream still waiting comes back Paused; call Finish again once resumed.
func (s *Stream) Finish() *Result {
	h := s.h
	h.drain()
	if !s.replied && !s.reset && s.resp.state == idle {
		if !s.req.complete {
			return s.result(true)
		}
		var resp *Response
		if h.cfg.Upstream != nil {
			resp = h.cfg.Upstream(s.upstream)
		}
		if resp == nil {
			resp = &Response{Status: 200}
		}
		s.SendResponse(resp)
	}
	if !s.reset && !s.resp.complete {
		return s.result(true)
	}
	s.End()
	return s.result(false)
}

// SendResponse delivers an upstream response: headers, each data frame, then
// an empty end-of-stream frame (or the trailers).
func (s *Stream) SendResponse(r *Response) {
	r2 := normalise(r)
	chunks := r.Chunks
	if chunks == nil && len(r2.Body) > 0 {
		chunks = [][]byte{r2.Body}
	}
	hdrs := r2.Headers
	if r.Chunks == nil && len(r2.Body) > 0 && get(hdrs, "content-length") == "" {
		hdrs = append(hdrs, [2]string{"content-length", strconv.Itoa(len(r2.Body))})
	}
	s.ResponseHeaders(hdrs, len(chunks) == 0 && r.Trailers == nil)
	if len(chunks) > 0 {
		for _, c := range chunks {
			s.ResponseBody(c, false)
		}
		if r.Trailers == nil {
			s.ResponseBody(nil, true)
		}
	}
	if r.Trailers != nil {
		s.ResponseTrailers(r.Trailers)
	}
}

func (s *Stream) result(paused bool) *Result {
	r := &Result{
		Headers: s.resp.outHeaders, Body: s.resp.outBody, Trailers: s.resp.outTrailers,
		LocalReply: s.local, Details: s.details, Reset: s.reset, Paused: paused,
		Upstream: s.upstream, RouteCacheClears: s.clears, Stream: s,
	}
	r.Status, _ = strconv.Atoi(get(r.Headers, ":status"))
	return r
}

// ---- per-callback API ----

// RequestHeaders runs proxy_on_request_headers with these headers (keys are lower-cased).
func (s *Stream) RequestHeaders(headers [][2]string, endOfStream bool) proxywasm.Action {
	return s.sendHeaders(&s.req, headers, endOfStream)
}

// RequestBody runs proxy_on_request_body with one more data frame.
func (s *Stream) RequestBody(data []byte, endOfStream bool) proxywasm.Action {
	return s.settled(s.body(&s.req, data, endOfStream))
}

// RequestTrailers runs proxy_on_request_trailers.
func (s *Stream) RequestTrailers(trailers [][2]string) proxywasm.Action {
	return s.settled(s.trailers(&s.req, trailers))
}

// ResponseHeaders runs proxy_on_response_headers.
func (s *Stream) ResponseHeaders(headers [][2]string, endOfStream bool) proxywasm.Action {
	if s.replied || s.reset {
		return proxywasm.ActionContinue
	}
	return s.sendHeaders(&s.resp, headers, endOfStream)
}

// ResponseBody runs proxy_on_response_body with one more data frame.
func (s *Stream) ResponseBody(data []byte, endOfStream bool) proxywasm.Action {
	return s.settled(s.body(&s.resp, data, endOfStream))
}

// ResponseTrailers runs proxy_on_response_trailers.
func (s *Stream) ResponseTrailers(trailers [][2]string) proxywasm.Action {
	return s.settled(s.trailers(&s.resp, trailers))
}

func (s *Stream) sendHeaders(d *direction, headers [][2]string, endOfStream bool) proxywasm.Action {
	for _, kv := range headers {
		d.headers = append(d.headers, [2]string{strings.ToLower(kv[0]), kv[1]})
	}
	d.end = endOfStream
	return s.settled(s.headers(d, endOfStream))
}

// settled runs the work Envoy does after a callback, then returns its action.
func (s *Stream) settled(a proxywasm.Action) proxywasm.Action {
	s.h.drain()
	return a
}

// End finishes the stream: proxy_on_log, proxy_on_done, proxy_on_delete.
func (s *Stream) End() {
	if s.ended {
		return
	}
	s.ended = true
	h := s.h
	s.inLog = true
	h.call(s.id, func() { h.guest.OnLog(s.id) })
	s.inLog = false
	h.call(s.id, func() { h.guest.OnDone(s.id) })
	h.call(s.id, func() { h.guest.OnDelete(s.id) })
	delete(h.streams, s.id)
	h.drain()
}

// blocked reports whether callbacks of this direction are no longer
// delivered, and whether what the filter holds must stay where it is: after
// a local reply, only the reply itself runs through the response callbacks.
func (s *Stream) blocked(d *direction) bool {
	if s.reset || s.ended {
		return true
	}
	if d.request {
		return s.replied
	}
	return (s.replied || s.local) && !s.replying
}

func (s *Stream) headers(d *direction, eos bool) proxywasm.Action {
	if s.blocked(d) {
		return proxywasm.ActionPause
	}
	var a proxywasm.Action
	h := s.h
	h.call(s.id, func() {
		if d.request {
			a = h.guest.OnRequestHeaders(s.id, uint32(len(d.headers)), eos)
		} else {
			a = h.guest.OnResponseHeaders(s.id, uint32(len(d.headers)), eos)
		}
	})
	if s.blocked(d) || d.state != idle {
		return a
	}
	if a == proxywasm.ActionContinue {
		s.goOn(d)
		return a
	}
	d.state = stoppedAll
	if h.cfg.AllowOnHeadersStopIteration {
		d.state = stoppedIter
	}
	return a
}

func (s *Stream) body(d *direction, data []byte, eos bool) proxywasm.Action {
	if s.blocked(d) || d.end && !eos {
		return proxywasm.ActionPause
	}
	d.end = d.end || eos
	if d.state == stoppedAll {
		d.held = append(d.held, data...)
		d.heldEOS, d.heldAny = eos, true
		return proxywasm.ActionPause
	}
	d.buf = append(d.buf, data...)
	return s.deliverBody(d, eos)
}

func (s *Stream) deliverBody(d *direction, eos bool) proxywasm.Action {
	var a proxywasm.Action
	h := s.h
	h.call(s.id, func() {
		if d.request {
			a = h.guest.OnRequestBody(s.id, uint32(len(d.buf)), eos)
		} else {
			a = h.guest.OnResponseBody(s.id, uint32(len(d.buf)), eos)
		}
	})
	if !s.blocked(d) && a == proxywasm.ActionContinue {
		s.goOn(d)
	}
	return a
}

func (s *Stream) trailers(d *direction, trailers [][2]string) proxywasm.Action {
	if s.blocked(d) {
		return proxywasm.ActionPause
	}
	d.trailers, d.end = trailers, true
	if d.state == stoppedAll {
		d.trlHeld = true
		return proxywasm.ActionPause
	}
	return s.deliverTrailers(d)
}

func (s *Stream) deliverTrailers(d *direction) proxywasm.Action {
	var a proxywasm.Action
	h := s.h
	h.call(s.id, func() {
		if d.request {
			a = h.guest.OnRequestTrailers(s.id, uint32(len(d.trailers)))
		} else {
			a = h.guest.OnResponseTrailers(s.id, uint32(len(d.trailers)))
		}
	})
	if s.blocked(d) {
		return a
	}
	if a == proxywasm.ActionContinue {
		s.goOn(d)
	} else {
		d.trlPause = true
	}
	return a
}

// goOn lets what the filter holds go on: the headers (the request map is then
// gone), the buffered body, and trailers once the body went.
func (s *Stream) goOn(d *direction) {
	if d.state != flowing {
		d.state = flowing
		d.outHeaders = append([][2]string(nil), d.headers...)
		if d.request {
			d.gone = true
		}
	}
	d.outBody = append(d.outBody, d.buf...)
	d.buf = nil
	d.trlPause = false
	if d.end && !d.heldAny && !d.trlHeld {
		if d.trailers != nil {
			d.outTrailers = d.trailers
		}
		s.completed(d)
	}
}

func (s *Stream) completed(d *direction) {
	if d.complete {
		return
	}
	d.complete = true
	if d.request {
		s.upstream = &Upstream{Headers: d.outHeaders, Body: d.outBody, Trailers: d.outTrailers}
	}
}

// resume is continue_stream, run after the callback that asked for it.
func (s *Stream) resume(d *direction) {
	if s.blocked(d) || d.complete {
		return
	}
	if d.state == flowing && d.buf == nil && !d.trlPause && !d.heldAny && !d.trlHeld {
		return
	}
	wasStopped := d.state == stoppedAll
	s.goOn(d)
	if wasStopped && d.heldAny {
		d.buf = append(d.buf, d.held...)
		d.held, d.heldAny = nil, false
		if a := s.deliverBody(d, d.heldEOS); a != proxywasm.ActionContinue || s.blocked(d) {
			return
		}
	}
	if d.trlHeld {
		d.trlHeld = false
		s.deliverTrailers(d)
	}
}

// sendReply carries out a local reply after the callback that sent it.
func (s *Stream) sendReply() {
	r := s.reply
	if r == nil || s.local || s.reset {
		return
	}
	s.details = r.details
	// Envoy's local reply headers: :status, the plugin's headers, its own
	// content-length, and text/plain when a body has no content-type.
	hdrs := [][2]string{{":status", strconv.Itoa(r.status)}}
	for _, kv := range r.headers {
		if k := strings.ToLower(kv[0]); k != "content-length" {
			hdrs = append(hdrs, [2]string{k, kv[1]})
		}
	}
	hdrs = append(hdrs, [2]string{"content-length", strconv.Itoa(len(r.body))})
	if get(hdrs, "content-type") == "" && len(r.body) > 0 {
		hdrs = append(hdrs, [2]string{"content-type", "text/plain"})
	}
	d := &s.resp
	switch {
	case d.state == idle:
		// During the request: the reply runs through this filter's response callbacks.
		s.replying = true
		d.headers, d.end = hdrs, len(r.body) == 0
		s.headers(d, d.end)
		if len(r.body) > 0 {
			d.end = false
			s.body(d, r.body, true)
		}
		s.replying = false
		s.local = true
		if !d.complete {
			// A filter that paused its own local reply: Envoy sends it as it stands.
			d.outHeaders, d.outBody = d.headers, append(d.outBody, d.buf...)
			d.complete = true
		}
	case d.outHeaders == nil:
		// From the response headers callback: the reply replaces the response.
		s.local = true
		d.outHeaders, d.outBody, d.complete = hdrs, r.body, true
	default:
		// The client has the response headers already: Envoy can only reset.
		s.local = true
		s.reset = true
	}
}
