package meter

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHeaderNamesAreLowered: header names take any case (shared/config.HeaderName)
// and are used lower-cased, as in every other filter ("X-Team" used to be refused here).
func TestHeaderNamesAreLowered(t *testing.T) {
	p, err := Parse([]byte(`{"public_model_header": "X-Public", "rate_limit_headers": {"limit": "X-Limit"},
		"static_quota": {"header": "X-Team", "limit": 10, "time_unit": "hour"}}`))
	require.NoError(t, err)
	require.Equal(t, "x-team", p.Static.Header)
	require.Equal(t, "x-public", p.PublicModelHeader)
	require.Equal(t, "x-limit", p.Headers.Limit)
}
