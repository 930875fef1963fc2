package wasmhost

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBodyCallbacks(t *testing.T) {
	tests := []struct {
		name     string
		hdrs     []string
		wantCBs  []string
		wantUp   string
		wantResp string
	}{
		{
			name: "streaming: each chunk then an empty end-of-stream chunk",
			wantCBs: []string{
				"on_request_body ctx=2 size=4 eos=0", "on_request_body ctx=2 size=6 eos=0",
				"on_request_body ctx=2 size=2 eos=0", "on_request_body ctx=2 size=0 eos=1",
			},
			wantUp:   "aaaabbbbbbcc",
			wantResp: "echo:aaaabbbbbbcc",
		},
		{
			name: "pause buffers: body_size is the accumulated size",
			hdrs: []string{"x-t-rb: pause", "x-t-rb-rewrite: prepend:PRE"},
			wantCBs: []string{
				"on_request_body ctx=2 size=4 eos=0", "on_request_body ctx=2 size=10 eos=0",
				"on_request_body ctx=2 size=12 eos=0", "on_request_body ctx=2 size=12 eos=1",
			},
			wantUp:   "PREaaaabbbbbbcc",
			wantResp: "echo:PREaaaabbbbbbcc",
		},
		{
			name:     "replace whole buffered body",
			hdrs:     []string{"x-t-rb: pause", "x-t-rb-rewrite: replace:XY"},
			wantUp:   "XY",
			wantResp: "echo:XY",
		},
		{
			name:     "append to buffered body",
			hdrs:     []string{"x-t-rb: pause", "x-t-rb-rewrite: append:Z"},
			wantUp:   "aaaabbbbbbccZ",
			wantResp: "echo:aaaabbbbbbccZ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &echoUpstream{}
			vm := newVM(t, newHost(t, Config{Upstream: up}))
			req := httptest.NewRequest("POST", "/b", Chunks("aaaa", "bbbbbb", "cc"))
			for _, h := range tt.hdrs {
				k, v, _ := strings.Cut(h, ": ")
				req.Header.Set(k, v)
			}
			resp, err := vm.Do(testCtx(t), req)
			require.NoError(t, err)
			if tt.wantCBs != nil {
				var got []string
				for _, l := range callbacks(vm) {
					if strings.HasPrefix(l, "on_request_body") {
						got = append(got, l)
					}
				}
				assert.Equal(t, tt.wantCBs, got)
			}
			require.Len(t, up.requests(), 1)
			assert.Equal(t, tt.wantUp, up.requests()[0].Body)
			assert.Equal(t, tt.wantResp, string(resp.Body))
			assert.False(t, resp.ContentLengthMismatch)
		})
	}
}

func TestBodyRewriteKeepsContentLength(t *testing.T) {
	// Envoy does not fix content-length after a body rewrite: an HTTP/1
	// upstream reads only the announced bytes (observed on Envoy 1.40).
	up := &echoUpstream{}
	vm := newVM(t, newHost(t, Config{Upstream: up}))
	resp := do(t, vm, "POST", "/cl", "abc", "x-t-rb: pause", "x-t-rb-rewrite: prepend:PRE")
	require.Len(t, up.requests(), 1)
	assert.Equal(t, "3", up.requests()[0].Header.Get("Content-Length"))
	assert.Equal(t, "PRE", up.requests()[0].Body)
	assert.Equal(t, "echo:PRE", string(resp.Body))

	// Growing the response body past its content-length: the client reads
	// only the announced bytes.
	vm2 := newVM(t, newHost(t, Config{Upstream: up}))
	resp = do(t, vm2, "GET", "/x", "", "x-t-rsb: pause", "x-t-rsb-rewrite: prepend:LONGER-")
	assert.Equal(t, "LONGE", string(resp.Body))
	assert.True(t, resp.ContentLengthMismatch)

	// Shrinking it leaves the client waiting for bytes that never come.
	vm3 := newVM(t, newHost(t, Config{Upstream: up}))
	req := httptest.NewRequest("GET", "/x", nil)
	req.Header.Set("x-t-rsb", "pause")
	req.Header.Set("x-t-rsb-rewrite", "replace:NEW")
	resp, err := vm3.Do(testCtx(t), req)
	require.ErrorIs(t, err, ErrShortBody)
	assert.Equal(t, "NEW", string(resp.Body))
}

