package mockllm

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixedNow pins "created" so responses compare byte for byte.
func fixedNow() time.Time { return time.Unix(1767225600, 0) }

// newTestServer serves a mock with opts on loopback for the test's lifetime.
func newTestServer(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	if opts.Now == nil {
		opts.Now = fixedNow
	}
	srv := httptest.NewServer(New(opts))
	t.Cleanup(srv.Close)
	return srv
}

// post sends a JSON body and returns status, headers and body.
func post(t *testing.T, srv *httptest.Server, path, body string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, raw
}

// events reads an SSE body into its data payloads, [DONE] included.
func events(t *testing.T, body io.Reader) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line := sc.Text()
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			out = append(out, d)
			continue
		}
		require.Empty(t, line, "unexpected SSE line")
	}
	require.NoError(t, sc.Err())
	return out
}

// openAIError is the error body every failure must have.
type openAIError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func TestTokens(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"   \n\t", 0},
		{"hello", 1},
		{"hello world", 2},
		{"assistant", 2},    // 9 letters: two started sixes
		{"abcdefabcdef", 2}, // exactly two sixes
		{"12", 1},
		{"1234", 2},
		{"a1b2", 4}, // letters and digits alternate: four runs
		{"Hi!", 2},
		{"...", 3},
		{"héllo wörld", 2},
		{"日本語", 1},
		{"😀", 1},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			assert.Equal(t, tt.want, Tokens(tt.in))
		})
	}
}

func TestGenerateIsDeterministicAndCountsPieces(t *testing.T) {
	for seed := uint64(0); seed < 200; seed++ {
		a, b := generate(seed, 0), generate(seed, 0)
		require.Equal(t, a, b)
		require.Equal(t, "stop", a.finish)
		require.GreaterOrEqual(t, len(a.pieces), minReplyTokens)
		require.LessOrEqual(t, len(a.pieces), maxReplyTokens)
		require.Equal(t, len(a.pieces), Tokens(a.text()), "every piece is one token: %q", a.text())
		require.True(t, strings.HasSuffix(a.text(), "."))

		cut := generate(seed, 5)
		require.Equal(t, "length", cut.finish)
		require.Equal(t, a.pieces[:5], cut.pieces)
	}
}

