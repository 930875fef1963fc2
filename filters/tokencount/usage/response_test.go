package usage

import (
	"errors"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tollgate/tollgate/internal/jsontest"
)

func TestFromJSONFixtures(t *testing.T) {
	var fx []responseFixture
	readJSON(t, "responses/manifest.json", &fx)
	require.NotEmpty(t, fx)
	for _, f := range fx {
		t.Run(f.File, func(t *testing.T) {
			u, ok := FromJSON(apiByName(t, f.API), readFile(t, "responses/"+f.File))
			if f.Usage == nil {
				assert.False(t, ok)
				assert.Equal(t, Usage{}, u)
				return
			}
			require.True(t, ok)
			assert.Equal(t, f.Usage.usage(), u)
		})
	}
}

func TestFromJSONCases(t *testing.T) {
	tests := []struct {
		name string
		api  API
		body string
		want Usage
		ok   bool
	}{
		{"total computed when absent", APIChatCompletions, `{"usage":{"prompt_tokens":3,"completion_tokens":4}}`, Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}, true},
		{"usage null", APIChatCompletions, `{"usage":null}`, Usage{}, false},
		{"not json", APIChatCompletions, `<html>`, Usage{}, false},
		{"negative is invalid", APIEmbeddings, `{"usage":{"prompt_tokens":-3,"total_tokens":-3}}`, Usage{Invalid: true}, true},
		{"absurd is invalid", APIChatCompletions, `{"usage":{"prompt_tokens":1e18,"completion_tokens":2}}`, Usage{CompletionTokens: 2, TotalTokens: 2, Invalid: true}, true},
		{"fraction is invalid", APIChatCompletions, `{"usage":{"prompt_tokens":1.5,"completion_tokens":2}}`, Usage{CompletionTokens: 2, TotalTokens: 2, Invalid: true}, true},
		{"string is invalid", APIChatCompletions, `{"usage":{"prompt_tokens":"7","completion_tokens":2}}`, Usage{CompletionTokens: 2, TotalTokens: 2, Invalid: true}, true},
		{"usage not an object is invalid", APIChatCompletions, `{"usage":12}`, Usage{Invalid: true}, true},
		{"integral float and null details accepted", APIChatCompletions, `{"usage":{"prompt_tokens":4.0,"completion_tokens":2,"prompt_tokens_details":null}}`, Usage{PromptTokens: 4, CompletionTokens: 2, TotalTokens: 6}, true},
		{"anthropic negative output is invalid", APIAnthropicMessages, `{"usage":{"input_tokens":9,"output_tokens":-2}}`, Usage{PromptTokens: 9, TotalTokens: 9, Invalid: true}, true},
		{"anthropic without cache fields", APIAnthropicMessages, `{"usage":{"input_tokens":9,"output_tokens":2}}`, Usage{PromptTokens: 9, CompletionTokens: 2, TotalTokens: 11}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, ok := FromJSON(tc.api, []byte(tc.body))
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, u)
		})
	}
	sum := Usage{PromptTokens: 1, TotalTokens: 1}.Add(Usage{CompletionTokens: 2, TotalTokens: 2, Estimated: true})
	assert.Equal(t, Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3, Estimated: true}, sum)
}

func TestCharge(t *testing.T) {
	u := Usage{PromptTokens: 1000, CompletionTokens: 200, TotalTokens: 1200, CachedTokens: 400, CacheWriteTokens: 100, ReasoningTokens: 50}
	price := Price{Input: 2.5, CachedInput: 1.25, CacheWrite: 3.75, Output: 10}
	tests := []struct {
		m    Metric
		p    Price
		want int64
	}{
		{MetricTotal, price, 1200},
		{MetricPrompt, price, 1000},
		{MetricCompletion, price, 200},
		// 500 uncached × 2.5 + 400 × 1.25 + 100 × 3.75 + 200 × 10
		{MetricCost, price, 1250 + 500 + 375 + 2000},
		// unset cache prices fall back to the input price
		{MetricCost, Price{Input: 1, Output: 2}, 1000 + 400},
		{MetricCost, Price{Input: 0.15, Output: 0.6}, int64(math.Ceil(1000*0.15 + 200*0.6))},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, Charge(tc.m, u, tc.p), "%s %+v", tc.m, tc.p)
	}
	assert.Equal(t, int64(30), Charge(MetricTotal, Usage{PromptTokens: 10, CompletionTokens: 20}, price), "total from parts")
	assert.Equal(t, int64(math.MaxInt64), Charge(MetricCost, Usage{CompletionTokens: math.MaxInt64}, Price{Output: 1e6}))
}

