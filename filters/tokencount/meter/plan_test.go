package meter

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tollgate/tollgate/internal/jsontest"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/window"
)

func quota(limit int64, m usage.Metric) *Quota {
	return &Quota{Key: Key{App: "a", Kind: KindFor(m)}, Spec: window.Spec{Limit: limit, Interval: 1, Unit: window.Minute, Kind: window.Calendar}, Metric: m, App: "a"}
}

func TestPlanRequest(t *testing.T) {
	const chat = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello there"}]`
	tests := []struct {
		name       string
		cfg        string
		api        usage.API
		body       string
		quota      *Quota
		wantOutput int64
		wantAmount int64 // -1: prompt + output
		rewritten  bool
		strip      bool
		status     int
		param      string
		code       string
	}{
		{name: "json chat, client max_tokens", cfg: `{}`, api: usage.APIChatCompletions,
			body: chat + `,"max_tokens":100}`, quota: quota(10000, usage.MetricTotal), wantOutput: 100, wantAmount: -1},
		{name: "default max output", cfg: `{"default_max_output_tokens": 300}`, api: usage.APIChatCompletions,
			body: chat + `}`, quota: quota(10000, usage.MetricTotal), wantOutput: 300, wantAmount: -1},
		{name: "cap", cfg: `{"max_output_tokens_cap": 50}`, api: usage.APIChatCompletions,
			body: chat + `,"max_completion_tokens":4000,"n":2}`, quota: quota(10000, usage.MetricTotal), wantOutput: 100, wantAmount: -1},
		{name: "stream without include_usage is rewritten", cfg: `{}`, api: usage.APIChatCompletions,
			body: chat + `,"stream":true,"max_tokens":10}`, quota: quota(10000, usage.MetricTotal), wantOutput: 10, wantAmount: -1, rewritten: true, strip: true},
		{name: "stream with include_usage false is rewritten", cfg: `{}`, api: usage.APIChatCompletions,
			body: chat + `,"stream":true,"stream_options":{"include_usage":false},"max_tokens":10}`, quota: quota(10000, usage.MetricTotal), wantOutput: 10, wantAmount: -1, rewritten: true, strip: true},
		{name: "client asked for usage: unchanged", cfg: `{}`, api: usage.APIChatCompletions,
			body: chat + `,"stream":true,"stream_options":{"include_usage":true},"max_tokens":10}`, quota: quota(10000, usage.MetricTotal), wantOutput: 10, wantAmount: -1},
		{name: "injection disabled", cfg: `{"inject_include_usage": false}`, api: usage.APIChatCompletions,
			body: chat + `,"stream":true,"max_tokens":10}`, quota: quota(10000, usage.MetricTotal), wantOutput: 10, wantAmount: -1},
		{name: "anthropic stream is never rewritten", cfg: `{}`, api: usage.APIAnthropicMessages,
			body: `{"model":"claude","max_tokens":20,"stream":true,"messages":[{"role":"user","content":"hi"}]}`, quota: quota(10000, usage.MetricTotal), wantOutput: 20, wantAmount: -1},
		{name: "no quota: planned, no amount", cfg: `{}`, api: usage.APIChatCompletions,
			body: chat + `,"max_tokens":100}`, wantOutput: 100, wantAmount: 0},
		{name: "prompt metric reserves the prompt only", cfg: `{}`, api: usage.APIChatCompletions,
			body: chat + `,"max_tokens":100}`, quota: quota(10000, usage.MetricPrompt), wantOutput: 100, wantAmount: -2},
		{name: "completion metric reserves the output only", cfg: `{}`, api: usage.APIChatCompletions,
			body: chat + `,"max_tokens":100}`, quota: quota(10000, usage.MetricCompletion), wantOutput: 100, wantAmount: 100},
		{name: "cost metric prices the reservation", cfg: `{"pricing": {"models": {"gpt-4o-mini": {"input": 1000, "output": 4000}}}}`, api: usage.APIChatCompletions,
			body: chat + `,"max_tokens":100}`, quota: quota(10_000_000, usage.MetricCost), wantOutput: 100, wantAmount: -3},
		{name: "embeddings reserve no output", cfg: `{}`, api: usage.APIEmbeddings,
			body: `{"model":"e","input":["a b c","d e f"]}`, quota: quota(10000, usage.MetricTotal), wantOutput: 0, wantAmount: -1},
		{name: "over the limit: 429 before the upstream", cfg: `{}`, api: usage.APIChatCompletions,
			body: chat + `,"max_tokens":5000}`, quota: quota(1000, usage.MetricTotal), status: 429},
		{name: "limit 0 blocks everything", cfg: `{}`, api: usage.APIChatCompletions,
			body: chat + `,"max_tokens":1}`, quota: quota(0, usage.MetricTotal), status: 429},
		{name: "malformed JSON", cfg: `{}`, api: usage.APIChatCompletions, body: `{"model":`, status: 400},
		{name: "missing messages", cfg: `{}`, api: usage.APIChatCompletions, body: `{"model":"m"}`, status: 400, param: "messages"},
		{name: "negative max_tokens", cfg: `{}`, api: usage.APIChatCompletions, body: chat + `,"max_tokens":-1}`, status: 400, param: "max_tokens"},
		{name: "duplicate stream key", cfg: `{}`, api: usage.APIChatCompletions, body: chat + `,"stream":false,"stream":true}`, status: 400, code: "ambiguous_json"},
		{name: "case variant of max_tokens", cfg: `{}`, api: usage.APIChatCompletions, body: chat + `,"max_tokens":1,"Max_tokens":40}`, status: 400, code: "ambiguous_json"},
		{name: "too deep", cfg: `{"max_json_depth": 8}`, api: usage.APIChatCompletions, body: `{"model":"m","messages":[{"role":"user","content":[[[[[[[[[["x"]]]]]]]]]]}]}`, status: 400, code: "json_too_deep"},
		{name: "too large", cfg: `{"max_request_bytes": 16}`, api: usage.APIChatCompletions, body: chat + `}`, status: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.cfg)
			pl, aerr := p.PlanRequest(tt.api, []byte(tt.body), tt.quota)
			if tt.status != 0 {
				require.NotNil(t, aerr)
				assert.Equal(t, tt.status, aerr.Status)
				assert.Equal(t, tt.param, aerr.Param)
				if tt.code != "" {
					assert.Equal(t, tt.code, aerr.Code)
				}
				if tt.status == 429 {
					assert.Equal(t, CodeRequestOverLimit, aerr.Code)
					require.NotNil(t, pl, "a refused plan is returned for metric labels")
					assert.Equal(t, "gpt-4o-mini", pl.Model)
					assert.Contains(t, aerr.Message, "lower max_tokens")
				} else {
					assert.Nil(t, pl)
				}
				return
			}
			require.Nil(t, aerr)
			assert.Positive(t, pl.PromptEstimate)
			assert.Equal(t, tt.wantOutput, pl.OutputReserve)
			switch tt.wantAmount {
			case -1:
				assert.Equal(t, pl.PromptEstimate+pl.OutputReserve, pl.Amount)
			case -2:
				assert.Equal(t, pl.PromptEstimate, pl.Amount)
			case -3: // micro-units: tokens × price per million
				assert.Equal(t, pl.PromptEstimate*1000+pl.OutputReserve*4000, pl.Amount)
			default:
				assert.Equal(t, tt.wantAmount, pl.Amount)
			}
			assert.Equal(t, tt.strip, pl.StripUsage)
			if !tt.rewritten {
				assert.Nil(t, pl.Body)
				return
			}
			require.NotNil(t, pl.Body)
			assert.True(t, jsontest.Get(pl.Body, "stream_options.include_usage").Bool())
			assert.Equal(t, jsontest.Get([]byte(tt.body), "messages").Raw(), jsontest.Get(pl.Body, "messages").Raw())
		})
	}
}

