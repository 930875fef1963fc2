package meter

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
)

// extractTags applies the stats tags as Envoy does: every regex against the
// full name, each first group cut out, the second group the tag value.
func extractTags(t *testing.T, name string) (string, map[string]string) {
	t.Helper()
	full := "wasmcustom." + name
	tags := map[string]string{}
	var cut [][2]int
	for _, st := range StatsTags() {
		re := regexp.MustCompile(st.Regex)
		m := re.FindStringSubmatchIndex(full)
		if m == nil {
			continue
		}
		require.GreaterOrEqual(t, len(m), 6, st.Regex)
		tags[st.Name] = full[m[4]:m[5]]
		cut = append(cut, [2]int{m[2], m[3]})
	}
	var b strings.Builder
	for i := 0; i < len(full); i++ {
		skip := false
		for _, c := range cut {
			if i >= c[0] && i < c[1] {
				skip = true
			}
		}
		if !skip {
			b.WriteByte(full[i])
		}
	}
	return strings.TrimPrefix(b.String(), "wasmcustom."), tags
}

func TestStatsTags(t *testing.T) {
	l := Labels{Model: "gpt-4o-mini", App: "demo_app"}
	tm := TokenMetrics(l)
	tests := []struct {
		name     string
		stem     string
		wantTags map[string]string
	}{
		{tm[0], MetricPromptTokens, map[string]string{"model": "gpt-4o-mini", "app": "demo_app"}},
		{tm[1], MetricCompletionTokens, map[string]string{"model": "gpt-4o-mini", "app": "demo_app"}},
		{tm[2], MetricCachedTokens, map[string]string{"model": "gpt-4o-mini", "app": "demo_app"}},
		{tm[3], MetricReasoningTokens, map[string]string{"model": "gpt-4o-mini", "app": "demo_app"}},
		{RequestsMetric(l, OutcomeSettled), MetricRequests, map[string]string{"model": "gpt-4o-mini", "app": "demo_app", "outcome": "settled"}},
		{RefusedMetric(l), MetricRefused, map[string]string{"model": "gpt-4o-mini", "app": "demo_app"}},
		{EstimateErrorMetric("gpt-4o-mini"), MetricEstimateError, map[string]string{"model": "gpt-4o-mini"}},
		{KeystoreErrorsMetric(OpSettle), MetricKeystoreErrors, map[string]string{"op": "settle"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stem, tags := extractTags(t, tt.name)
			assert.Equal(t, tt.stem, stem)
			assert.Equal(t, tt.wantTags, tags)
		})
	}
}

func TestLabelValue(t *testing.T) {
	assert.Equal(t, "_", LabelValue(""))
	assert.Equal(t, "google_gemma-3_1", LabelValue("google/gemma-3.1"))
	assert.Equal(t, "a_b", LabelValue("a b"))
	assert.Len(t, LabelValue(strings.Repeat("x", 100)), 64)
	assert.Equal(t, "_x", LabelValue("éx"), "a rune outside the set becomes one _")
}

func TestLabelSet(t *testing.T) {
	s := NewLabelSet(nil, 2)
	assert.Equal(t, "a", s.Label("a"))
	assert.Equal(t, "b_c", s.Label("b.c"))
	assert.Equal(t, Other, s.Label("d"), "beyond the bound")
	assert.Equal(t, "a", s.Label("a"), "known values stay")

	f := NewLabelSet(map[string]bool{"gpt-4o": true}, 1)
	assert.Equal(t, "gpt-4o", f.Label("gpt-4o"))
	assert.Equal(t, Other, f.Label("gpt-5"))
}

func TestEstimateErrorPercent(t *testing.T) {
	tests := []struct {
		est  int64
		u    usage.Usage
		src  Source
		want uint64
		ok   bool
	}{
		{43, usage.Usage{PromptTokens: 43}, SourceUpstream, 0, true},
		{50, usage.Usage{PromptTokens: 40}, SourceUpstream, 25, true},
		{30, usage.Usage{PromptTokens: 40}, SourceUpstream, 25, true},
		{1, usage.Usage{PromptTokens: 3}, SourceUpstream, 67, true},
		{40, usage.Usage{PromptTokens: 40}, SourceEstimated, 0, false},
		{40, usage.Usage{}, SourceUpstream, 0, false},
	}
	for _, tt := range tests {
		got, ok := EstimateErrorPercent(tt.est, tt.u, tt.src)
		assert.Equal(t, tt.ok, ok)
		assert.Equal(t, tt.want, got)
	}
}

func TestFilterState(t *testing.T) {
	pl := &Plan{Model: "gpt-4o", Amount: 300}
	fs := FilterState(pl, usage.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15, CachedTokens: 2, ReasoningTokens: 1}, SourceUpstream, 15)
	assert.Equal(t, [][2]string{
		{StatePromptTokens, "10"}, {StateCompletionTokens, "5"}, {StateTotalTokens, "15"}, {StateCachedTokens, "2"},
		{StateReasoningTokens, "1"}, {StateReserved, "300"}, {StateCharged, "15"}, {StateSource, "upstream"}, {StateModel, "gpt-4o"},
	}, fs)
}

func TestOutcomesAndOps(t *testing.T) {
	assert.Len(t, Outcomes(), 8)
	assert.Equal(t, []string{"reserve", "settle", "release", "consume"}, Ops())
}
