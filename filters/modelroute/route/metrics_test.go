package route

import (
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
