package modelroute

// These tests run the built Wasm module in shared/wasmhost (wazero with
// Envoy's callback semantics), so the wiring in filter.go is exercised without
// starting Envoy: buffering, chunked bodies, trailers, local replies, body
// and header rewrites, response mapping and metrics.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/modelroute/route"
	"github.com/tollgate/tollgate/shared/wasmhost"
	"github.com/tollgate/tollgate/shared/wasmhost/wasmtest"
)

// wasmModule is build/modelroute.wasm, rebuilt by TestMain from this
// package so the tests never run a stale artefact.
var wasmModule []byte

func TestMain(m *testing.M) {
	os.Exit(wasmtest.Main(m, "./wasm", &wasmModule))
}

const testConfig = `{
  "sticky_header": "x-session-id",
  "max_body_bytes": 4096,
  "max_response_bytes": 2048,
  "models": [
    {"name": "gemma-3-1b-it", "aliases": ["gemma"], "backend_model": "/gcs/google/gemma-3-1b-it",
     "route": "pool-a", "map_response_model": true},
    {"name": "qwen", "route": "pool-b", "priority": "sheddable"},
    {"name": "llama", "targets": [{"route": "pool-a", "weight": 1}, {"route": "pool-b", "weight": 1}]}
  ]
}`

// recorder is the upstream: it records each request and answers like an
// OpenAI server naming the model it received (streamed when asked, in
// chunks that split lines so the SSE hold path runs).
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
	body [][]byte
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	// Keep a copy: the host may reuse the request's header map once the handler returns.
	r.reqs = append(r.reqs, req.Clone(context.Background()))
	r.body = append(r.body, b)
	r.mu.Unlock()
	var in struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	_ = json.Unmarshal(b, &in)
	model, _ := json.Marshal(in.Model)
	if in.Stream {
		w.Header().Set("content-type", "text/event-stream")
		ev := fmt.Sprintf("data: {\"id\":\"c\",\"model\":%s,\"choices\":[]}\n\n", model)
		half := len(ev) / 2
		for _, part := range []string{ev[:half], ev[half:] + ev, "data: [DONE]\n\n"} {
			_, _ = io.WriteString(w, part)
			w.(http.Flusher).Flush()
		}
		return
	}
	w.Header().Set("content-type", "application/json")
	w.Header().Set("content-length", fmt.Sprint(len(model)+11))
	_, _ = fmt.Fprintf(w, `{"model":%s}`+"\n", model)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

func (r *recorder) last(t testing.TB) (*http.Request, []byte) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NotEmpty(t, r.reqs)
	return r.reqs[len(r.reqs)-1], r.body[len(r.body)-1]
}

func startVM(t testing.TB, config string, up http.Handler) (*wasmhost.Host, *wasmhost.VM) {
	t.Helper()
	h := wasmtest.NewHost(t, wasmhost.Config{
		Module:                      wasmModule,
		PluginName:                  "modelroute",
		RootID:                      "modelroute",
		VMID:                        "modelroute",
		PluginConfig:                []byte(config),
		AllowOnHeadersStopIteration: true,
		Upstream:                    up,
		ManualTicks:                 true,
	})
	return h, wasmtest.NewVM(t, h)
}

func send(t testing.TB, vm *wasmhost.VM, req *http.Request) *wasmhost.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := vm.Do(ctx, req)
	require.NoError(t, err)
	return resp
}

func jsonPost(body io.Reader) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", body)
	r.Header.Set("content-type", "application/json")
	return r
}

func TestWasmRejectsBadConfig(t *testing.T) {
	h, err := wasmhost.NewHost(context.Background(), wasmhost.Config{
		Module: wasmModule, RootID: "modelroute", VMID: "modelroute",
		PluginConfig: []byte(`{"models":[{"name":"a","targets":[{"route":"x","weight":0}]}]}`),
	})
	require.NoError(t, err)
	defer h.Close(context.Background())
	vm, err := h.NewVM(context.Background())
	if err == nil {
		vm.Close(context.Background())
	}
	require.Error(t, err, "a configuration whose weights add up to 0 is refused")
}

