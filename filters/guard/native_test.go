//go:build !wasip1

package guard

// Native tests of the glue on shared/proxywasm/hosttest: the filter runs in
// the test binary, so filter.go is covered; e2e/guard runs the built module in
// real Envoy.

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

const nativeConfig = `{
  "moderation": {"cluster": "moderation", "fail": "closed", "timeout": "1000ms"},
  "products": {
    "guarded": {
      "request": {"detectors": {"payment_card": "mask", "email": "mask", "secrets": "block"}},
      "response": {"detectors": {"email": "mask"}},
      "threat": {"path": true, "query": true, "json_fields": ["user"]},
      "moderation": {"request": true, "thresholds": {"violence": 0.5}}
    },
    "open": {"request": {"detectors": {"payment_card": "mask"}}, "moderation": {"request": true, "fail": "open"}}
  }
}`

const card = "4111 1111 1111 1111"

// moderation flags texts that mention a fight; down answers 503.
func moderation(down bool) func(*hosttest.Callout) *hosttest.Response {
	return func(c *hosttest.Callout) *hosttest.Response {
		if down {
			return &hosttest.Response{Status: 503}
		}
		score := "0.01"
		if strings.Contains(string(c.Body), "fight") {
			score = "0.97"
		}
		return &hosttest.Response{Headers: [][2]string{{"content-type", "application/json"}},
			Body: []byte(`{"results":[{"flagged":` + map[bool]string{true: "true", false: "false"}[score != "0.01"] +
				`,"categories":{"violence":` + map[bool]string{true: "true", false: "false"}[score != "0.01"] +
				`},"category_scores":{"violence":` + score + `}}]}`)}
	}
}

// answer echoes a JSON completion naming the caller's e-mail address.
func answer(*hosttest.Upstream) *hosttest.Response {
	return &hosttest.Response{Headers: [][2]string{{"content-type", "application/json"}},
		Body: []byte(`{"choices":[{"message":{"role":"assistant","content":"write to ada@example.com"}}]}`)}
}

func guardHost(t *testing.T, down bool) *hosttest.Host {
	t.Helper()
	return hosttest.New(t, hosttest.Config{Plugin: New, PluginConfig: []byte(nativeConfig), AllowOnHeadersStopIteration: true,
		Clusters: []string{"moderation"}, Callouts: moderation(down), Upstream: answer})
}

func chat(product, content string, extra ...[2]string) hosttest.Request {
	return hosttest.Request{Method: "POST", Path: "/v1/chat/completions",
		Headers: append([][2]string{{"content-type", "application/json"}, {"x-tollgate-product", product}}, extra...),
		Body:    []byte(`{"model":"m","messages":[{"role":"user","content":"` + content + `"}]}`)}
}

func TestNativeGuard(t *testing.T) {
	h := guardHost(t, false)

	t.Run("card and e-mail masked upstream, content-length fixed, answer masked", func(t *testing.T) {
		res := h.Do(chat("guarded", "pay with "+card+" or mail bob@example.com"))
		require.Equal(t, 200, res.Status, string(res.Body))
		up := res.Upstream
		require.NotNil(t, up)
		assert.NotContains(t, string(up.Body), card)
		assert.NotContains(t, string(up.Body), "bob@example.com")
		assert.Equal(t, strconv.Itoa(len(up.Body)), up.Header("content-length"))
		assert.NotContains(t, string(res.Body), "ada@example.com", "the answer is masked too")
		assert.Len(t, h.Callouts(), 0, "moderation answered")
	})

	t.Run("moderation flags the request before the upstream", func(t *testing.T) {
		res := h.Do(chat("guarded", "let us fight"))
		assert.GreaterOrEqual(t, res.Status, 400)
		assert.Less(t, res.Status, 500)
		assert.True(t, res.LocalReply)
		assert.Nil(t, res.Upstream)
		assert.Contains(t, res.Header("content-type"), "application/json")
	})

	t.Run("threat in the query is refused", func(t *testing.T) {
		res := h.Do(hosttest.Request{Path: "/v1/models?q=%3Cscript%3Ealert(1)%3C/script%3E",
			Headers: [][2]string{{"x-tollgate-product", "guarded"}}})
		assert.Equal(t, 400, res.Status, string(res.Body))
		assert.Nil(t, res.Upstream)
	})

	t.Run("a secret blocks the request", func(t *testing.T) {
		res := h.Do(chat("guarded", "my key is AKIAIOSFODNN7EXAMPLE"))
		assert.Equal(t, 400, res.Status, string(res.Body))
		assert.Nil(t, res.Upstream)
	})

	t.Run("unguarded product passes untouched", func(t *testing.T) {
		res := h.Do(chat("other", "pay with "+card))
		require.Equal(t, 200, res.Status)
		assert.Contains(t, string(res.Upstream.Body), card)
	})
}

func TestNativeModerationDown(t *testing.T) {
	h := guardHost(t, true)
	res := h.Do(chat("guarded", "hello"))
	assert.Equal(t, 503, res.Status, string(res.Body))
	assert.Nil(t, res.Upstream)
	res = h.Do(chat("open", "hello"))
	assert.Equal(t, 200, res.Status, "fail open")
	assert.NotNil(t, res.Upstream)
	assert.True(t, h.Logged("guard: moderation"))

	_, err := hosttest.Start(t, hosttest.Config{Plugin: New, PluginConfig: []byte(`{"products":{"p":{"nope":1}}}`)})
	assert.Error(t, err)
}