func TestChatJSONGolden(t *testing.T) {
	srv := newTestServer(t, Options{})
	req, err := os.ReadFile(filepath.Join("testdata", "chat_request.json"))
	require.NoError(t, err)
	status, hdr, body := post(t, srv, "/v1/chat/completions", string(req), nil)
	require.Equal(t, http.StatusOK, status, "%s", body)
	assert.Equal(t, "application/json", hdr.Get("Content-Type"))

	golden := filepath.Join("testdata", "chat_response.golden.json")
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		require.NoError(t, os.WriteFile(golden, append(body, '\n'), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	assert.JSONEq(t, string(want), string(body))

	var resp chatResponse
	require.NoError(t, json.Unmarshal(body, &resp))
	// 3 reply priming + system (3 + 1 role + 7 content) + user (3 + 1 role + 1+1 name + 9 text + 85 image).
	assert.Equal(t, 114, resp.Usage.PromptTokens)
	require.Len(t, resp.Choices, 1)
	assert.Equal(t, Tokens(resp.Choices[0].Message.Content), resp.Usage.CompletionTokens)
	assert.Equal(t, resp.Usage.PromptTokens+resp.Usage.CompletionTokens, resp.Usage.TotalTokens)
	assert.Equal(t, resp.ID, hdr.Get("X-Request-Id"))

	// The same request again gives the same bytes.
	_, _, again := post(t, srv, "/v1/chat/completions", string(req), nil)
	assert.Equal(t, body, again)
}

func TestChatVariants(t *testing.T) {
	srv := newTestServer(t, Options{})
	tests := []struct {
		name       string
		body       string
		choices    int
		finish     string
		completion int // 0: any
	}{
		{"max_tokens cuts", `{"model":"llama-3.1-8b","messages":[{"role":"user","content":"hi"}],"max_tokens":3}`, 1, "length", 3},
		{"max_completion_tokens wins", `{"model":"llama-3.1-8b","messages":[{"role":"user","content":"hi"}],"max_tokens":100,"max_completion_tokens":2}`, 1, "length", 2},
		{"n choices", `{"model":"llama-3.1-8b","messages":[{"role":"user","content":"hi"}],"n":3,"max_tokens":4}`, 3, "length", 12},
		{"natural stop", `{"model":"llama-3.1-8b","messages":[{"role":"user","content":"hi"}]}`, 1, "stop", 0},
		{"null content and tools", `{"model":"llama-3.1-8b","messages":[{"role":"assistant","content":null},{"role":"tool","content":"42"}],"tools":[{"type":"function"}]}`, 1, "stop", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := post(t, srv, "/v1/chat/completions", tt.body, nil)
			require.Equal(t, http.StatusOK, status, "%s", body)
			var resp chatResponse
			require.NoError(t, json.Unmarshal(body, &resp))
			require.Len(t, resp.Choices, tt.choices)
			sum := 0
			for i, c := range resp.Choices {
				assert.Equal(t, i, c.Index)
				assert.Equal(t, tt.finish, c.FinishReason)
				sum += Tokens(c.Message.Content)
			}
			assert.Equal(t, sum, resp.Usage.CompletionTokens)
			if tt.completion > 0 {
				assert.Equal(t, tt.completion, resp.Usage.CompletionTokens)
			}
		})
	}
}

func TestSeedAndPromptChangeTheReply(t *testing.T) {
	srv := newTestServer(t, Options{})
	content := func(body string) string {
		_, _, raw := post(t, srv, "/v1/chat/completions", body, nil)
		var resp chatResponse
		require.NoError(t, json.Unmarshal(raw, &resp))
		return resp.Choices[0].Message.Content
	}
	a := content(`{"model":"llama-3.1-8b","messages":[{"role":"user","content":"one"}]}`)
	assert.Equal(t, a, content(`{"model":"llama-3.1-8b","messages":[{"role":"user","content":"one"}]}`))
	assert.NotEqual(t, a, content(`{"model":"llama-3.1-8b","messages":[{"role":"user","content":"two"}]}`))
	assert.NotEqual(t, a, content(`{"model":"llama-3.1-8b","messages":[{"role":"user","content":"one"}],"seed":7}`))
}

// chunk is a stream chunk as a client decodes it, keeping usage raw to tell
// an absent member from null.
type chunk struct {
	Object  string           `json:"object"`
	Choices []map[string]any `json:"choices"`
	Usage   *json.RawMessage `json:"usage"`
}

func TestChatStreamUsage(t *testing.T) {
	srv := newTestServer(t, Options{})
	const base = `"model":"gemma-3-1b-it","messages":[{"role":"user","content":"stream please"}]`
	_, _, jsonBody := post(t, srv, "/v1/chat/completions", "{"+base+"}", nil)
	var full chatResponse
	require.NoError(t, json.Unmarshal(jsonBody, &full))

	tests := []struct {
		name    string
		options string
		usage   bool
	}{
		{"no stream_options", ``, false},
		{"include_usage false", `,"stream_options":{"include_usage":false}`, false},
		{"stream_options null", `,"stream_options":null`, false},
		{"include_usage true", `,"stream_options":{"include_usage":true}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := srv.Client().Post(srv.URL+"/v1/chat/completions", "application/json",
				strings.NewReader(`{`+base+`,"stream":true`+tt.options+`}`))
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "text/event-stream; charset=utf-8", resp.Header.Get("Content-Type"))
			evs := events(t, resp.Body)
			require.Equal(t, "[DONE]", evs[len(evs)-1])
			evs = evs[:len(evs)-1]

			var text strings.Builder
			deltas := 0
			var finish string
			for i, e := range evs {
				var raw map[string]json.RawMessage
				require.NoError(t, json.Unmarshal([]byte(e), &raw))
				var c chunk
				require.NoError(t, json.Unmarshal([]byte(e), &c))
				assert.Equal(t, "chat.completion.chunk", c.Object)
				u, hasUsage := raw["usage"]
				last := i == len(evs)-1
				switch {
				case !tt.usage:
					assert.False(t, hasUsage, "usage member present without include_usage: %s", e)
				case last:
					require.Empty(t, c.Choices, "the usage chunk has no choices")
					var got usage
					require.NoError(t, json.Unmarshal(u, &got))
					assert.Equal(t, *full.Usage, got)
					continue
				default:
					assert.Equal(t, "null", string(u), "every other chunk carries usage: null")
				}
				require.Len(t, c.Choices, 1)
				delta := c.Choices[0]["delta"].(map[string]any)
				if s, ok := delta["content"].(string); ok && s != "" {
					text.WriteString(s)
					deltas++
				}
				if f, ok := c.Choices[0]["finish_reason"].(string); ok {
					finish = f
				}
			}
			assert.Equal(t, full.Choices[0].Message.Content, text.String())
			assert.Equal(t, full.Usage.CompletionTokens, deltas, "one token per delta")
			assert.Equal(t, full.Choices[0].FinishReason, finish)
		})
	}
}

func TestStreamArrivesIncrementally(t *testing.T) {
	// With an inter-token delay of an hour, the first tokens can only be
	// read if they are sent before the rest of the reply is generated.
	srv := newTestServer(t, Options{InterTokenDelay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"gemma-3-1b-it","messages":[{"role":"user","content":"hi"}],"stream":true}`))
	require.NoError(t, err)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var got []string
	for sc.Scan() && len(got) < 2 {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			got = append(got, d)
		}
	}
	require.Len(t, got, 2, "role chunk and first token arrive before the second token")
	assert.Contains(t, got[0], `"role":"assistant"`)
	assert.Contains(t, got[1], `"content":`)
	cancel() // the handler's wait ends with the client
}

