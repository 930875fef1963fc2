package wasmhost

import (
	"bytes"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// upstreamWriter is the http.ResponseWriter given to Upstream and cluster
// handlers. It reproduces what Envoy receives from a net/http server over
// HTTP/1.1: headers on the first flush or when the handler returns, a
// Content-Length when the body was never flushed, a sniffed Content-Type
// when none was set, and each flush as one body chunk.
type upstreamWriter struct {
	mu          sync.Mutex
	header      http.Header
	status      int
	wroteHeader bool
	headersSent bool
	flushed     bool
	buf         []byte
	// sink receives response events; nil for a buffered (callout) response.
	sink func(ev upstreamEvent)
	// buffered response, when sink is nil
	all []byte
}

// upstreamEvent is one piece of an upstream response.
type upstreamEvent struct {
	headers  *HeaderMap
	data     []byte
	trailers *HeaderMap
	eos      bool
	err      error
}

func newUpstreamWriter(sink func(upstreamEvent)) *upstreamWriter {
	return &upstreamWriter{header: http.Header{}, sink: sink}
}

// Header returns the response header map to fill before writing.
func (w *upstreamWriter) Header() http.Header { return w.header }

// WriteHeader records the status code; informational codes are ignored.
func (w *upstreamWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wroteHeader || code < 200 {
		return
	}
	w.wroteHeader = true
	w.status = code
}

// Write appends body bytes.
func (w *upstreamWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	return len(b), nil
}

// Flush sends headers and the bytes written so far as one chunk.
func (w *upstreamWriter) Flush() {
	w.WriteHeader(http.StatusOK)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushed = true
	w.sendHeaders(false)
	if len(w.buf) > 0 {
		w.emit(upstreamEvent{data: w.buf})
		w.buf = nil
	}
}

func (w *upstreamWriter) emit(ev upstreamEvent) {
	if w.sink != nil {
		w.sink(ev)
		return
	}
	w.all = append(w.all, ev.data...)
}

// responseHeaders builds the header map Envoy would see.
func (w *upstreamWriter) responseHeaders(final bool) *HeaderMap {
	m := NewHeaderMap(Pair{":status", strconv.Itoa(w.status)})
	h := w.header.Clone()
	noBody := w.status == http.StatusNoContent || w.status == http.StatusNotModified
	sniffed := ""
	if _, set := h["Content-Type"]; !set && len(w.buf) > 0 && !noBody {
		sniffed = http.DetectContentType(w.buf)
	}
	cl := h.Get("Content-Length")
	h.Del("Content-Length")
	h.Del("Transfer-Encoding")
	trailerKeys := trailerNames(h)
	h.Del("Trailer")
	keys := make([]string, 0, len(h))
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			m.Add(k, v)
		}
	}
	// net/http writes its own headers after the handler's: (Date,)
	// Content-Type, Content-Length / Transfer-Encoding.
	if sniffed != "" {
		m.Add("content-type", sniffed)
	}
	switch {
	case noBody:
	case cl != "":
		m.Add("content-length", cl)
	case final && !w.flushed && len(trailerKeys) == 0:
		m.Add("content-length", strconv.Itoa(len(w.buf)))
	case !final || w.flushed:
		m.Add("transfer-encoding", "chunked")
	}
	return m
}

func (w *upstreamWriter) sendHeaders(eos bool) {
	if w.headersSent {
		return
	}
	w.headersSent = true
	w.emit(upstreamEvent{headers: w.responseHeaders(!w.flushed), eos: eos})
}

// finish completes the response after the handler returned.
func (w *upstreamWriter) finish() {
	w.WriteHeader(http.StatusOK)
	w.mu.Lock()
	defer w.mu.Unlock()
	tr := w.trailers()
	if !w.headersSent {
		w.headersSent = true
		eos := len(w.buf) == 0 && tr == nil
		w.emit(upstreamEvent{headers: w.responseHeaders(true), eos: eos})
		if eos {
			return
		}
	}
	if len(w.buf) > 0 {
		w.emit(upstreamEvent{data: w.buf})
		w.buf = nil
	}
	if tr != nil {
		w.emit(upstreamEvent{trailers: tr, eos: true})
		return
	}
	w.emit(upstreamEvent{eos: true})
}

func trailerNames(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Trailer") {
		for _, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				out = append(out, http.CanonicalHeaderKey(k))
			}
		}
	}
	return out
}

func (w *upstreamWriter) trailers() *HeaderMap {
	m := NewHeaderMap()
	for _, k := range trailerNames(w.header) {
		for _, v := range w.header[k] {
			m.Add(k, v)
		}
	}
	for k, vs := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			for _, v := range vs {
				m.Add(strings.TrimPrefix(k, http.TrailerPrefix), v)
			}
		}
	}
	if m.Len() == 0 {
		return nil
	}
	return m
}

// bufferedResponse runs a handler to completion and returns what Envoy's
// async client would hand to the plugin.
func bufferedResponse(h http.Handler, req *http.Request) (resp *calloutResponse, panicked bool) {
	w := newUpstreamWriter(nil)
	var hdrs *HeaderMap
	var trailers *HeaderMap
	w.sink = func(ev upstreamEvent) {
		if ev.headers != nil {
			hdrs = ev.headers
		}
		if ev.trailers != nil {
			trailers = ev.trailers
		}
		w.all = append(w.all, ev.data...)
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				panicked = true
			}
		}()
		h.ServeHTTP(w, req)
	}()
	if panicked {
		return nil, true
	}
	w.finish()
	if hdrs == nil {
		hdrs = NewHeaderMap(Pair{":status", "200"})
	}
	return &calloutResponse{headers: hdrs, body: w.all, trailers: trailers}, false
}

// streamBody is a request body fed by the filter manager while the handler
// reads it: writes never block, reads wait for data or the end.
type streamBody struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    bytes.Buffer
	done   bool
	err    error
	closed bool
}

func newStreamBody() *streamBody {
	b := &streamBody{}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *streamBody) write(p []byte) {
	b.mu.Lock()
	b.buf.Write(p)
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *streamBody) end(err error) {
	b.mu.Lock()
	if !b.done {
		b.done, b.err = true, err
	}
	b.mu.Unlock()
	b.cond.Broadcast()
}

// Read implements io.Reader.
func (b *streamBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.buf.Len() == 0 && !b.done && !b.closed {
		b.cond.Wait()
	}
	if b.buf.Len() > 0 {
		return b.buf.Read(p)
	}
	if b.closed {
		return 0, io.ErrClosedPipe
	}
	if b.err != nil {
		return 0, b.err
	}
	return 0, io.EOF
}

// Close implements io.Closer.
func (b *streamBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
	return nil
}