// TestNativeAnswerTooLarge: a JSON answer over max_response_bytes becomes a
// 502 whose body is only the error, whatever the upstream sends after.
func TestNativeAnswerTooLarge(t *testing.T) {
	big := `{"choices":[{"message":{"content":"` + strings.Repeat("x", 200) + ` ada@example.com"}}]}`
	h := hosttest.New(t, hosttest.Config{Plugin: New, AllowOnHeadersStopIteration: true,
		PluginConfig: []byte(`{"max_response_bytes": 64, "products": {"p": {"response": {"detectors": {"email": "mask"}}}}}`),
		Upstream: func(*hosttest.Upstream) *hosttest.Response {
			return &hosttest.Response{Headers: [][2]string{{"content-type", "application/json"}},
				Chunks: [][]byte{[]byte(big[:50]), []byte(big[50:100]), []byte(big[100:])}}
		}})
	res := h.Do(chat("p", "hi"))
	assert.Equal(t, 502, res.Status)
	assert.JSONEq(t, `{"error":{"message":"the answer is larger than the gateway scans","type":"server_error","param":null,"code":"guard_answer_too_large"}}`, string(res.Body))
	assert.NotContains(t, string(res.Body), "ada@example.com")
}

// TestNativeAnswers: streamed answers are masked event by event, a flagged
// answer is replaced by an error, limits answer 413 and 502, and trailers
// end a gathered body.
func TestNativeAnswers(t *testing.T) {
	cfg := `{"max_body_bytes": 512, "max_response_bytes": 256, "moderation": {"cluster": "moderation", "fail": "closed", "timeout": "1000ms"},
	  "products": {"p": {"request": {"detectors": {"payment_card": "mask"}}, "response": {"detectors": {"email": "mask"}},
	    "moderation": {"response": true, "thresholds": {"violence": 0.5}}}}}`
	var answerBody []byte
	var sse [][]byte
	h := hosttest.New(t, hosttest.Config{Plugin: New, PluginConfig: []byte(cfg), AllowOnHeadersStopIteration: true,
		Clusters: []string{"moderation"}, Callouts: moderation(false),
		Upstream: func(*hosttest.Upstream) *hosttest.Response {
			if sse != nil {
				return &hosttest.Response{Headers: [][2]string{{"content-type", "text/event-stream"}}, Chunks: sse}
			}
			return &hosttest.Response{Headers: [][2]string{{"content-type", "application/json"}}, Body: answerBody}
		}})

	t.Run("streamed e-mail split across frames is masked", func(t *testing.T) {
		ev := func(s string) string { return `data: {"choices":[{"delta":{"content":"` + s + `"}}]}` + "\n\n" }
		stream := ev("mail ada@exa") + ev("mple.com now") + "data: [DONE]\n\n"
		sse = [][]byte{[]byte(stream[:30]), []byte(stream[30:70]), []byte(stream[70:])}
		defer func() { sse = nil }()
		res := h.Do(chat("p", "hi"))
		require.Equal(t, 200, res.Status, string(res.Body))
		assert.NotContains(t, strings.ReplaceAll(string(res.Body), `"}}]}`+"\n\ndata: "+`{"choices":[{"delta":{"content":"`, ""), "ada@example.com")
		assert.True(t, strings.HasSuffix(string(res.Body), "data: [DONE]\n\n"))
	})

	t.Run("a flagged answer is replaced by an error", func(t *testing.T) {
		answerBody = []byte(`{"choices":[{"message":{"content":"a fight it is"}}]}`)
		res := h.Do(chat("p", "hi"))
		assert.GreaterOrEqual(t, res.Status, 400, string(res.Body))
		assert.Equal(t, "application/json", res.Header("content-type"))
		assert.Equal(t, strconv.Itoa(len(res.Body)), res.Header("content-length"))
		assert.Contains(t, string(res.Body), "moderation")
	})

	t.Run("an answer over max_response_bytes is a 502", func(t *testing.T) {
		answerBody = []byte(`{"choices":[{"message":{"content":"` + strings.Repeat("x", 400) + `"}}]}`)
		res := h.Do(chat("p", "hi"))
		assert.Equal(t, 502, res.Status, string(res.Body))
		assert.Contains(t, string(res.Body), "guard_answer_too_large")
	})

	t.Run("a body over max_body_bytes is a 413", func(t *testing.T) {
		res := h.Do(chat("p", strings.Repeat("y", 600)))
		assert.Equal(t, 413, res.Status, string(res.Body))
		assert.Nil(t, res.Upstream)
	})

	t.Run("trailers end the gathered body", func(t *testing.T) {
		answerBody = []byte(`{"choices":[{"message":{"content":"ok"}}]}`)
		body := `{"model":"m","messages":[{"role":"user","content":"card ` + card + `"}]}`
		res := h.Do(hosttest.Request{Method: "POST", Path: "/v1/chat/completions",
			Headers: [][2]string{{"content-type", "application/json"}, {"x-tollgate-product", "p"}},
			Chunks:  [][]byte{[]byte(body[:20]), []byte(body[20:])}, Trailers: [][2]string{{"x-sum", "1"}}})
		require.Equal(t, 200, res.Status, string(res.Body))
		assert.NotContains(t, string(res.Upstream.Body), card)
	})
}
