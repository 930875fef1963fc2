//go:build !wasip1

package modelroute

// Native tests of filter.go on shared/proxywasm/hosttest: the glue runs in
// the test binary (covered, debuggable); main_test.go checks the built module.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/modelroute/route"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

// echoModel answers like an OpenAI server naming the model it received:
// JSON, or SSE in frames that split an event.
func echoModel(up *hosttest.Upstream) *hosttest.Response {
	var in struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	_ = json.Unmarshal(up.Body, &in)
	model, _ := json.Marshal(in.Model)
	if in.Stream {
		ev := fmt.Sprintf("data: {\"id\":\"c\",\"model\":%s,\"choices\":[]}\n\n", model)
		half := len(ev) / 2
		return &hosttest.Response{Headers: [][2]string{{"content-type", "text/event-stream"}},
			Chunks: [][]byte{[]byte(ev[:half]), []byte(ev[half:] + ev), []byte("data: [DONE]\n\n")}}
	}
	return &hosttest.Response{Headers: [][2]string{{"content-type", "application/json"}},
		Body: fmt.Appendf(nil, `{"model":%s}`, model)}
}

func nativeRoute(t *testing.T, config string) *hosttest.Host {
	t.Helper()
	return hosttest.New(t, hosttest.Config{Plugin: New, PluginConfig: []byte(config),
		AllowOnHeadersStopIteration: true, Upstream: echoModel})
}

func post(body string, headers ...[2]string) hosttest.Request {
	return hosttest.Request{Method: "POST", Path: "/v1/chat/completions", Body: []byte(body),
		Headers: append([][2]string{{"content-type", "application/json"}}, headers...)}
}

func TestNativeRouting(t *testing.T) {
	h := nativeRoute(t, testConfig)

	t.Run("alias rewritten, content-length fixed, route header set, response mapped back", func(t *testing.T) {
		res := h.Do(post(`{"messages":[],"model":"gemma","n":1}`, [2]string{"x-tollgate-model", "pool-b"}))
		require.Equal(t, 200, res.Status, string(res.Body))
		up := res.Upstream
		want := `{"messages":[],"model":"/gcs/google/gemma-3-1b-it","n":1}`
		assert.Equal(t, want, string(up.Body))
		assert.Equal(t, fmt.Sprint(len(want)), up.Header("content-length"))
		assert.Equal(t, "pool-a", up.Header("x-tollgate-model"), "the client's value is replaced")
		assert.Equal(t, "gemma-3-1b-it", up.Header("x-tollgate-public-model"))
		assert.Positive(t, res.RouteCacheClears)
		assert.JSONEq(t, `{"model":"gemma-3-1b-it"}`, string(res.Body))
		assert.Empty(t, res.Header("content-length"), "the mapped body has another length")
	})

	t.Run("chunked body and trailers", func(t *testing.T) {
		res := h.Do(hosttest.Request{Method: "POST", Path: "/v1/chat/completions",
			Headers: [][2]string{{"content-type", "application/json"}},
			Chunks:  [][]byte{[]byte(`{"model":`), []byte(`"qwen"}`)}, Trailers: [][2]string{{"x-checksum", "abc"}}})
		require.Equal(t, 200, res.Status, string(res.Body))
		assert.Equal(t, "pool-b", res.Upstream.Header("x-tollgate-model"))
		assert.Equal(t, "sheddable", res.Upstream.Header("x-tollgate-priority"))
	})

	t.Run("no body: not paused, client routing headers dropped", func(t *testing.T) {
		res := h.Do(hosttest.Request{Path: "/v1/models", Headers: [][2]string{{"x-tollgate-priority", "critical"}}})
		require.Equal(t, 200, res.Status)
		assert.Empty(t, res.Upstream.Header("x-tollgate-priority"))
	})

	t.Run("SSE mapped across split events", func(t *testing.T) {
		res := h.Do(post(`{"model":"gemma","stream":true}`))
		require.Equal(t, 200, res.Status)
		ev := "data: {\"id\":\"c\",\"model\":\"gemma-3-1b-it\",\"choices\":[]}\n\n"
		assert.Equal(t, ev+ev+"data: [DONE]\n\n", string(res.Body))
		assert.Positive(t, h.Counter(route.RewritesMetric("gemma-3-1b-it", "response")))
	})

	t.Run("local replies", func(t *testing.T) {
		big := `{"model":"qwen","pad":"` + strings.Repeat("x", 5000) + `"}`
		for _, tt := range []struct {
			name   string
			req    hosttest.Request
			status int
			code   string
		}{
			{"unknown", post(`{"model":"gpt"}`), 404, route.CodeModelNotFound},
			{"malformed", post(`{"model":`), 400, route.CodeInvalidJSON},
			{"forbidden", post(`{"model":"gemma"}`, [2]string{"x-tollgate-allowed-models", "qwen"}), 403, route.CodeModelNotAllowed},
			{"content type", hosttest.Request{Method: "POST", Path: "/v1/chat/completions", Body: []byte(`{"model":"qwen"}`),
				Headers: [][2]string{{"content-type", "text/plain"}}}, 400, route.CodeInvalidContentType},
			{"too large by content-length", post(big), 413, route.CodeTooLarge},
			{"too large while buffering", hosttest.Request{Method: "POST", Path: "/v1/chat/completions",
				Headers: [][2]string{{"content-type", "application/json"}},
				Chunks:  [][]byte{[]byte(`{"model":"qwen","pad":"`), []byte(strings.Repeat("x", 3000)), []byte(strings.Repeat("x", 3000))}}, 413, route.CodeTooLarge},
		} {
			t.Run(tt.name, func(t *testing.T) {
				res := h.Do(tt.req)
				require.Equal(t, tt.status, res.Status, string(res.Body))
				assert.True(t, res.LocalReply)
				assert.Nil(t, res.Upstream, "never reaches the upstream")
				assert.Equal(t, "application/json", res.Header("content-type"))
				var e struct {
					Error struct{ Code string } `json:"error"`
				}
				require.NoError(t, json.Unmarshal(res.Body, &e))
				assert.Equal(t, tt.code, e.Error.Code)
				assert.Positive(t, h.Counter(route.RejectionsMetric(tt.code)))
			})
		}
	})

	t.Run("sticky split", func(t *testing.T) {
		targets := map[string]int{}
		for i := range 20 {
			res := h.Do(post(`{"model":"llama"}`, [2]string{"x-session-id", fmt.Sprint("s", i%4)}))
			targets[fmt.Sprint(i%4, res.Upstream.Header("x-tollgate-model"))]++
		}
		assert.Len(t, targets, 4, "each session kept one target: %v", targets)
		assert.EqualValues(t, 20, h.Counter(route.RequestsMetric("llama", "pool-a"))+h.Counter(route.RequestsMetric("llama", "pool-b")))
	})

	t.Run("bad configuration is refused", func(t *testing.T) {
		_, err := hosttest.Start(t, hosttest.Config{Plugin: New, PluginConfig: []byte(`{"models":[{"name":""}]}`)})
		assert.Error(t, err)
	})
}
