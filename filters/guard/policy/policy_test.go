package policy_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/guard/policy"
)

func load(t testing.TB) *policy.Policy {
	t.Helper()
	raw, err := os.ReadFile("testdata/config.json")
	require.NoError(t, err)
	p, err := policy.Parse(raw)
	require.NoError(t, err)
	return p
}

func hdr(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func profile(t testing.TB, p *policy.Policy, product, app string) *policy.Compiled {
	t.Helper()
	c, _ := p.Profile(hdr(map[string]string{"x-tollgate-product": product, "x-tollgate-app": app}))
	require.NotNil(t, c)
	return c
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, cfg, want string }{
		{"empty", ``, "empty configuration"},
		{"unknown field", `{"defualt": {}}`, `unknown field "defualt"`},
		{"no profile", `{}`, "no profile"},
		{"bad action", `{"default":{"request":{"detectors":{"email":"redact"}}}}`, `action "redact"`},
		{"unknown detector", `{"default":{"request":{"detectors":{"mail":"mask"}}}}`, `unknown detector "mail"`},
		{"bad regexp", `{"default":{"request":{"deny":[{"name":"x","pattern":"(a","action":"block"}]}}}`, "missing closing )"},
		{"bad name", `{"default":{"request":{"deny":[{"name":"X Y","pattern":"a","action":"block"}]}}}`, `name "X Y"`},
		{"unknown set", `{"default":{"threat":{"sets":["rce"],"query":true}}}`, `set "rce"`},
		{"threat nowhere", `{"default":{"threat":{}}}`, "no place to check"},
		{"moderation without service", `{"default":{"moderation":{"request":true}}}`, "no moderation service"},
		{"moderation fail mode", `{"moderation":{"cluster":"m"},"default":{}}`, `fail ""`},
		{"hold too small", `{"stream":{"max_hold_bytes":8},"default":{}}`, "max_hold_bytes"},
		{"trailing", `{"default":{}} x`, "trailing data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.Parse([]byte(tc.cfg))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestProfileChoice(t *testing.T) {
	p := load(t)
	assert.Equal(t, "apps.open-app", profile(t, p, "guarded", "open-app").Name)
	assert.Equal(t, "products.guarded", profile(t, p, "guarded", "other").Name)
	assert.Equal(t, "default", profile(t, p, "", "").Name)
	assert.False(t, profile(t, p, "", "").ScansResponse())
	assert.False(t, profile(t, p, "guarded", "open-app").ScansRequestBody(), "nothing to scan: the body is not read")
}

func TestThreatHeaders(t *testing.T) {
	c := profile(t, load(t), "guarded", "")
	for _, tc := range []struct {
		name, path string
		headers    map[string]string
		code       string
	}{
		{"clean", "/v1/chat/completions?limit=10&q=hello", nil, ""},
		{"sqli in query", "/v1/chat/completions?q=1%27%20OR%20%271%27%3D%271", nil, "guard_sqli"},
		{"union select double encoded", "/v1/x?id=1%2520UNION%2520SELECT%2520password", nil, "guard_sqli"},
		{"xss in query", "/v1/chat/completions?next=%3Cscript%3Ealert(1)%3C/script%3E", nil, "guard_xss"},
		{"ssi in path", "/v1/%3C!--%23exec%20cmd=%22ls%22--%3E", nil, "guard_ssi"},
		{"xss in header", "/v1/chat/completions", map[string]string{"x-client-note": `<img src=x onerror=alert(1)>`}, "guard_xss"},
		{"unlisted header", "/v1/chat/completions", map[string]string{"user-agent": `<script>`}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ds := c.CheckHeaders(tc.path, hdr(tc.headers))
			if tc.code == "" {
				assert.Nil(t, e)
				return
			}
			require.NotNil(t, e)
			assert.Equal(t, 400, e.Status)
			assert.Equal(t, tc.code, e.Code)
			require.Len(t, ds, 1)
			assert.Equal(t, "block", ds[0].Action)
		})
	}
}

func TestCheckBody(t *testing.T) {
	c := profile(t, load(t), "guarded", "")
	for _, tc := range []struct {
		name, body string
		code       string // "" = allowed
		param      string
		want       string // substring of the rewritten body ("" = unchanged)
	}{
		{"discusses sql and html", `{"model":"m","messages":[{"role":"user","content":"Explain SELECT * FROM users; and <script> tags"}]}`, "", "", ""},
		{"sqli in configured field", `{"model":"m","user":"x' OR '1'='1","messages":[{"role":"user","content":"hi"}]}`, "guard_sqli", "user", ""},
		{"xss in nested field", `{"model":"m","metadata":{"note":"<script>alert(1)</script>"},"messages":[]}`, "guard_xss", "metadata.note", ""},
		{"card masked", `{"model":"m","messages":[{"role":"user","content":"pay with 4111 1111 1111 1111 now"}]}`, "", "", `"pay with [PAYMENT_CARD] now"`},
		{"card in a text part", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"card\t5555555555554444"}]}]}`, "", "", `"card\u0009[PAYMENT_CARD]"`},
		{"allowed test card", `{"model":"m","messages":[{"role":"user","content":"test 4000 0000 0000 0002"}]}`, "", "", ""},
		{"escaped json kept valid", `{"model":"m","prompt":"\"q\" 4111111111111111 \u00e9\n"}`, "", "", `"\"q\" [PAYMENT_CARD] é\u000a"`},
		{"secret blocks", `{"model":"m","messages":[{"role":"user","content":"key AKIAIOSFODNN7EXAMPLE"}]}`, "guard_aws_access_key", "messages[0].content", ""},
		{"custom deny", `{"model":"m","messages":[{"role":"system","content":"about Project  Falcon"}]}`, "guard_codename", "messages[0].content", ""},
		{"tool arguments", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{\"card\":\"4111111111111111\"}"}}]}]}`, "", "", `[PAYMENT_CARD]`},
		{"invalid json", `{"model":`, "invalid_json", "", ""},
		{"not a json request", "--boundary\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n4111111111111111", "", "", ""},
		{"empty body", "", "", "", ""},
		{"json with a bom is not skipped", "\xef\xbb\xbf{\"model\":\"m\",\"prompt\":\"4111111111111111\"}", "invalid_json", "", ""},
		{"json array", `["4111111111111111"]`, "invalid_json", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := c.CheckBody([]byte(tc.body), 1<<20)
			if tc.code != "" {
				require.NotNil(t, res.Err)
				assert.Equal(t, tc.code, res.Err.Code)
				assert.Equal(t, tc.param, res.Err.Param)
				assert.NotContains(t, string(res.Err.Body(0)), "4111")
				return
			}
			require.Nil(t, res.Err)
			if tc.want == "" {
				assert.Nil(t, res.Body)
				return
			}
			require.NotNil(t, res.Body)
			assert.True(t, json.Valid(res.Body), string(res.Body))
			assert.Contains(t, string(res.Body), tc.want)
		})
	}
}

