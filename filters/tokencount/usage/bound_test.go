package usage

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The strict bound is never below the real prompt tokens of any recorded
// request (o200k plus the cookbook framing), and never below the
// heuristic estimate.
func TestBoundCoversRecordedRequests(t *testing.T) {
	for _, fx := range loadRequests(t) {
		t.Run(fx.File, func(t *testing.T) {
			req, err := ParseRequest(APIForPath(fx.Path), readFile(t, "requests/"+fx.File))
			require.NoError(t, err)
			bound := Bounds{}.Prompt(req, Estimator{})
			assert.GreaterOrEqual(t, bound, Estimator{}.PromptTokens(req), "bound below the estimate")
			if fx.Truth != nil {
				assert.GreaterOrEqual(t, bound, *fx.Truth, "bound below the real count")
			}
		})
	}
}

// Every calibration text has fewer o200k tokens than bytes.
func TestBoundCoversCorpusText(t *testing.T) {
	var corpus []struct {
		Name  string `json:"name"`
		Text  string `json:"text"`
		O200k int64  `json:"o200k"`
	}
	readJSON(t, "text_corpus.json", &corpus)
	require.NotEmpty(t, corpus)
	for _, s := range corpus {
		body := `{"messages":[{"role":"user","content":` + jsonString(s.Text) + `}]}`
		req, err := ParseRequest(APIChatCompletions, []byte(body))
		require.NoError(t, err, s.Name)
		assert.GreaterOrEqual(t, Bounds{}.Prompt(req, Estimator{}), s.O200k, s.Name)
		assert.GreaterOrEqual(t, req.Prompt.TextBytes, s.O200k, s.Name)
	}
}

func jsonString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`, "\r", `\r`)
	return `"` + r.Replace(s) + `"`
}

func TestBoundArithmetic(t *testing.T) {
	b := Bounds{PerRequest: 10, PerPrompt: 3, PerMessage: 4, PerText: 1, ToolsPreamble: 100, PerTool: 7, ToolBytesFactor: 3, Image: 2000, Audio: 50, File: 300}
	tests := []struct {
		name string
		api  API
		body string
		want int64
	}{
		{
			name: "chat text: bytes + framing", api: APIChatCompletions,
			// texts: "system"(6) "Be brief."(9) "user"(4) "hi"(2) = 21 bytes, 4 texts, 2 messages
			body: `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}`,
			want: 21 + 4*1 + 10 + 2*4,
		},
		{
			name: "escapes count as their UTF-8 bytes", api: APIChatCompletions,
			// "é" is 2 bytes, "😀" 4
			body: `{"messages":[{"role":"user","content":"\u00e9\ud83d\ude00"}]}`,
			want: 4 + 6 + 2*1 + 10 + 4,
		},
		{
			name: "random letters: the estimate is low, the bound is not", api: APIChatCompletions,
			body: `{"messages":[{"role":"user","content":"` + strings.Repeat("xq", 500) + `"}]}`,
			want: 4 + 1000 + 2 + 10 + 4,
		},
		{
			name: "tools: preamble, per tool and factor × bytes", api: APIChatCompletions,
			body: `{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"},{"type":"function"}]}`,
			want: 5 + 2 + 10 + 4 + 100 + 2*7 + 3*int64(len(`[{"type":"function"},{"type":"function"}]`)),
		},
		{
			name: "image at its configured maximum", api: APIChatCompletions,
			body: `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png","detail":"low"}}]}]}`,
			want: 4 + 1 + 10 + 4 + 2000,
		},
		{
			name: "audio never below its estimate", api: APIChatCompletions,
			// unknown audio: 30 s × 10 tokens/s = 300 > the configured 50
			body: `{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}]}]}`,
			want: 4 + 1 + 10 + 4 + 300,
		},
		{
			name: "file", api: APIAnthropicMessages,
			body: `{"max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"url","url":"https://x/y.pdf"}}]}]}`,
			want: 4 + 1 + 10 + 4 + 1500, // the estimator's 1500 per file beats 300
		},
		{
			name: "members the filter does not read count whole", api: APIChatCompletions,
			// documents (vLLM RAG templates) raw 11 bytes, reasoning_content 3 bytes,
			// an unknown part whole; temperature is a sampling parameter (free)
			body: `{"temperature":0.5,"documents":["abcdefg"],"messages":[{"role":"assistant","reasoning_content":"abc","content":[{"type":"x_text","text":"zz"}]}]}`,
			want: 9 + 1 + 10 + 4 + int64(len(`["abcdefg"]`)) + 3 + int64(len(`{"type":"x_text","text":"zz"}`)),
		},
		{
			name: "token ids exact, framing per prompt", api: APICompletions,
			body: `{"prompt":[[1,2,3],[4,5]]}`,
			want: 5 + 2*3,
		},
		{
			name: "completions batch of strings", api: APICompletions,
			body: `{"prompt":["abc","de"]}`,
			want: 5 + 2*1 + 2*3,
		},
		{
			name: "embeddings batch: no chat template", api: APIEmbeddings,
			body: `{"input":["abc","de","f"]}`,
			want: 6 + 3*1 + 3*3,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ParseRequest(tc.api, []byte(tc.body))
			require.NoError(t, err)
			assert.Equal(t, tc.want, b.Prompt(req, Estimator{}))
		})
	}
}

