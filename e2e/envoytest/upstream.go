package envoytest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Request is what an Upstream saw of one request.
type Request struct {
	// Method is the HTTP method.
	Method string
	// Path is the path with its query, as sent by Envoy.
	Path string
	// Host is the Host header (:authority).
	Host string
	// Proto is HTTP/1.1 or HTTP/2.0.
	Proto string
	// Header holds the request headers.
	Header http.Header
	// Body is the full request body.
	Body []byte
	// Trailer holds request trailers, if any.
	Trailer http.Header
	// RemoteAddr is the client side of the connection: each Envoy worker has
	// its own upstream connections, so it tells workers apart.
	RemoteAddr string
}

// Echo is the JSON body the default Upstream handler answers with: the request
// as the upstream received it, so a test can assert on what Envoy forwarded.
type Echo struct {
	// Upstream is the Upstream's name.
	Upstream string `json:"upstream"`
	// Method is the HTTP method.
	Method string `json:"method"`
	// Path is the path with its query.
	Path string `json:"path"`
	// Host is the Host header.
	Host string `json:"host"`
	// Proto is the protocol the upstream spoke.
	Proto string `json:"proto"`
	// Headers maps lower-case names to values (repeated values joined by ",").
	Headers map[string]string `json:"headers"`
	// Body is the request body.
	Body string `json:"body"`
}

// Upstream is a loopback HTTP server (HTTP/1.1 and h2c) that records every
// request and answers with a configurable handler.
type Upstream struct {
	name string
	h2   bool
	srv  *httptest.Server

	mu      sync.Mutex
	reqs    []Request
	total   int
	limit   int
	handler http.Handler
	arrived chan struct{} // closed and replaced whenever a request is recorded
}

// UpstreamOption configures NewUpstream.
type UpstreamOption func(*Upstream)

// WithName names the Upstream; the name appears in its echo and in the
// x-upstream response header, so routing tests can tell upstreams apart.
func WithName(name string) UpstreamOption {
	return func(u *Upstream) { u.name = name }
}

// WithHandler replaces the default JSON echo handler.
func WithHandler(h http.Handler) UpstreamOption {
	return func(u *Upstream) { u.handler = h }
}

// WithRecordLimit keeps only the latest n requests (Count still counts them
// all), bounding memory in benchmarks.
func WithRecordLimit(n int) UpstreamOption {
	return func(u *Upstream) { u.limit = n }
}

// WithHTTP2 makes the Upstream's Cluster speak h2c (HTTP/1.1 still works).
func WithHTTP2() UpstreamOption {
	return func(u *Upstream) { u.h2 = true }
}

// NewUpstream starts an Upstream on 127.0.0.1 and closes it when the test ends.
func NewUpstream(t testing.TB, opts ...UpstreamOption) *Upstream {
	t.Helper()
	u := &Upstream{name: "upstream", arrived: make(chan struct{})}
	for _, o := range opts {
		o(u)
	}
	if u.handler == nil {
		u.handler = EchoHandler(u.name)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &protos
	srv.Start()
	u.srv = srv
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return u
}

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "upstream: read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	rec := Request{
		Method:     r.Method,
		Path:       r.URL.RequestURI(),
		Host:       r.Host,
		Proto:      r.Proto,
		Header:     r.Header.Clone(),
		Body:       body,
		Trailer:    r.Trailer.Clone(),
		RemoteAddr: r.RemoteAddr,
	}
	u.mu.Lock()
	u.reqs = append(u.reqs, rec)
	u.total++
	if u.limit > 0 && len(u.reqs) > u.limit {
		u.reqs = append(u.reqs[:0], u.reqs[len(u.reqs)-u.limit:]...)
	}
	h := u.handler
	close(u.arrived)
	u.arrived = make(chan struct{})
	u.mu.Unlock()

	r.Body = io.NopCloser(bytes.NewReader(body))
	w.Header().Set("x-upstream", u.name)
	h.ServeHTTP(w, r)
}

// Name is the Upstream's name.
func (u *Upstream) Name() string { return u.name }

// Addr is the Upstream's host:port on 127.0.0.1.
func (u *Upstream) Addr() string { return u.srv.Listener.Addr().String() }

// URL is the Upstream's base URL, for talking to it directly.
func (u *Upstream) URL() string { return u.srv.URL }

// Cluster returns an Envoy cluster pointing at this Upstream (h2c when the
// Upstream was made WithHTTP2).
func (u *Upstream) Cluster(name string) Cluster {
	return Cluster{Name: name, Addr: u.Addr(), HTTP2: u.h2}
}

// SetHandler swaps the handler for later requests.
func (u *Upstream) SetHandler(h http.Handler) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.handler = h
}

// Requests returns a copy of every request recorded so far, in arrival order.
func (u *Upstream) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]Request, len(u.reqs))
	copy(out, u.reqs)
	return out
}

// Count is the number of requests received so far (since the last Reset).
func (u *Upstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.total
}

// Last returns the latest recorded request, if any.
func (u *Upstream) Last() (Request, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		return Request{}, false
	}
	return u.reqs[len(u.reqs)-1], true
}

// Reset forgets the recorded requests and zeroes Count.
func (u *Upstream) Reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reqs = nil
	u.total = 0
}

// WaitRequests blocks until Count reaches n and returns the recorded
// requests, failing the test after timeout.
func (u *Upstream) WaitRequests(t testing.TB, n int, timeout time.Duration) []Request {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		u.mu.Lock()
		got, arrived := u.total, u.arrived
		u.mu.Unlock()
		if got >= n {
			return u.Requests()
		}
		select {
		case <-arrived:
		case <-deadline.C:
			t.Fatalf("envoytest: upstream %s saw %d request(s) after %v, want %d", u.name, got, timeout, n)
		}
	}
}

// EchoHandler answers 200 with an Echo of the request as JSON.
func EchoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		hs := make(map[string]string, len(r.Header))
		for k, v := range r.Header {
			hs[strings.ToLower(k)] = strings.Join(v, ",")
		}
		w.Header().Set("content-type", "application/json")
		_ = json.NewEncoder(w).Encode(Echo{
			Upstream: name,
			Method:   r.Method,
			Path:     r.URL.RequestURI(),
			Host:     r.Host,
			Proto:    r.Proto,
			Headers:  hs,
			Body:     string(body),
		})
	})
}

// StreamHandler answers 200 with the chunks written one by one, each flushed
// at once and spaced by pace, so filters see the body arrive in pieces (an
// SSE stream, for example). It stops early when the client goes away.
func StreamHandler(header http.Header, chunks []string, pace time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header()[http.CanonicalHeaderKey(k)] = v
		}
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		for i, c := range chunks {
			if i > 0 && pace > 0 {
				timer := time.NewTimer(pace)
				select {
				case <-r.Context().Done():
					timer.Stop()
					return
				case <-timer.C:
				}
			}
			if _, err := io.WriteString(w, c); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	})
}