func TestResponseBodyRewriteChunked(t *testing.T) {
	chunkedUp := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "part1;")
		w.(http.Flusher).Flush()
		fmt.Fprint(w, "part2;")
	})
	vm := newVM(t, newHost(t, Config{Upstream: chunkedUp}))
	resp := do(t, vm, "GET", "/x", "", "x-t-rsb: pause", "x-t-rsb-rewrite: replace:NEW")
	assert.Equal(t, "NEW", string(resp.Body))
	assert.Equal(t, []string{
		"on_response_body ctx=2 size=6 eos=0", "on_response_body ctx=2 size=12 eos=0", "on_response_body ctx=2 size=12 eos=1",
	}, logsWith(vm, "on_response_body"))
}

func TestHeadersOnlyRequest(t *testing.T) {
	vm := newVM(t, newHost(t, Config{Upstream: &echoUpstream{}}))
	do(t, vm, "GET", "/g", "")
	assert.Equal(t, []string{
		"on_context_create ctx=1 parent=0", "on_vm_start root=1 size=0 config=\"\"",
		"on_configure root=1 size=0 st=0 config=\"\"",
		"on_context_create ctx=2 parent=1", "on_request_headers ctx=2 n=6 eos=1",
		"on_response_headers ctx=2 n=5 eos=0", "on_response_body ctx=2 size=5 eos=0",
		"on_response_body ctx=2 size=0 eos=1", "on_log ctx=2", "on_done ctx=2", "on_delete ctx=2",
	}, callbacks(vm))
	do(t, vm, "GET", "/g", "")
	assert.Contains(t, callbacks(vm), "on_context_create ctx=3 parent=1", "context ids are allocated like Envoy")
}

func TestLocalReply(t *testing.T) {
	tests := []struct {
		name        string
		hdrs        []string
		body        string
		wantStatus  int
		wantBody    string
		wantHeaders string
		wantCBs     []string // callbacks after the local reply was sent
		upstream    int
	}{
		{
			name:        "request headers: response callbacks see the local reply",
			hdrs:        []string{"x-t-local: 403"},
			body:        "abc",
			wantStatus:  403,
			wantBody:    "local:403",
			wantHeaders: ":status=403;x-local=1;content-type=text/plain;content-length=9;",
			wantCBs:     []string{"on_response_headers ctx=2 n=4 eos=0", "on_response_body ctx=2 size=9 eos=1", "on_log ctx=2"},
		},
		{
			name:        "continue after local reply is ignored; default content-type",
			hdrs:        []string{"x-t-local: 429", "x-t-local-ret: continue", "x-t-local-noct: 1"},
			wantStatus:  429,
			wantBody:    "local:429",
			wantHeaders: ":status=429;x-local=1;content-length=9;content-type=text/plain;",
			wantCBs:     []string{"on_response_headers ctx=2 n=4 eos=0", "on_response_body ctx=2 size=9 eos=1", "on_log ctx=2"},
		},
		{
			name:        "request body at end of stream",
			hdrs:        []string{"x-t-local: 413", "x-t-local-at: body", "x-t-rb: pause"},
			body:        "abc",
			wantStatus:  413,
			wantBody:    "local:413",
			wantHeaders: ":status=413;x-local=1;content-type=text/plain;content-length=9;",
			wantCBs:     []string{"on_response_headers ctx=2 n=4 eos=0", "on_response_body ctx=2 size=9 eos=1", "on_log ctx=2"},
			upstream:    -1, // the router started the upstream request on headers, then reset it: racy
		},
		{
			name:        "response headers: replaces the response without calling the filter again",
			hdrs:        []string{"x-t-local: 418", "x-t-local-at: resp-headers"},
			wantStatus:  418,
			wantBody:    "local:418",
			wantHeaders: ":status=418;x-local=1;content-type=text/plain;content-length=9;",
			wantCBs:     []string{"on_log ctx=2"},
			upstream:    1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &echoUpstream{}
			vm := newVM(t, newHost(t, Config{Upstream: up}))
			resp := do(t, vm, "POST", "/l", tt.body, tt.hdrs...)
			assert.Equal(t, tt.wantStatus, resp.StatusCode)
			assert.Equal(t, tt.wantBody, string(resp.Body))
			assert.Equal(t, tt.wantHeaders, resp.Headers.String())
			assert.True(t, resp.LocalReply)
			assert.Equal(t, "test details", resp.LocalReplyDetails)
			if tt.upstream >= 0 {
				assert.Len(t, up.requests(), tt.upstream)
			}
			cbs := callbacks(vm)
			var after []string
			for i, l := range cbs {
				if strings.HasPrefix(l, "on_response_headers") || strings.HasPrefix(l, "on_log") {
					after = cbs[i:]
					break
				}
			}
			if tt.upstream > 0 && strings.Contains(tt.name, "response headers") {
				after = after[1:] // the upstream's own on_response_headers
			}
			require.GreaterOrEqual(t, len(after), len(tt.wantCBs))
			assert.Equal(t, tt.wantCBs, after[:len(tt.wantCBs)])
		})
	}
}