func TestBoundChatTemplate(t *testing.T) {
	req, err := ParseRequest(APIChatCompletions, []byte(`{"chat_template":"{% for i in range(99999) %}x{% endfor %}","messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	assert.True(t, req.Prompt.Template)
	assert.Zero(t, req.Prompt.ExtraBytes, "the template itself is not counted: strict mode refuses it")
}

func TestBoundDefaultsAndUnbounded(t *testing.T) {
	d := Bounds{}.WithDefaults()
	assert.Equal(t, Bounds{PerRequest: 128, PerPrompt: 4, PerMessage: 8, PerText: 1, ToolsPreamble: 512, PerTool: 32, ToolBytesFactor: 2, Image: 1600, Audio: 1500, File: 8000}, d)
	req, err := ParseRequest(APIChatCompletions, []byte(`{"messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	assert.Nil(t, req.Prompt.Unbounded())
	req, err = ParseRequest(APIChatCompletions, []byte(`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":"https://x"},{"type":"file","file":{}}]}],"tools":[]}`))
	require.NoError(t, err)
	assert.Equal(t, []string{"images", "files", "tools"}, req.Prompt.Unbounded())
}

// The bound holds for arbitrary text: bytes never undercount what a
// byte-level tokenizer can make of them, whatever the heuristic says.
func TestBoundAtLeastBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.!?é漢😀\n")
	for i := 0; i < 200; i++ {
		var sb strings.Builder
		for j := 0; j < rng.IntN(400); j++ {
			sb.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		s := sb.String()
		req, err := ParseRequest(APIChatCompletions, []byte(`{"messages":[{"role":"user","content":`+jsonString(s)+`}]}`))
		require.NoError(t, err)
		assert.GreaterOrEqual(t, Bounds{}.Prompt(req, Estimator{}), int64(len(s)))
	}
}

func TestSetMaxOutput(t *testing.T) {
	tests := []struct {
		name string
		api  API
		body string
		n    int64
		want string
	}{
		{"chat without cap: max_completion_tokens inserted", APIChatCompletions, `{"model":"m","messages":[]}`, 7, `{"max_completion_tokens":7,"model":"m","messages":[]}`},
		{"empty object", APIChatCompletions, `{ }`, 7, `{"max_completion_tokens":7 }`},
		{"chat both caps set", APIChatCompletions, `{"max_tokens": 100 ,"messages":[],"max_completion_tokens":50}`, 9, `{"max_tokens": 9 ,"messages":[],"max_completion_tokens":9}`},
		{"null cap replaced, never duplicated", APICompletions, `{"prompt":"x","max_tokens":null}`, 3, `{"prompt":"x","max_tokens":3}`},
		{"anthropic", APIAnthropicMessages, `{"max_tokens":4096,"messages":[{"role":"user","content":"max_tokens"}]}`, 12, `{"max_tokens":12,"messages":[{"role":"user","content":"max_tokens"}]}`},
		{"embeddings untouched", APIEmbeddings, `{"input":"x"}`, 5, `{"input":"x"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SetMaxOutput(tc.api, []byte(tc.body), tc.n)
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(got))
		})
	}
	_, err := SetMaxOutput(APIChatCompletions, []byte(`{"max_tokens":1,"max_tokens":2}`), 5)
	require.Error(t, err)
}

// SetMaxOutput keeps the body a request the view accepts, with every cap
// at n and everything else read the same; the bound never falls below
// the text bytes.
func FuzzSetMaxOutput(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`), int64(5))
	f.Add([]byte(`{"max_tokens":null,"max_completion_tokens":9,"messages":[{"role":"user","content":"hi"}]}`), int64(1))
	f.Add([]byte(`{ "messages" : [ {"role":"user","content":[{"type":"text","text":"x"}]} ] , "max_tokens" : 100 }`), int64(7))
	f.Fuzz(func(t *testing.T, body []byte, n int64) {
		if n < 1 || n > 1<<31-1 {
			return
		}
		req, err := ParseRequest(APIChatCompletions, body)
		if err != nil {
			return
		}
		require.GreaterOrEqual(t, Bounds{}.Prompt(req, Estimator{}), req.Prompt.TextBytes)
		out, err := SetMaxOutput(APIChatCompletions, body, n)
		require.NoError(t, err)
		after, err := ParseRequest(APIChatCompletions, out)
		require.NoError(t, err, "%s", out)
		require.True(t, after.MaxOutputSet)
		require.Equal(t, n, after.MaxOutput)
		if v := after.View.MaxTokens; v.Exists() {
			got, _ := v.Int()
			require.Equal(t, n, got)
		}
		req.View, after.View = nil, nil
		after.MaxOutput, after.MaxOutputSet = req.MaxOutput, req.MaxOutputSet
		require.Equal(t, req, after)
	})
}
