package route

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMetricNames(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{RequestsMetric("gemma-3-1b-it", "gemma"), "tollgate_modelroute_requests_total.model.gemma-3-1b-it.target.gemma"},
		{RequestsMetric("llama-3.1-8b", "pool/a"), "tollgate_modelroute_requests_total.model.llama-3_1-8b.target.pool_a"},
		{RequestsMetric(OtherModel, ""), "tollgate_modelroute_requests_total.model._other.target._"},
		{RewritesMetric("google/gemma", "request"), "tollgate_modelroute_rewrites_total.model.google_gemma.direction.request"},
		{RejectionsMetric(CodeModelNotFound), "tollgate_modelroute_rejections_total.reason.model_not_found"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.got)
	}
}

func TestLabelValue(t *testing.T) {
	assert.Equal(t, "_", LabelValue(""))
	assert.Equal(t, "a_b_c-d_e", LabelValue("a.b/c-d_e"))
	assert.Equal(t, "_", LabelValue("é"), "one underscore per rune")
}

// TestStatsTagsExtract applies the regexes the way Envoy does (first group
// cut from the name, second group the value) to every metric name.
func TestStatsTagsExtract(t *testing.T) {
	tests := []struct {
		name   string
		stem   string
		labels map[string]string
	}{
		{"wasmcustom." + RequestsMetric("llama-3.1", "pool-a"), "wasmcustom.tollgate_modelroute_requests_total",
			map[string]string{"model": "llama-3_1", "target": "pool-a"}},
		{"wasmcustom." + RewritesMetric("gemma", "response"), "wasmcustom.tollgate_modelroute_rewrites_total",
			map[string]string{"model": "gemma", "direction": "response"}},
		{"wasmcustom." + RejectionsMetric(CodeTooLarge), "wasmcustom.tollgate_modelroute_rejections_total",
			map[string]string{"reason": "request_too_large"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]string{}
			cut := []byte(tt.name)
			for _, st := range StatsTags() {
				re := regexp.MustCompile(st.Regex)
				m := re.FindStringSubmatchIndex(tt.name)
				if m == nil {
					continue
				}
				got[st.Name] = tt.name[m[4]:m[5]]
				for i := m[2]; i < m[3]; i++ {
					cut[i] = 0
				}
			}
			assert.Equal(t, tt.labels, got)
			assert.Equal(t, tt.stem, strings.ReplaceAll(string(cut), "\x00", ""))
		})
	}
}