func TestPauseInRequestHeaders(t *testing.T) {
	t.Run("without allow_on_headers_stop_iteration the body waits for continue", func(t *testing.T) {
		up := &echoUpstream{}
		vm := newVM(t, newHost(t, Config{Upstream: up}))
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req := httptest.NewRequest("POST", "/p", strings.NewReader("0123456789abcdef"))
		req.Header.Set("x-t-rh", "pause")
		_, err := vm.Do(ctx, req)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Empty(t, logsWith(vm, "on_request_body"))
		assert.Empty(t, up.requests())
		assert.Equal(t, []string{"on_log ctx=2"}, logsWith(vm, "on_log"), "the stream still ends in the plugin")
	})
	t.Run("with allow_on_headers_stop_iteration PAUSE is StopIteration", func(t *testing.T) {
		up := &echoUpstream{}
		vm := newVM(t, newHost(t, Config{Upstream: up, AllowOnHeadersStopIteration: true}))
		req := httptest.NewRequest("POST", "/p", strings.NewReader("0123456789abcdef"))
		req.Header.Set("x-t-rh", "pause")
		req.Header.Set("x-t-rb", "pause")
		resp, err := vm.Do(testCtx(t), req)
		require.NoError(t, err)
		assert.Equal(t, []string{"on_request_body ctx=2 size=16 eos=0", "on_request_body ctx=2 size=16 eos=1"}, logsWith(vm, "on_request_body"))
		assert.Equal(t, "echo:0123456789abcdef", string(resp.Body))
	})
	t.Run("a GET paused in headers hangs until ctx ends", func(t *testing.T) {
		vm := newVM(t, newHost(t, Config{Upstream: &echoUpstream{}, AllowOnHeadersStopIteration: true}))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		req := httptest.NewRequest("GET", "/p", nil)
		req.Header.Set("x-t-rh", "pause")
		_, err := vm.Do(ctx, req)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestHTTPCallout(t *testing.T) {
	var mu sync.Mutex
	var calloutSeen seenRequest
	clusters := map[string]http.Handler{
		"callout": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			calloutSeen = seenRequest{r.Method, r.URL.RequestURI(), r.Host, r.Header.Clone(), string(b)}
			mu.Unlock()
			if strings.HasPrefix(r.URL.Path, "/slow") {
				<-r.Context().Done()
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("X-Backend", "1")
			fmt.Fprintf(w, "echo:%s", b)
		}),
	}
	tests := []struct {
		name       string
		call       string
		extra      []string
		wantCall   string
		wantResp   string
		wantStatus string // x-callout-status seen upstream
	}{
		{
			name:       "delivered to the root context after the callback returns",
			call:       "callout;/co;1000",
			wantCall:   "http_call st=0 token=4",
			wantResp:   "on_http_call_response root=1 token=4 nh=5 body=17 nt=0",
			wantStatus: "200",
		},
		{
			name:       "timeout answers Envoy's local 504",
			call:       "callout;/slow;50",
			wantCall:   "http_call st=0 token=4",
			wantResp:   "on_http_call_response root=1 token=4 nh=3 body=24 nt=0",
			wantStatus: "504",
		},
		{name: "unknown cluster", call: "nope;/x;100", wantCall: "http_call st=2 token=0"},
		{name: "missing :path and :authority", call: "callout;/x;100", extra: []string{"x-t-call-no-path: 1"}, wantCall: "http_call st=2 token=0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &echoUpstream{}
			vm := newVM(t, newHost(t, Config{Upstream: up, Clusters: clusters}))
			do(t, vm, "POST", "/c", "abc", append([]string{"x-t-call: " + tt.call}, tt.extra...)...)
			assert.Equal(t, []string{tt.wantCall}, logsWith(vm, "http_call st"))
			require.Len(t, up.requests(), 1)
			if tt.wantResp == "" {
				assert.Empty(t, logsWith(vm, "on_http_call_response"))
				return
			}
			assert.Equal(t, []string{tt.wantResp}, logsWith(vm, "on_http_call_response"))
			assert.Equal(t, tt.wantStatus, up.requests()[0].Header.Get("X-Callout-Status"))
			assert.Equal(t, "abc", up.requests()[0].Body, "the body buffered while paused reaches the upstream")
			assert.Contains(t, logsWith(vm, "on_request_body"), "on_request_body ctx=2 size=3 eos=1")
			assert.Equal(t, []string{"effective st=0 add st=0 continue st=0"}, logsWith(vm, "effective st"))
			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, "callout.test", calloutSeen.Host)
			assert.Equal(t, "true", calloutSeen.Header.Get("X-Envoy-Internal"))
			assert.Equal(t, "12", calloutSeen.Header.Get("Content-Length"))
			assert.Equal(t, "callout-body", calloutSeen.Body)
		})
	}
}