func TestCompletions(t *testing.T) {
	srv := newTestServer(t, Options{})
	tests := []struct {
		name    string
		body    string
		choices int
		prompt  int
	}{
		{"string prompt, default max_tokens 16", `{"model":"llama-3.1-8b","prompt":"Say this is a test"}`, 1, 5},
		{"array of prompts", `{"model":"llama-3.1-8b","prompt":["a b","c"],"max_tokens":4}`, 2, 3},
		{"token ids", `{"model":"llama-3.1-8b","prompt":[1,2,3,4,5],"max_tokens":4}`, 1, 5},
		{"token id lists and n", `{"model":"llama-3.1-8b","prompt":[[1,2],[3]],"n":2,"max_tokens":4}`, 4, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := post(t, srv, "/v1/completions", tt.body, nil)
			require.Equal(t, http.StatusOK, status, "%s", body)
			var resp struct {
				Object  string `json:"object"`
				Choices []struct {
					Text         string `json:"text"`
					Index        int    `json:"index"`
					FinishReason string `json:"finish_reason"`
				} `json:"choices"`
				Usage usage `json:"usage"`
			}
			require.NoError(t, json.Unmarshal(body, &resp))
			assert.Equal(t, "text_completion", resp.Object)
			require.Len(t, resp.Choices, tt.choices)
			sum := 0
			for i, c := range resp.Choices {
				assert.Equal(t, i, c.Index)
				n := Tokens(c.Text)
				assert.LessOrEqual(t, n, DefaultCompletionsMaxTokens)
				if n == DefaultCompletionsMaxTokens || n == 4 {
					assert.Equal(t, "length", c.FinishReason)
				}
				sum += n
			}
			assert.Equal(t, tt.prompt, resp.Usage.PromptTokens)
			assert.Equal(t, sum, resp.Usage.CompletionTokens)
			assert.Nil(t, resp.Usage.PromptTokensDetails)
		})
	}
}

