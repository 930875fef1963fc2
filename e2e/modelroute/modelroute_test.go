package modelroute

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// TestModelRoute runs every functional case against one Envoy (starting
// Envoy with a Go Wasm module is the slow part), one subtest per behaviour.
func TestModelRoute(t *testing.T) {
	upA := envoytest.NewUpstream(t, envoytest.WithName("a"), envoytest.WithHandler(fakeLLM()))
	upB := envoytest.NewUpstream(t, envoytest.WithName("b"), envoytest.WithHandler(fakeLLM()))
	e := envoytest.Start(t, envoytest.Config{
		Filters:  []envoytest.WasmFilter{modelrouteFilter(t, filterConfig)},
		Routes:   poolRoutes(),
		Clusters: []envoytest.Cluster{upA.Cluster("a"), upB.Cluster("b")},
		// Envoy's buffer limit sits above the filter's 6 MiB, so the filter
		// (not Envoy) answers oversize bodies, with a JSON 413.
		ListenerBufferLimit: 16 << 20,
		StatsTags:           statsTags(),
	})
	c := e.Client()
	url := e.URL("/v1/chat/completions")
	counts := func() (int, int) { return upA.Count(), upB.Count() }

	t.Run("two clusters selected by model", func(t *testing.T) {
		r := post(t, c, url, chat("gemma-3-1b-it"), nil)
		require.Equal(t, 200, r.status, "%s", r.body)
		assert.Equal(t, "a", r.upstream)
		r = post(t, c, url, chat("qwen-2.5-7b"), nil)
		require.Equal(t, 200, r.status, "%s", r.body)
		assert.Equal(t, "b", r.upstream)
		last, ok := upB.Last()
		require.True(t, ok)
		assert.Equal(t, "pool-b", last.Header.Get(routingHeader))
		assert.JSONEq(t, string(chat("qwen-2.5-7b")), string(last.Body), "no rewrite when names agree")
	})

	t.Run("alias rewritten in the body the upstream receives", func(t *testing.T) {
		in := []byte(`{"messages":[{"role":"user","content":"say \"model\""}],"model":"gemma","temperature":0.5}`)
		r := post(t, c, url, in, nil)
		require.Equal(t, 200, r.status, "%s", r.body)
		require.Equal(t, "a", r.upstream)
		last, _ := upA.Last()
		want := `{"messages":[{"role":"user","content":"say \"model\""}],"model":"/gcs/google/gemma-3-1b-it","temperature":0.5}`
		assert.Equal(t, want, string(last.Body), "only the model changed, byte for byte")
		assert.Equal(t, strconv.Itoa(len(want)), last.Header.Get("Content-Length"))
		// The response names the public model, not the backend path.
		var resp struct {
			Model         string `json:"model"`
			ReceivedBytes int    `json:"received_bytes"`
		}
		require.NoError(t, json.Unmarshal(r.body, &resp))
		assert.Equal(t, "gemma-3-1b-it", resp.Model)
		assert.Equal(t, len(want), resp.ReceivedBytes)
	})

	t.Run("streamed response model mapped back", func(t *testing.T) {
		r := post(t, c, url, []byte(`{"model":"gemma","stream":true,"messages":[]}`), nil)
		require.Equal(t, 200, r.status, "%s", r.body)
		assert.Equal(t, 2, strings.Count(string(r.body), `"model":"gemma-3-1b-it"`), "%s", r.body)
		assert.NotContains(t, string(r.body), "/gcs/")
		assert.True(t, strings.HasSuffix(string(r.body), "data: [DONE]\n\n"))
	})

	t.Run("response above max_response_bytes passes unmapped and whole", func(t *testing.T) {
		r := post(t, c, url, []byte(`{"model":"gemma","response_pad":2000000}`), nil)
		require.Equal(t, 200, r.status)
		var resp struct {
			Model string `json:"model"`
			Pad   string `json:"pad"`
		}
		require.NoError(t, json.Unmarshal(r.body, &resp), "a complete JSON body")
		assert.Equal(t, "/gcs/google/gemma-3-1b-it", resp.Model, "too large to hold: forwarded as is")
		assert.Len(t, resp.Pad, 2000000)
	})

	t.Run("90/10 split over 1000 requests", func(t *testing.T) {
		const n, workers = 1000, 4
		var mu sync.Mutex
		got := map[string]int{}
		var wg sync.WaitGroup
		body := chat("llama-3.1-8b")
		for w := range workers {
			wg.Go(func() {
				for range n / workers {
					r := post(t, c, url, body, map[string]string{"x-worker": strconv.Itoa(w)})
					if r.status != 200 {
						t.Errorf("status %d: %s", r.status, r.body)
						return
					}
					mu.Lock()
					got[r.upstream]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		require.Equal(t, n, got["a"]+got["b"], "%v", got)
		share := 100 * float64(got["a"]) / n
		t.Logf("split: %v (%.1f%% on the 90%% target)", got, share)
		assert.InDelta(t, 90, share, 3, "pool-a share %.1f%%", share)
	})

	t.Run("sticky key keeps the target", func(t *testing.T) {
		const sessions, repeats = 100, 3
		perTarget := map[string]int{}
		for s := range sessions {
			hdr := map[string]string{"x-session-id": fmt.Sprintf("conversation-%d", s)}
			first := ""
			for i := range repeats {
				r := post(t, c, url, chat("llama-3.1-8b"), hdr)
				require.Equal(t, 200, r.status, "%s", r.body)
				if i == 0 {
					first = r.upstream
					perTarget[first]++
					continue
				}
				require.Equal(t, first, r.upstream, "session %d moved", s)
			}
		}
		t.Logf("sessions per target: %v", perTarget)
		assert.Positive(t, perTarget["a"])
		assert.Positive(t, perTarget["b"], "some sessions land on the 10%% target")
	})

	t.Run("model outside the product is 403", func(t *testing.T) {
		a, b := counts()
		hdr := map[string]string{"x-tollgate-allowed-models": "qwen-*,llama-3.1-8b", "x-tollgate-product": "starter"}
		r := post(t, c, url, chat("gemma"), hdr)
		require.Equal(t, 403, r.status, "%s", r.body)
		code, typ, msg := apiError(t, r.body)
		assert.Equal(t, "model_not_allowed", code)
		assert.Equal(t, "permission_error", typ)
		assert.Contains(t, msg, `"starter"`)
		assert.Equal(t, "application/json", r.header.Get("content-type"))
		r = post(t, c, url, chat("qwen-2.5-7b"), hdr)
		require.Equal(t, 200, r.status, "%s", r.body)
		a2, b2 := counts()
		assert.Equal(t, [2]int{a, b + 1}, [2]int{a2, b2}, "only the allowed request reached an upstream")
	})

	t.Run("priority header from product, client value replaced", func(t *testing.T) {
		r := post(t, c, url, chat("qwen-2.5-7b"), map[string]string{"x-tollgate-product": "gold", "x-tollgate-priority": "sheddable"})
		require.Equal(t, 200, r.status)
		last, _ := upB.Last()
		assert.Equal(t, []string{"critical"}, last.Header.Values("x-tollgate-priority"))
		r = post(t, c, url, chat("qwen-2.5-7b"), map[string]string{"x-tollgate-priority": "critical"})
		require.Equal(t, 200, r.status)
		last, _ = upB.Last()
		assert.Equal(t, []string{"standard"}, last.Header.Values("x-tollgate-priority"))
	})

	t.Run("client routing header is ignored", func(t *testing.T) {
		r := post(t, c, url, chat("gemma"), map[string]string{routingHeader: "pool-b"})
		require.Equal(t, 200, r.status)
		assert.Equal(t, "a", r.upstream)
		// A request without a body is not paused, and the header is still stripped.
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.URL("/v1/models"), nil)
		require.NoError(t, err)
		req.Header.Set(routingHeader, "pool-b")
		r = do(t, c, req)
		require.Equal(t, 200, r.status)
		assert.Equal(t, "a", r.upstream)
		last, _ := upA.Last()
		assert.Empty(t, last.Header.Get(routingHeader))
	})

	t.Run("client errors never reach an upstream", func(t *testing.T) {
		tests := []struct {
			name   string
			ct     string
			body   string
			status int
			code   string
		}{
			{"unknown model", "application/json", `{"model":"gpt-4o","messages":[]}`, 404, "model_not_found"},
			{"malformed json", "application/json", `{"model":"gemma",`, 400, "invalid_json"},
			{"missing model", "application/json", `{"messages":[]}`, 400, "missing_model"},
			{"model not a string", "application/json", `{"model":7}`, 400, "invalid_model"},
			{"duplicate model", "application/json", `{"model":"qwen-2.5-7b","model":"gemma"}`, 400, "ambiguous_json"},
			{"case-variant model", "application/json", `{"model":"gemma","Model":"qwen-2.5-7b"}`, 400, "ambiguous_json"},
			{"escaped model key", "application/json", `{"mod\u0065l":"gemma"}`, 400, "invalid_model"},
			{"case-variant max_tokens", "application/json", `{"model":"gemma","max_tokens":1,"Max_tokens":40}`, 400, "ambiguous_json"},
			{"5000-deep content", "application/json", `{"model":"gemma","messages":[{"role":"user","content":` + strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat(`}`, 5000) + `}]}`, 400, "json_too_deep"},
			{"5000-deep model", "application/json", `{"model":` + strings.Repeat(`[`, 5000) + strings.Repeat(`]`, 5000) + `}`, 400, "json_too_deep"},
			{"lone surrogate", "application/json", `{"model":"gemma","messages":[{"role":"user","content":"\ud800"}]}`, 400, "ambiguous_json"},
			{"trailing data", "application/json", `{"model":"gemma"}{"model":"qwen-2.5-7b"}`, 400, "invalid_json"},
			{"json array", "application/json", `[{"model":"gemma"}]`, 400, "invalid_json"},
			{"form body", "application/x-www-form-urlencoded", `model=gemma`, 400, "invalid_content_type"},
			{"text body", "text/plain", `{"model":"gemma"}`, 400, "invalid_content_type"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				a, b := counts()
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(tt.body))
				require.NoError(t, err)
				req.Header.Set("content-type", tt.ct)
				r := do(t, c, req)
				require.Equal(t, tt.status, r.status, "%s", r.body)
				code, _, msg := apiError(t, r.body)
				assert.Equal(t, tt.code, code)
				assert.NotEmpty(t, msg)
				a2, b2 := counts()
				assert.Equal(t, [2]int{a, b}, [2]int{a2, b2})
			})
		}
	})

	t.Run("5 MB body under the limit, 413 over it", func(t *testing.T) {
		big := paddedBody(t, "gemma", 5_000_000)
		r := post(t, c, url, big, nil)
		require.Equal(t, 200, r.status, "%.300s", r.body)
		last, _ := upA.Last()
		want := bytes.Replace(big, []byte(`"model":"gemma"`), []byte(`"model":"/gcs/google/gemma-3-1b-it"`), 1)
		assert.Equal(t, len(want), len(last.Body))
		assert.True(t, bytes.Equal(want, last.Body), "the 5 MB body arrived rewritten and intact")

		a, b := counts()
		over := paddedBody(t, "gemma", 7_000_000)
		// With a content-length the filter refuses at the headers.
		r = post(t, c, url, over, nil)
		require.Equal(t, 413, r.status, "%.300s", r.body)
		code, _, msg := apiError(t, r.body)
		assert.Equal(t, "request_too_large", code)
		assert.Contains(t, msg, "6291456")
		// Chunked, the filter counts the body as it arrives.
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, io.MultiReader(bytes.NewReader(over)))
		require.NoError(t, err)
		req.Header.Set("content-type", "application/json")
		req.ContentLength = -1
		r = do(t, c, req)
		require.Equal(t, 413, r.status, "%.300s", r.body)
		code, _, _ = apiError(t, r.body)
		assert.Equal(t, "request_too_large", code)
		a2, b2 := counts()
		assert.Equal(t, [2]int{a, b}, [2]int{a2, b2})
	})

	t.Run("HTTP/2 request with trailers", func(t *testing.T) {
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		h2 := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Protocols: &protos}}
		defer h2.CloseIdleConnections()
		pr, pw := io.Pipe()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, pr)
		require.NoError(t, err)
		req.Header.Set("content-type", "application/json")
		req.ContentLength = -1
		req.Trailer = http.Header{"X-Checksum": nil}
		go func() {
			_, _ = pw.Write([]byte(`{"model":"gem`))
			_, _ = pw.Write([]byte(`ma","messages":[]}`))
			req.Trailer.Set("X-Checksum", "abc")
			_ = pw.Close()
		}()
		r := do(t, h2, req)
		require.Equal(t, 200, r.status, "%s", r.body)
		require.Equal(t, "HTTP/2.0", r.proto)
		assert.Equal(t, "a", r.upstream)
		last, _ := upA.Last()
		assert.Equal(t, `{"model":"/gcs/google/gemma-3-1b-it","messages":[]}`, string(last.Body))
	})

	t.Run("metrics labelled by model, target and reason", func(t *testing.T) {
		split := e.WaitPromMetric(t, "tollgate_modelroute_requests_total", map[string]string{"model": "llama-3_1-8b", "target": "pool-b"}, 5*time.Second,
			func(v float64) bool { return v > 0 })
		all, ok := e.PromMetric("tollgate_modelroute_requests_total", map[string]string{"model": "llama-3_1-8b"})
		require.True(t, ok)
		assert.EqualValues(t, 1300, all, "1000 split + 300 sticky requests")
		assert.Less(t, split, all)
		v, ok := e.PromMetric("tollgate_modelroute_rewrites_total", map[string]string{"model": "gemma-3-1b-it", "direction": "request"})
		require.True(t, ok)
		assert.Positive(t, v)
		v, ok = e.PromMetric("tollgate_modelroute_rewrites_total", map[string]string{"model": "gemma-3-1b-it", "direction": "response"})
		require.True(t, ok)
		assert.Positive(t, v)
		for reason, want := range map[string]float64{"model_not_found": 1, "model_not_allowed": 1, "invalid_content_type": 2, "request_too_large": 2} {
			v, ok := e.PromMetric("tollgate_modelroute_rejections_total", map[string]string{"reason": reason})
			require.True(t, ok, reason)
			assert.Equal(t, want, v, reason)
		}
	})

	e.RequireNoCrash(t)
}

// paddedBody returns a chat body of exactly size bytes: a large tool
// description stands in for the several MB of tool definitions agents send.
func paddedBody(t testing.TB, model string, size int) []byte {
	t.Helper()
	head := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","description":"`
	tail := `"}}]}`
	pad := size - len(head) - len(tail)
	require.Positive(t, pad)
	b := make([]byte, 0, size)
	b = append(b, head...)
	b = append(b, bytes.Repeat([]byte("x"), pad)...)
	b = append(b, tail...)
	require.True(t, json.Valid(b))
	return b
}