func TestStreamedUpstreamResponse(t *testing.T) {
	streaming := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "chunk%d;", i)
			w.(http.Flusher).Flush()
		}
	})
	tests := []struct {
		name string
		hdrs []string
		want []string
	}{
		{"each flush is one chunk", nil, []string{
			"on_response_body ctx=2 size=7 eos=0", "on_response_body ctx=2 size=7 eos=0",
			"on_response_body ctx=2 size=7 eos=0", "on_response_body ctx=2 size=0 eos=1",
		}},
		{"buffered", []string{"x-t-rsb: pause"}, []string{
			"on_response_body ctx=2 size=7 eos=0", "on_response_body ctx=2 size=14 eos=0",
			"on_response_body ctx=2 size=21 eos=0", "on_response_body ctx=2 size=21 eos=1",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm := newVM(t, newHost(t, Config{Upstream: streaming}))
			resp := do(t, vm, "GET", "/s", "", tt.hdrs...)
			assert.Equal(t, tt.want, logsWith(vm, "on_response_body"))
			assert.Equal(t, "chunk0;chunk1;chunk2;", string(resp.Body))
			assert.Equal(t, "chunked", resp.Header.Get("Transfer-Encoding"))
			assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		})
	}
}

func TestCloseStream(t *testing.T) {
	up := &echoUpstream{}
	vm := newVM(t, newHost(t, Config{Upstream: up}))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("x-t-close", "headers")
	_, err := vm.Do(testCtx(t), req)
	require.ErrorIs(t, err, ErrStreamReset)
	assert.Equal(t, []string{"close st=0"}, logsWith(vm, "close st"))
}