func TestMetricAndPricing(t *testing.T) {
	for _, m := range []Metric{MetricTotal, MetricPrompt, MetricCompletion, MetricCost} {
		got, err := ParseMetric(m.String())
		require.NoError(t, err)
		assert.Equal(t, m, got)
	}
	m, err := ParseMetric("")
	require.NoError(t, err)
	assert.Equal(t, MetricTotal, m)
	_, err = ParseMetric("dollars")
	require.Error(t, err)

	p := Pricing{
		Models: map[string]Price{
			"gpt-4o":       {Input: 2.5, Output: 10},
			"gpt-4o-mini*": {Input: 0.15, Output: 0.6},
			"gpt-4o*":      {Input: 5, Output: 15},
		},
		Default: Price{Input: 1, Output: 1},
	}
	require.NoError(t, p.Validate())
	assert.Equal(t, 2.5, p.For("gpt-4o").Input, "exact match first")
	assert.Equal(t, 0.15, p.For("gpt-4o-mini-2024-07-18").Input, "longest prefix")
	assert.Equal(t, 5.0, p.For("gpt-4o-2024-08-06").Input)
	assert.Equal(t, 1.0, p.For("llama").Input, "default")
	for _, tt := range []struct {
		model string
		input float64
		ok    bool
	}{{"gpt-4o", 2.5, true}, {"gpt-4o-mini-x", 0.15, true}, {"llama", 1, false}} {
		pr, ok := p.Lookup(tt.model)
		assert.Equal(t, tt.input, pr.Input, tt.model)
		assert.Equal(t, tt.ok, ok, tt.model)
	}
	assert.Error(t, Pricing{Default: Price{Input: -1}}.Validate())
	assert.Error(t, Pricing{Models: map[string]Price{"x": {Output: math.NaN()}}}.Validate())
}

func TestIncludeUsage(t *testing.T) {
	tests := []struct {
		name    string
		api     API
		body    string
		asked   bool
		changed bool
		param   string // error param, "-" for no error
	}{
		{"no stream_options", APIChatCompletions, `{"model":"m","stream":true,"messages":[]}`, false, true, "-"},
		{"null stream_options", APIChatCompletions, `{"stream":true,"stream_options":null}`, false, true, "-"},
		{"include_usage false", APIChatCompletions, `{"stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":true}}`, false, true, "-"},
		{"client asked", APIChatCompletions, `{"stream":true,"stream_options":{"include_usage":true}}`, true, false, "-"},
		{"not streamed", APIChatCompletions, `{"stream":false}`, false, false, "-"},
		{"completions", APICompletions, `{"stream":true,"prompt":"x"}`, false, true, "-"},
		{"embeddings untouched", APIEmbeddings, `{"stream":true}`, false, false, "-"},
		{"anthropic untouched", APIAnthropicMessages, `{"stream":true}`, false, false, "-"},
		{"bad stream_options", APIChatCompletions, `{"stream":true,"stream_options":[1]}`, false, false, "stream_options"},
		{"bad include_usage", APIChatCompletions, `{"stream":true,"stream_options":{"include_usage":"yes"}}`, false, false, "stream_options.include_usage"},
		{"bad stream", APIChatCompletions, `{"stream":1}`, false, false, "stream"},
		{"not json", APIChatCompletions, `{"stream":tru`, false, false, ""},
		{"duplicate stream_options", APIChatCompletions, `{"stream":true,"stream_options":{"include_usage":true},"stream_options":{}}`, false, false, ""},
		{"duplicate include_usage", APIChatCompletions, `{"stream":true,"stream_options":{"include_usage":true,"include_usage":false}}`, false, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, asked, err := IncludeUsage(tc.api, []byte(tc.body))
			if tc.param != "-" {
				var re *RequestError
				require.True(t, errors.As(err, &re), "error %v", err)
				assert.Equal(t, tc.param, re.Param)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.asked, asked)
			assert.Equal(t, tc.changed, string(out) != tc.body)
			if tc.changed {
				require.True(t, jsontest.Valid(out))
				assert.True(t, jsontest.Get(out, "stream_options.include_usage").Bool())
				// everything else survives
				assert.Equal(t, jsontest.Get([]byte(tc.body), "model").Raw(), jsontest.Get(out, "model").Raw())
				assert.Equal(t, jsontest.Get([]byte(tc.body), "stream_options.continuous_usage_stats").Raw(), jsontest.Get(out, "stream_options.continuous_usage_stats").Raw())
			}
		})
	}
}

func FuzzIncludeUsage(f *testing.F) {
	f.Add([]byte(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	f.Add([]byte(`{"stream":true,"stream_options":{"include_usage":false}}`))
	f.Add([]byte(`{"stream":true,"stream_options":{}}`))
	f.Add(readFile(f, "requests/chat_simple.json"))
	f.Fuzz(func(t *testing.T, body []byte) {
		out, asked, err := IncludeUsage(APIChatCompletions, body)
		if err != nil {
			require.ErrorIs(t, err, ErrMalformedRequest)
			return
		}
		require.True(t, jsontest.Valid(out))
		if jsontest.Get(body, "stream").Bool() {
			require.True(t, jsontest.Get(out, "stream_options.include_usage").Bool())
			require.Equal(t, jsontest.Get(body, "stream_options.include_usage").Bool(), asked)
			// The rewritten body still parses the same way.
			a, errA := ParseRequest(APIChatCompletions, body)
			b, errB := ParseRequest(APIChatCompletions, out)
			require.Equal(t, errA == nil, errB == nil)
			if errA == nil {
				a.IncludeUsage, a.StreamOptions = true, true
				a.View, b.View = nil, nil
				require.Equal(t, a, b)
			}
		} else {
			require.Equal(t, body, out)
		}
	})
}
