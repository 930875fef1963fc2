package route

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHeaderNamesAreLowered: header names take any case (shared/config.HeaderName)
// and are used lower-cased, as in every other filter.
func TestHeaderNamesAreLowered(t *testing.T) {
	p, err := Parse([]byte(`{"routing_header": "X-Team", "allowed_models_header": "X-Allowed", "models": [{"name": "m", "route": "a", "sticky_header": "X-Session"}]}`))
	require.NoError(t, err)
	require.Equal(t, "x-team", p.RoutingHeader)
	require.Equal(t, "x-allowed", p.AllowedModelsHeader)
}