func TestNoUpstreamAndRouteTimeout(t *testing.T) {
	vm := newVM(t, newHost(t, Config{}))
	resp := do(t, vm, "GET", "/", "")
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "no healthy upstream", string(resp.Body))
	assert.Contains(t, callbacks(vm), "on_response_headers ctx=2 n=3 eos=0", "router replies pass through the filter")

	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	vm2 := newVM(t, newHost(t, Config{Upstream: slow, RouteTimeout: 30 * time.Millisecond}))
	resp = do(t, vm2, "GET", "/", "")
	assert.Equal(t, 504, resp.StatusCode)
	assert.Equal(t, "upstream request timeout", string(resp.Body))
}

func TestLowLevelStream(t *testing.T) {
	vm := newVM(t, newHost(t, Config{Clusters: map[string]http.Handler{"callout": &echoUpstream{}}}))
	s := vm.NewStream()
	require.Equal(t, uint32(2), s.ID())
	h := newRequestHeaderMap(Pair{":method", "POST"}, Pair{":path", "/"}, Pair{":authority", "a"}, Pair{"x-t-call", "callout;/co;0"})
	assert.Equal(t, HeadersStopAllIterationAndWatermark, s.RequestHeaders(h, false))
	assert.Equal(t, DataContinue, s.RequestBody([]byte("x"), false))
	ctx := testCtx(t)
	for {
		if evs := s.TakeEvents(); len(evs) > 0 {
			assert.Equal(t, []StreamEvent{EventContinueRequest}, evs)
			break
		}
		select {
		case <-s.evWake:
		case <-ctx.Done():
			t.Fatal("no continue event")
		}
	}
	assert.Equal(t, HeadersContinue, s.ResponseHeaders(NewHeaderMap(Pair{":status", "200"}), false))
	assert.Equal(t, DataContinue, s.ResponseBody([]byte("ok"), true))
	s.Finish(h, nil, nil)
	assert.Equal(t, []string{"on_log ctx=2", "on_done ctx=2", "on_delete ctx=2"}, callbacks(vm)[len(callbacks(vm))-3:])
}

func TestAccessLogPhase(t *testing.T) {
	tests := []struct {
		name string
		hdrs []string
		want string
	}{
		{"upstream response", nil, `log read-req st=0 val="/logpath" resp st=0 val="200"`},
		{"local reply", []string{"x-t-local: 403"}, `log read-req st=0 val="/logpath" resp st=0 val="403"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm := newVM(t, newHost(t, Config{Upstream: &echoUpstream{}}))
			do(t, vm, "GET", "/logpath", "", append([]string{"x-t-log-read: 1"}, tt.hdrs...)...)
			assert.Equal(t, []string{tt.want}, logsWith(vm, "log read-req"))
		})
	}
}

func TestRequestTrailers(t *testing.T) {
	var gotTrailer http.Header
	var mu sync.Mutex
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		gotTrailer = r.Trailer.Clone()
		mu.Unlock()
		fmt.Fprintf(w, "echo:%s", b)
	})
	vm := newVM(t, newHost(t, Config{Upstream: up}))
	req := httptest.NewRequest("POST", "/t", Chunks("ab", "cd"))
	req.Trailer = http.Header{"X-Checksum": {"42"}}
	resp, err := vm.Do(testCtx(t), req)
	require.NoError(t, err)
	assert.Equal(t, "echo:abcd", string(resp.Body))
	// With trailers, no body callback carries end_of_stream.
	assert.Equal(t, []string{"on_request_body ctx=2 size=2 eos=0", "on_request_body ctx=2 size=2 eos=0"}, logsWith(vm, "on_request_body"))
	assert.Equal(t, []string{"on_request_trailers ctx=2 n=1"}, logsWith(vm, "on_request_trailers"))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, "42", gotTrailer.Get("X-Checksum"))
}
