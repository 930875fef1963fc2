package policy

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHeaderNamesAreLowered: header names take any case (shared/config.HeaderName)
// and are used lower-cased, as in every other filter.
func TestHeaderNamesAreLowered(t *testing.T) {
	p, err := ParseConfig([]byte(`{"key_sources": [{"header": "X-Team"}], "keystore": {"headers": {"X-Tenant": "a"}}}`))
	require.NoError(t, err)
	require.Equal(t, "x-team", p.Sources[0].Header)
	_, err = ParseConfig([]byte(`{"key_sources": [{"header": "X Team"}]}`))
	require.ErrorContains(t, err, "key_sources[0].header")
}