func TestCompletionsStream(t *testing.T) {
	srv := newTestServer(t, Options{})
	_, _, jsonBody := post(t, srv, "/v1/completions", `{"model":"llama-3.1-8b","prompt":"x","max_tokens":5}`, nil)
	var full struct {
		Choices []struct{ Text string } `json:"choices"`
		Usage   usage                   `json:"usage"`
	}
	require.NoError(t, json.Unmarshal(jsonBody, &full))

	resp, err := srv.Client().Post(srv.URL+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"llama-3.1-8b","prompt":"x","max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	evs := events(t, resp.Body)
	require.Equal(t, "[DONE]", evs[len(evs)-1])
	var text strings.Builder
	for _, e := range evs[:len(evs)-2] {
		var c struct {
			Object  string                  `json:"object"`
			Choices []struct{ Text string } `json:"choices"`
		}
		require.NoError(t, json.Unmarshal([]byte(e), &c))
		assert.Equal(t, "text_completion", c.Object)
		var raw map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(e), &raw))
		assert.Equal(t, "null", string(raw["usage"]), "usage: null on every chunk but the last")
		text.WriteString(c.Choices[0].Text)
	}
	assert.Equal(t, full.Choices[0].Text, text.String())
	var last struct {
		Choices []any `json:"choices"`
		Usage   usage `json:"usage"`
	}
	require.NoError(t, json.Unmarshal([]byte(evs[len(evs)-2]), &last))
	assert.Empty(t, last.Choices)
	assert.Equal(t, full.Usage, last.Usage)
}

func TestEmbeddings(t *testing.T) {
	srv := newTestServer(t, Options{})
	type embResp struct {
		Object string `json:"object"`
		Data   []struct {
			Object    string          `json:"object"`
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
		Model string         `json:"model"`
		Usage embeddingUsage `json:"usage"`
	}
	get := func(body string) embResp {
		status, _, raw := post(t, srv, "/v1/embeddings", body, nil)
		require.Equal(t, http.StatusOK, status, "%s", raw)
		var r embResp
		require.NoError(t, json.Unmarshal(raw, &r))
		return r
	}
	r := get(`{"model":"text-embedding-3-small","input":["hello world","bye"]}`)
	assert.Equal(t, "list", r.Object)
	require.Len(t, r.Data, 2)
	assert.Equal(t, embeddingUsage{PromptTokens: 3, TotalTokens: 3}, r.Usage)
	var v []float32
	require.NoError(t, json.Unmarshal(r.Data[0].Embedding, &v))
	require.Len(t, v, DefaultEmbeddingDimensions)
	var norm float64
	for _, f := range v {
		norm += float64(f) * float64(f)
	}
	assert.InDelta(t, 1, norm, 1e-4, "unit vectors")

	// Deterministic, and base64 carries the same floats.
	b := get(`{"model":"text-embedding-3-small","input":"hello world","encoding_format":"base64","dimensions":8}`)
	var s string
	require.NoError(t, json.Unmarshal(b.Data[0].Embedding, &s))
	raw, err := base64.StdEncoding.DecodeString(s)
	require.NoError(t, err)
	require.Len(t, raw, 32)
	f := get(`{"model":"text-embedding-3-small","input":"hello world","dimensions":8}`)
	var want []float32
	require.NoError(t, json.Unmarshal(f.Data[0].Embedding, &want))
	for i := range want {
		assert.Equal(t, want[i], math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
	}
	tok := get(`{"model":"text-embedding-3-small","input":[[1,2,3],[4]]}`)
	assert.Equal(t, 4, tok.Usage.PromptTokens)
}

func TestModels(t *testing.T) {
	srv := newTestServer(t, Options{Models: []string{"a", "b", "vendor/*"}})
	resp, err := srv.Client().Get(srv.URL + "/v1/models")
	require.NoError(t, err)
	defer resp.Body.Close()
	var l struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&l))
	assert.Equal(t, "list", l.Object)
	require.Len(t, l.Data, 2, "patterns are not listed")
	assert.Equal(t, "a", l.Data[0].ID)
	assert.Equal(t, "model", l.Data[0].Object)

	for path, want := range map[string]int{"/v1/models/a": 200, "/v1/models/vendor/x": 200, "/v1/models/c": 404} {
		resp, err := srv.Client().Get(srv.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, path)
	}
	status, _, body := post(t, srv, "/v1/chat/completions", `{"model":"vendor/any","messages":[{"role":"user","content":"x"}]}`, nil)
	assert.Equal(t, http.StatusOK, status, "%s", body)
}