func TestCheckAnswer(t *testing.T) {
	c := profile(t, load(t), "guarded", "")
	res := c.CheckAnswer([]byte(`{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"write to bob@example.com"}}],"usage":{"total_tokens":3}}`), 1<<20)
	require.Nil(t, res.Err)
	assert.JSONEq(t, `{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"write to [EMAIL]"}}],"usage":{"total_tokens":3}}`, string(res.Body))
	require.Len(t, res.Decisions, 1)
	assert.Equal(t, policy.Decision{Rule: "email", Action: "mask", Direction: policy.Response, Count: 1}, res.Decisions[0])

	res = c.CheckAnswer([]byte(`{"choices":[{"index":0,"message":{"content":"SSN 536-22-1234"}}]}`), 1<<20)
	require.NotNil(t, res.Err)
	assert.Equal(t, "guard_us_ssn", res.Err.Code)
}

// chatStream renders an answer as chat chunks: the text split into pieces of
// n bytes, then a finish chunk, a usage chunk and [DONE].
func chatStream(text string, n int) string {
	var b strings.Builder
	ev := func(v any) {
		raw, _ := json.Marshal(v)
		b.WriteString("data: " + string(raw) + "\n\n")
	}
	ev(map[string]any{"id": "c1", "object": "chat.completion.chunk", "choices": []any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": ""}, "finish_reason": nil}}})
	for i := 0; i < len(text); i += n {
		ev(map[string]any{"id": "c1", "object": "chat.completion.chunk", "choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": text[i:min(len(text), i+n)]}, "finish_reason": nil}}})
	}
	ev(map[string]any{"id": "c1", "object": "chat.completion.chunk", "choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "stop"}}})
	ev(map[string]any{"id": "c1", "object": "chat.completion.chunk", "choices": []any{}, "usage": map[string]any{"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}})
	b.WriteString("data: [DONE]\n\n")
	return b.String()
}

// readStream returns the concatenated content, the events' data and whether
// every event but [DONE] is valid JSON.
func readStream(t *testing.T, body string) (string, []string) {
	t.Helper()
	var content strings.Builder
	var datas []string
	for _, block := range strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n") {
		data, ok := strings.CutPrefix(block, "data: ")
		require.True(t, ok, "event %q", block)
		datas = append(datas, data)
		if data == "[DONE]" {
			continue
		}
		require.True(t, json.Valid([]byte(data)), "event is not JSON: %q", data)
		var ch struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		require.NoError(t, json.Unmarshal([]byte(data), &ch))
		for _, c := range ch.Choices {
			content.WriteString(c.Delta.Content)
		}
	}
	return content.String(), datas
}

func TestStreamMaskerAnySplit(t *testing.T) {
	c := profile(t, load(t), "guarded", "")
	text := "Sure! Write to jane.doe@example.com or call.\nBye."
	for _, n := range []int{1, 2, 5, 64} {
		up := chatStream(text, n)
		for _, split := range []int{1, 3, 17, len(up)} {
			m := c.NewStreamMasker(time.Hour)
			var out strings.Builder
			now := time.Unix(0, 0)
			for i := 0; i < len(up); i += split {
				out.Write(m.Feed([]byte(up[i:min(len(up), i+split)]), now))
			}
			out.Write(m.Finish(now))
			content, datas := readStream(t, out.String())
			assert.Equal(t, "Sure! Write to [EMAIL] or call.\nBye.", content, "pieces %d split %d", n, split)
			assert.Contains(t, datas, `{"choices":[],"id":"c1","object":"chat.completion.chunk","usage":{"completion_tokens":9,"prompt_tokens":5,"total_tokens":14}}`)
			assert.Equal(t, "[DONE]", datas[len(datas)-1])
			assert.Equal(t, []policy.Decision{{Rule: "email", Action: "mask", Direction: policy.Response, Count: 1}}, m.Decisions())
		}
	}
}

func TestStreamMaskerBlocks(t *testing.T) {
	c := profile(t, load(t), "guarded", "")
	m := c.NewStreamMasker(time.Hour)
	out := string(m.Feed([]byte(chatStream("your SSN is 536-22-1234 ok", 2)), time.Unix(0, 0)))
	out += string(m.Finish(time.Unix(0, 0)))
	assert.True(t, m.Blocked())
	content, datas := readStream(t, out)
	assert.NotContains(t, content, "536")
	require.GreaterOrEqual(t, len(datas), 2)
	assert.Equal(t, "[DONE]", datas[len(datas)-1])
	assert.Contains(t, datas[len(datas)-2], `"code":"guard_us_ssn"`)
}

func TestStreamMaskerTimeBound(t *testing.T) {
	c := profile(t, load(t), "guarded", "")
	m := c.NewStreamMasker(100 * time.Millisecond)
	t0 := time.Unix(0, 0)
	up := chatStream("unfinishedword", 100)
	cut := strings.LastIndex(up[:strings.Index(up, `"finish_reason":"stop"`)], "data: ")
	first, _ := readStream(t, string(m.Feed([]byte(up[:cut]), t0)))
	assert.Equal(t, "", first, "an unfinished word is held")
	late, _ := readStream(t, string(m.Feed([]byte(": keep-alive\n\n"), t0.Add(150*time.Millisecond))))
	assert.Equal(t, "unfinishedword", late, "held text goes out once the bound passed")
}

// anthropicStream renders an Anthropic Messages stream of text in pieces.
func anthropicStream(text string, n int) string {
	var b strings.Builder
	ev := func(name string, v any) {
		raw, _ := json.Marshal(v)
		b.WriteString("event: " + name + "\ndata: " + string(raw) + "\n\n")
	}
	ev("message_start", map[string]any{"type": "message_start", "message": map[string]any{"id": "m1", "usage": map[string]any{"input_tokens": 5, "output_tokens": 1}}})
	ev("content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}})
	for i := 0; i < len(text); i += n {
		ev("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": text[i:min(len(text), i+n)]}})
	}
	ev("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
	ev("message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": "end_turn"}, "usage": map[string]any{"output_tokens": 9}})
	ev("message_stop", map[string]any{"type": "message_stop"})
	return b.String()
}

func TestStreamMaskerAnthropic(t *testing.T) {
	c := profile(t, load(t), "guarded", "")
	for _, n := range []int{1, 3, 100} {
		up := anthropicStream("Mail jane.doe@example.com today", n)
		m := c.NewStreamMasker(time.Hour)
		var out strings.Builder
		for i := 0; i < len(up); i += 5 {
			out.Write(m.Feed([]byte(up[i:min(len(up), i+5)]), time.Unix(0, 0)))
		}
		out.Write(m.Finish(time.Unix(0, 0)))
		var text strings.Builder
		var names []string
		for _, block := range strings.Split(strings.TrimSuffix(out.String(), "\n\n"), "\n\n") {
			name, data, ok := strings.Cut(block, "\ndata: ")
			require.True(t, ok, block)
			require.True(t, json.Valid([]byte(data)), data)
			names = append(names, strings.TrimPrefix(name, "event: "))
			var ev struct {
				Type  string                `json:"type"`
				Delta struct{ Text string } `json:"delta"`
			}
			require.NoError(t, json.Unmarshal([]byte(data), &ev))
			if ev.Type == "content_block_delta" {
				text.WriteString(ev.Delta.Text)
			}
		}
		assert.Equal(t, "Mail [EMAIL] today", text.String(), "pieces %d", n)
		assert.Equal(t, "message_stop", names[len(names)-1])
		assert.Contains(t, out.String(), `"usage":{"output_tokens":9}`, "usage passes")
	}
	m := c.NewStreamMasker(time.Hour)
	out := string(m.Feed([]byte(anthropicStream("SSN 536-22-1234 ok", 2)), time.Unix(0, 0)))
	assert.True(t, m.Blocked())
	assert.Contains(t, out, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"code\":\"guard_us_ssn\"")
	assert.NotContains(t, out, "536")
}

func TestStreamMaskerToolArguments(t *testing.T) {
	c := profile(t, load(t), "guarded", "")
	args := `{"to": "jane.doe@example.com", "body": "hi"}`
	var up strings.Builder
	ev := func(v any) {
		raw, _ := json.Marshal(v)
		up.WriteString("data: " + string(raw) + "\n\n")
	}
	ev(map[string]any{"id": "c1", "choices": []any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant",
		"tool_calls": []any{map[string]any{"index": 0, "id": "call_1", "type": "function", "function": map[string]any{"name": "send", "arguments": ""}}}}}}})
	for i := 0; i < len(args); i += 3 {
		ev(map[string]any{"id": "c1", "choices": []any{map[string]any{"index": 0, "delta": map[string]any{
			"tool_calls": []any{map[string]any{"index": 0, "function": map[string]any{"arguments": args[i:min(len(args), i+3)]}}}}}}})
	}
	ev(map[string]any{"id": "c1", "choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "tool_calls"}}})
	up.WriteString("data: [DONE]\n\n")
	m := c.NewStreamMasker(time.Hour)
	out := string(m.Feed([]byte(up.String()), time.Unix(0, 0))) + string(m.Finish(time.Unix(0, 0)))
	var got strings.Builder
	for _, block := range strings.Split(strings.TrimSuffix(out, "\n\n"), "\n\n") {
		data := strings.TrimPrefix(block, "data: ")
		if data == "[DONE]" {
			continue
		}
		var ch struct {
			Choices []struct {
				Delta struct {
					ToolCalls []struct {
						Function struct{ Arguments string } `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		require.NoError(t, json.Unmarshal([]byte(data), &ch), data)
		for _, c := range ch.Choices {
			for _, tc := range c.Delta.ToolCalls {
				got.WriteString(tc.Function.Arguments)
			}
		}
	}
	assert.Equal(t, `{"to": "[EMAIL]", "body": "hi"}`, got.String())
	assert.True(t, json.Valid([]byte(got.String())))
}

func TestStreamMaskerBlocksOnFinalFlush(t *testing.T) {
	c := profile(t, load(t), "guarded", "")
	for name, up := range map[string]string{
		"openai, [DONE] without a finish chunk": "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"id 536-22-1234\"},\"finish_reason\":null}]}\n\ndata: [DONE]\n\n",
		"openai, no [DONE]":                     "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"id 536-22-1234\"},\"finish_reason\":null}]}\n\n",
		"anthropic": "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"id 536-22-1234\"}}\n\n" +
			"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			m := c.NewStreamMasker(time.Hour)
			out := string(m.Feed([]byte(up), time.Unix(0, 0))) + string(m.Finish(time.Unix(0, 0)))
			assert.True(t, m.Blocked())
			assert.NotContains(t, out, "536")
			assert.Equal(t, 1, strings.Count(out, "guard_us_ssn"), out)
			assert.LessOrEqual(t, strings.Count(out, "[DONE]"), 1, out)
			assert.NotContains(t, out, "message_stop", "nothing after the error event")
		})
	}
}

// TestPartialProfiles: profiles that only check threats or only moderate
// scan bodies and answers without request or response detectors.
func TestPartialProfiles(t *testing.T) {
	p, err := policy.Parse([]byte(`{"moderation":{"cluster":"m","fail":"open"},
		"products":{"threat-only":{"threat":{"json_fields":["user"]}},
		            "moderate-only":{"moderation":{"request":true,"response":true}}}}`))
	require.NoError(t, err)
	body := []byte(`{"model":"m","user":"ok","messages":[{"role":"user","content":"mail a@b.co"}]}`)
	answer := []byte(`{"choices":[{"index":0,"message":{"content":"mail a@b.co"}}]}`)

	c := profile(t, p, "threat-only", "")
	assert.True(t, c.ScansRequestBody())
	assert.False(t, c.ScansResponse())
	r := c.CheckBody(body, 1<<20)
	assert.Nil(t, r.Err)
	assert.Nil(t, r.Body)
	assert.Empty(t, r.Texts)

	c = profile(t, p, "moderate-only", "")
	r = c.CheckBody(body, 1<<20)
	assert.Nil(t, r.Err)
	assert.Equal(t, []string{"mail a@b.co"}, r.Texts)
	a := c.CheckAnswer(answer, 1<<20)
	assert.Nil(t, a.Err)
	assert.Equal(t, []string{"mail a@b.co"}, a.Texts)
}
