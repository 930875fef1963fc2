package policy

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHeaderNamesAreLowered: header names take any case (shared/config.HeaderName)
// and are used lower-cased, as in every other filter.
func TestHeaderNamesAreLowered(t *testing.T) {
	p, err := ParseConfig([]byte(`{"key_sources": [{"header": "X-Team"}], "quotas": [{"limit": 1, "timeUnit": "minute"}]}`))
	require.NoError(t, err)
	r := p.Rules[len(p.Rules)-1]
	require.Equal(t, "x-team", r.Keys[0].Header)
}