func TestErrors(t *testing.T) {
	srv := newTestServer(t, Options{MaxBodyBytes: 1024})
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		hdr    map[string]string
		status int
		param  string
		inMsg  string
	}{
		{"empty body", "POST", "/v1/chat/completions", ``, nil, 400, "", "empty"},
		{"invalid json", "POST", "/v1/chat/completions", `{"model":`, nil, 400, "", "parse"},
		{"wrong type", "POST", "/v1/chat/completions", `{"model":5,` + msgs + `}`, nil, 400, "model", "Invalid type"},
		{"missing model", "POST", "/v1/chat/completions", `{` + msgs + `}`, nil, 400, "model", "model"},
		{"unknown model", "POST", "/v1/chat/completions", `{"model":"gpt-9",` + msgs + `}`, nil, 404, "model", "gpt-9"},
		{"no messages", "POST", "/v1/chat/completions", `{"model":"llama-3.1-8b","messages":[]}`, nil, 400, "messages", "at least one"},
		{"bad role", "POST", "/v1/chat/completions", `{"model":"llama-3.1-8b","messages":[{"role":"robot","content":"x"}]}`, nil, 400, "messages[0].role", "robot"},
		{"bad content", "POST", "/v1/chat/completions", `{"model":"llama-3.1-8b","messages":[{"role":"user","content":5}]}`, nil, 400, "messages[0].content", "content"},
		{"bad part", "POST", "/v1/chat/completions", `{"model":"llama-3.1-8b","messages":[{"role":"user","content":[{"type":"video"}]}]}`, nil, 400, "messages[0].content[0].type", "video"},
		{"max_tokens 0", "POST", "/v1/chat/completions", `{"model":"llama-3.1-8b",` + msgs + `,"max_tokens":0}`, nil, 400, "max_tokens", "minimum"},
		{"n too big", "POST", "/v1/chat/completions", `{"model":"llama-3.1-8b",` + msgs + `,"n":9}`, nil, 400, "n", "between"},
		{"stream_options without stream", "POST", "/v1/chat/completions", `{"model":"llama-3.1-8b",` + msgs + `,"stream_options":{"include_usage":true}}`, nil, 400, "stream_options", "only allowed"},
		{"missing prompt", "POST", "/v1/completions", `{"model":"llama-3.1-8b"}`, nil, 400, "prompt", "Missing"},
		{"bad prompt", "POST", "/v1/completions", `{"model":"llama-3.1-8b","prompt":[1,"a"]}`, nil, 400, "prompt", "Invalid type"},
		{"empty input", "POST", "/v1/embeddings", `{"model":"llama-3.1-8b","input":""}`, nil, 400, "input", "empty"},
		{"bad encoding", "POST", "/v1/embeddings", `{"model":"llama-3.1-8b","input":"a","encoding_format":"hex"}`, nil, 400, "encoding_format", "hex"},
		{"bad dimensions", "POST", "/v1/embeddings", `{"model":"llama-3.1-8b","input":"a","dimensions":0}`, nil, 400, "dimensions", "dimensions"},
		{"too large", "POST", "/v1/chat/completions", `{"model":"` + strings.Repeat("x", 2000) + `"}`, nil, 413, "", "exceeds"},
		{"GET on chat", "GET", "/v1/chat/completions", ``, nil, 405, "", "POST"},
		{"POST on models", "POST", "/v1/models", ``, nil, 405, "", "GET"},
		{"unknown path", "POST", "/v1/nothing", `{}`, nil, 404, "", "Invalid URL"},
		{"injected 429", "POST", "/v1/chat/completions", `{}`, map[string]string{HeaderStatus: "429"}, 429, "", "mock error 429"},
		{"injected 503 on GET", "GET", "/v1/models", ``, map[string]string{HeaderStatus: "503"}, 503, "", "mock error 503"},
		{"bad injected status", "POST", "/v1/chat/completions", `{}`, map[string]string{HeaderStatus: "200"}, 400, "", HeaderStatus},
		{"bad abort header", "POST", "/v1/chat/completions", `{"model":"llama-3.1-8b",` + msgs + `}`, map[string]string{HeaderAbortAfter: "-1"}, 400, "", HeaderAbortAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			require.NoError(t, err)
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, tt.status, resp.StatusCode, "%s", raw)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			var e openAIError
			require.NoError(t, json.Unmarshal(raw, &e), "%s", raw)
			assert.Contains(t, e.Error.Message, tt.inMsg)
			assert.NotEmpty(t, e.Error.Type)
			if tt.param != "" {
				require.NotNil(t, e.Error.Param, "%s", raw)
				assert.Equal(t, tt.param, *e.Error.Param)
			}
			if tt.status == 429 {
				assert.Equal(t, "1", resp.Header.Get("Retry-After"))
			}
		})
	}
}