func TestPlanRequestFixtures(t *testing.T) {
	p := mustParse(t, `{}`)
	for _, f := range []struct {
		file string
		api  usage.API
	}{
		{"chat_simple.json", usage.APIChatCompletions},
		{"chat_vision.json", usage.APIChatCompletions},
		{"chat_audio.json", usage.APIChatCompletions},
		{"completions_batch.json", usage.APICompletions},
		{"embeddings_batch.json", usage.APIEmbeddings},
		{"anthropic_messages.json", usage.APIAnthropicMessages},
	} {
		t.Run(f.file, func(t *testing.T) {
			body := readFixture(t, "requests/"+f.file)
			pl, aerr := p.PlanRequest(f.api, body, quota(1<<40, usage.MetricTotal))
			require.Nil(t, aerr)
			assert.Positive(t, pl.PromptEstimate)
			assert.Equal(t, pl.PromptEstimate+pl.OutputReserve, pl.Amount)
			assert.Equal(t, pl.Reserved().TotalTokens, pl.Amount)
			assert.False(t, strings.Contains(string(pl.Body), "\x00"))
		})
	}
}

func TestPlanCharge(t *testing.T) {
	pl := &Plan{Quota: quota(100, usage.MetricCost), Price: usage.Price{Input: 2, CachedInput: 1, Output: 8}}
	u := usage.Usage{PromptTokens: 100, CachedTokens: 40, CompletionTokens: 10, TotalTokens: 110}
	assert.Equal(t, int64(60*2+40*1+10*8), pl.Charge(u))
	pl.Quota = nil
	assert.Equal(t, int64(0), pl.Charge(u))
}