func TestWasmFilter(t *testing.T) {
	up := &recorder{}
	h, vm := startVM(t, testConfig, up)

	t.Run("alias rewritten in chunks, route header set, route cache cleared", func(t *testing.T) {
		body := `{"messages":[],"model":"gemma","n":1}`
		req := jsonPost(wasmhost.Chunks(body[:7], body[7:20], body[20:]))
		req.Header.Set("x-tollgate-model", "pool-b") // a client's own value is dropped
		resp := send(t, vm, req)
		require.Equal(t, 200, resp.StatusCode)
		assert.False(t, resp.LocalReply)
		assert.Positive(t, resp.RouteCacheClears)
		got, gotBody := up.last(t)
		assert.Equal(t, `{"messages":[],"model":"/gcs/google/gemma-3-1b-it","n":1}`, string(gotBody))
		assert.Equal(t, []string{"pool-a"}, got.Header.Values("x-tollgate-model"))
		assert.JSONEq(t, `{"model":"gemma-3-1b-it"}`, string(resp.Body), "response model mapped back")
		assert.False(t, resp.ContentLengthMismatch)
	})

	t.Run("content-length follows the rewrite", func(t *testing.T) {
		body := `{"model":"gemma"}`
		req := jsonPost(strings.NewReader(body))
		req.ContentLength = int64(len(body))
		resp := send(t, vm, req)
		require.Equal(t, 200, resp.StatusCode)
		got, gotBody := up.last(t)
		assert.Equal(t, int64(len(gotBody)), got.ContentLength)
	})

	t.Run("trailers finish the request", func(t *testing.T) {
		req := jsonPost(wasmhost.Chunks(`{"model":`, `"qwen"}`))
		req.Trailer = http.Header{"X-Checksum": {"abc"}}
		resp := send(t, vm, req)
		require.Equal(t, 200, resp.StatusCode)
		got, _ := up.last(t)
		assert.Equal(t, "pool-b", got.Header.Get("x-tollgate-model"))
		assert.Equal(t, "sheddable", got.Header.Get("x-tollgate-priority"))
	})

	t.Run("public model header names the canonical model, never the client's value", func(t *testing.T) {
		tests := []struct {
			name, body, spoof, want string
		}{
			{"alias rewritten to backend", `{"model":"gemma"}`, "free-model", "gemma-3-1b-it"},
			{"canonical rewritten to backend", `{"model":"gemma-3-1b-it"}`, "", "gemma-3-1b-it"},
			{"not rewritten", `{"model":"qwen"}`, "gemma-3-1b-it", "qwen"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				req := jsonPost(strings.NewReader(tt.body))
				if tt.spoof != "" {
					req.Header.Set("X-Tollgate-Public-Model", tt.spoof)
				}
				resp := send(t, vm, req)
				require.Equal(t, 200, resp.StatusCode)
				got, _ := up.last(t)
				assert.Equal(t, []string{tt.want}, got.Header.Values("x-tollgate-public-model"))
			})
		}
	})

	t.Run("request without body is not paused", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
		req.Header.Set("x-tollgate-priority", "critical")
		req.Header.Set("x-tollgate-public-model", "gemma-3-1b-it")
		resp := send(t, vm, req)
		require.Equal(t, 200, resp.StatusCode)
		got, _ := up.last(t)
		assert.Empty(t, got.Header.Get("x-tollgate-priority"))
		assert.Empty(t, got.Header.Values("x-tollgate-public-model"), "a client's value is dropped even without a body")
	})

	t.Run("SSE mapped across split lines", func(t *testing.T) {
		resp := send(t, vm, jsonPost(strings.NewReader(`{"model":"gemma","stream":true}`)))
		require.Equal(t, 200, resp.StatusCode)
		ev := "data: {\"id\":\"c\",\"model\":\"gemma-3-1b-it\",\"choices\":[]}\n\n"
		assert.Equal(t, ev+ev+"data: [DONE]\n\n", string(resp.Body))
	})

	t.Run("local replies", func(t *testing.T) {
		tests := []struct {
			name   string
			req    func() *http.Request
			status int
			code   string
		}{
			{"unknown", func() *http.Request { return jsonPost(strings.NewReader(`{"model":"gpt"}`)) }, 404, route.CodeModelNotFound},
			{"malformed", func() *http.Request { return jsonPost(strings.NewReader(`{"model":`)) }, 400, route.CodeInvalidJSON},
			{"forbidden", func() *http.Request {
				r := jsonPost(strings.NewReader(`{"model":"gemma"}`))
				r.Header.Set("x-tollgate-allowed-models", "qwen")
				return r
			}, 403, route.CodeModelNotAllowed},
			{"content type", func() *http.Request {
				r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{"model":"qwen"}`))
				r.Header.Set("content-type", "text/plain")
				return r
			}, 400, route.CodeInvalidContentType},
			{"too large by content-length", func() *http.Request {
				b := `{"model":"qwen","pad":"` + strings.Repeat("x", 5000) + `"}`
				r := jsonPost(strings.NewReader(b))
				r.ContentLength = int64(len(b))
				return r
			}, 413, route.CodeTooLarge},
			{"too large while buffering", func() *http.Request {
				return jsonPost(wasmhost.Chunks(`{"model":"qwen","pad":"`, strings.Repeat("x", 3000), strings.Repeat("x", 3000), `"}`))
			}, 413, route.CodeTooLarge},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := up.count()
				resp := send(t, vm, tt.req())
				require.Equal(t, tt.status, resp.StatusCode, "%s", resp.Body)
				assert.True(t, resp.LocalReply)
				assert.Equal(t, "application/json", resp.Header.Get("content-type"))
				var e struct {
					Error struct{ Code string } `json:"error"`
				}
				require.NoError(t, json.Unmarshal(resp.Body, &e))
				assert.Equal(t, tt.code, e.Error.Code)
				assert.Equal(t, before, up.count(), "never reaches the upstream")
				v, ok := h.Counter(route.RejectionsMetric(tt.code))
				require.True(t, ok)
				assert.Positive(t, v)
			})
		}
	})

	t.Run("sticky split and metrics", func(t *testing.T) {
		targets := map[string]int{}
		for i := range 40 {
			req := jsonPost(strings.NewReader(`{"model":"llama"}`))
			req.Header.Set("x-session-id", fmt.Sprint("s", i%4))
			send(t, vm, req)
			got, _ := up.last(t)
			targets[fmt.Sprint(i%4, got.Header.Get("x-tollgate-model"))]++
		}
		assert.Len(t, targets, 4, "each of the 4 sessions kept one target: %v", targets)
		a, _ := h.Counter(route.RequestsMetric("llama", "pool-a"))
		b, _ := h.Counter(route.RequestsMetric("llama", "pool-b"))
		assert.EqualValues(t, 40, a+b)
		rw, ok := h.Counter(route.RewritesMetric("gemma-3-1b-it", "request"))
		require.True(t, ok)
		assert.Positive(t, rw)
	})
}