func TestAbortAfterDropsTheStream(t *testing.T) {
	srv := newTestServer(t, Options{})
	tests := []struct {
		name   string
		path   string
		body   string
		abort  string
		marker string // appears once per streamed token
		tokens int
	}{
		{"chat after 3", "/v1/chat/completions", `{"model":"llama-3.1-8b","messages":[{"role":"user","content":"x"}],"stream":true}`, "3", `"delta":{"content":`, 3},
		{"chat after 0", "/v1/chat/completions", `{"model":"llama-3.1-8b","messages":[{"role":"user","content":"x"}],"stream":true}`, "0", `"delta":{"content":`, 0},
		{"completions after 2", "/v1/completions", `{"model":"llama-3.1-8b","prompt":"x","stream":true}`, "2", `"text":"`, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL+tt.path, strings.NewReader(tt.body))
			require.NoError(t, err)
			req.Header.Set(HeaderAbortAfter, tt.abort)
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			require.Error(t, err, "the stream must end abruptly")
			assert.True(t, errors.Is(err, io.ErrUnexpectedEOF), "%v", err)
			assert.NotContains(t, string(raw), "[DONE]")
			assert.Equal(t, tt.tokens, strings.Count(string(raw), tt.marker))
		})
	}
}

func TestServeStopsWithContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(Options{}).Serve(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the context ended")
	}
}

func FuzzRequests(f *testing.F) {
	seeds := []string{
		`{"model":"llama-3.1-8b","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"llama-3.1-8b","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"n":2,"max_tokens":3}`,
		`{"model":"llama-3.1-8b","prompt":[[1,2],[3]],"max_tokens":2}`,
		`{"model":"llama-3.1-8b","input":["a","b"],"dimensions":4}`,
		`{"model":"llama-3.1-8b","messages":[],"stream_options":{}}`,
		`[]`, `null`, `{"model":null}`,
	}
	for _, s := range seeds {
		for _, p := range []uint8{0, 1, 2} {
			f.Add(p, []byte(s))
		}
	}
	h := New(Options{Now: fixedNow})
	paths := []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}
	f.Fuzz(func(t *testing.T, p uint8, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, paths[int(p)%len(paths)], strings.NewReader(string(body)))
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		if rec.Code != http.StatusOK {
			var e openAIError
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Message == "" {
				t.Fatalf("status %d without an OpenAI error body: %q", rec.Code, rec.Body)
			}
		}
	})
}

func FuzzTokens(f *testing.F) {
	for _, s := range []string{"", "hello world", "a1b2", "日本語 text", "\xff\xfe", "...!!"} {
		f.Add(s, "tail")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		n := Tokens(a)
		if n < 0 || n > len(a) {
			t.Fatalf("Tokens(%q) = %d, outside [0, %d]", a, n, len(a))
		}
		// Joining two texts with a space never changes the sum.
		if got, want := Tokens(a+" "+b), n+Tokens(b); got != want {
			t.Fatalf("Tokens(%q + \" \" + %q) = %d, want %d", a, b, got, want)
		}
	})
}
