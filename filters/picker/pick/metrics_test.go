package pick

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStatsTagsExtractLabels(t *testing.T) {
	tests := []struct {
		name, tag, value string
	}{
		{"wasmcustom." + EndpointMetric("picks", "10.0.0.1:8000"), "endpoint", "10_0_0_1_8000"},
		{"wasmcustom." + EndpointMetric("kv_cache_permille", "[::1]:80"), "endpoint", "__1_80"},
		{"wasmcustom." + DecisionMetric(ReasonShed), "reason", "shed"},
		{"wasmcustom." + ScoreMetric("prefix"), "part", "prefix"},
	}
	tags := StatsTags()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			matched := 0
			for _, st := range tags {
				m := regexp.MustCompile(st.Regex).FindStringSubmatch(tc.name)
				if m == nil {
					continue
				}
				matched++
				require.Len(t, m, 3)
				assert.Equal(t, tc.tag, st.Name)
				assert.Equal(t, tc.value, m[2])
			}
			assert.Equal(t, 1, matched, "exactly one tag applies")
		})
	}
}