func TestBodyRequired(t *testing.T) {
	e := BodyRequired()
	assert.Equal(t, 400, e.Status)
	assert.Equal(t, CodeBodyRequired, e.Code)
}

func TestInjectIncludeUsageFastPath(t *testing.T) {
	p := mustParse(t, `{}`)
	for _, body := range []string{
		` {"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
		"{\n  \"stream\": true, \"model\": \"m\", \"prompt\": \"x\"}",
		`{"model":"m","stream":true,"messages":[{"role":"user","content":"say \"stream_options\""}]}`,
	} {
		api := usage.APIChatCompletions
		if strings.Contains(body, "prompt") {
			api = usage.APICompletions
		}
		pl, aerr := p.PlanRequest(api, []byte(body), nil)
		require.Nil(t, aerr, body)
		require.True(t, pl.StripUsage)
		req, err := usage.ParseRequest(api, pl.Body)
		require.NoError(t, err, "%s", pl.Body)
		assert.True(t, req.IncludeUsage)
		assert.True(t, req.StreamOptions)
	}
}

// FuzzInjectIncludeUsage checks that every streamed request the filter
// rewrites still parses the same way, now asking for usage.
func FuzzInjectIncludeUsage(f *testing.F) {
	f.Add([]byte(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	f.Add([]byte(`{"model":"m","stream":true,"stream_options":{"x":1},"messages":[{"role":"user","content":"hi"}]}`))
	f.Add([]byte(`{"model":"m","stream":true,"stream_options":null,"messages":[{"role":"user","content":"hi"}]}`))
	f.Add([]byte(`{"model":"m","stream":true,"stream\u005foptions":{"include_usage":false},"messages":[{"role":"user","content":"hi"}]}`))
	p, err := Parse(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before, err := usage.ParseRequest(usage.APIChatCompletions, body)
		if err != nil {
			return
		}
		pl, aerr := p.PlanRequest(usage.APIChatCompletions, body, nil)
		if aerr != nil {
			require.Equal(t, 400, aerr.Status)
			return
		}
		if !before.Stream || before.IncludeUsage {
			require.Nil(t, pl.Body)
			return
		}
		require.True(t, jsontest.Valid(pl.Body))
		after, err := usage.ParseRequest(usage.APIChatCompletions, pl.Body)
		require.NoError(t, err, "%s", pl.Body)
		before.IncludeUsage, before.StreamOptions = true, true
		before.View, after.View = nil, nil
		require.Equal(t, before, after)
	})
}

func TestPublicModel(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		h    map[string]string
		want string
	}{
		{name: "default header", cfg: `{}`, h: map[string]string{"x-tollgate-public-model": "gemma-3-1b-it"}, want: "gemma-3-1b-it"},
		{name: "absent", cfg: `{}`, h: map[string]string{}, want: ""},
		{name: "custom header, lower-cased", cfg: `{"public_model_header": "X-Public"}`,
			h: map[string]string{"x-public": "a", "x-tollgate-public-model": "b"}, want: "a"},
		{name: "untrusted headers are ignored", cfg: `{"trust_identity_headers": false}`,
			h: map[string]string{"x-tollgate-public-model": "gemma-3-1b-it"}, want: ""},
		{name: "control characters are ignored", cfg: `{}`, h: map[string]string{"x-tollgate-public-model": "a\tb"}, want: ""},
		{name: "too long is ignored", cfg: `{}`, h: map[string]string{"x-tollgate-public-model": strings.Repeat("m", 257)}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, mustParse(t, tt.cfg).PublicModel(headerFunc(tt.h)))
		})
	}
}

func TestPlanRequestAs(t *testing.T) {
	const body = `{"model":"/gcs/google/gemma-3-1b-it","messages":[{"role":"user","content":"Hello there"}],"max_tokens":100}`
	tests := []struct {
		name      string
		cfg       string
		public    string
		wantModel string
		wantInput float64
	}{
		{name: "no public model: the body's", cfg: `{"pricing": {"models": {"gemma-3-1b-it": {"input": 1000, "output": 4000}}, "default": {"input": 1, "output": 1}}}`,
			wantModel: "/gcs/google/gemma-3-1b-it", wantInput: 1},
		{name: "public model priced by its own name", cfg: `{"pricing": {"models": {"gemma-3-1b-it": {"input": 1000, "output": 4000}}, "default": {"input": 1, "output": 1}}}`,
			public: "gemma-3-1b-it", wantModel: "gemma-3-1b-it", wantInput: 1000},
		{name: "public model by prefix", cfg: `{"pricing": {"models": {"gemma-*": {"input": 500, "output": 4000}, "/gcs/*": {"input": 7, "output": 7}}}}`,
			public: "gemma-3-1b-it", wantModel: "gemma-3-1b-it", wantInput: 500},
		{name: "only the backend name priced: still applies", cfg: `{"pricing": {"models": {"/gcs/google/gemma-3-1b-it": {"input": 7, "output": 7}}, "default": {"input": 1, "output": 1}}}`,
			public: "gemma-3-1b-it", wantModel: "gemma-3-1b-it", wantInput: 7},
		{name: "neither priced: default", cfg: `{"pricing": {"models": {"llama": {"input": 9, "output": 9}}, "default": {"input": 1, "output": 1}}}`,
			public: "gemma-3-1b-it", wantModel: "gemma-3-1b-it", wantInput: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.cfg)
			q := quota(100_000_000, usage.MetricCost)
			pl, aerr := p.PlanRequestAs(usage.APIChatCompletions, []byte(body), q, tt.public)
			require.Nil(t, aerr)
			base, aerr := p.PlanRequest(usage.APIChatCompletions, []byte(body), quota(100_000_000, usage.MetricTotal))
			require.Nil(t, aerr)
			assert.Equal(t, tt.wantModel, pl.Model)
			assert.Equal(t, "/gcs/google/gemma-3-1b-it", pl.BodyModel)
			assert.Equal(t, tt.wantInput, pl.Price.Input)
			assert.Equal(t, base.PromptEstimate, pl.PromptEstimate, "token arithmetic unchanged")
			assert.Equal(t, base.OutputReserve, pl.OutputReserve)
			assert.Equal(t, usage.Charge(usage.MetricCost, pl.Reserved(), pl.Price), pl.Amount)
			state := map[string]string{}
			for _, kv := range FilterState(pl, usage.Usage{}, SourceNone, 0) {
				state[kv[0]] = kv[1]
			}
			assert.Equal(t, tt.wantModel, state[StateModel], "the access log shows the public model")
		})
	}
}
