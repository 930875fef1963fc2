package pick

import (
	"regexp"
	"strings"
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

func TestSessionToken(t *testing.T) {
	for _, addr := range []string{"10.0.0.1:8000", "[::1]:80"} {
		assert.Equal(t, addr, SessionEndpoint(SessionToken(addr)))
	}
	for _, bad := range []string{"", "!!!", strings.Repeat("A", 200)} {
		assert.Empty(t, SessionEndpoint(bad))
	}
	p := policy(t, `,"weights":{"session":5}`)
	h := newHost()
	h.allIdle(t)
	for i := 0; i < 10; i++ {
		d := p.Pick(h, nil, Request{Model: "m", Session: SessionEndpoint(SessionToken(b))})
		assert.Equal(t, b, d.Endpoints[0])
		assert.Equal(t, 1.0, d.Primary.Parts.Session)
	}
}
