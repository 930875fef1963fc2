package policy

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHeaderNamesAreLowered: header names take any case (shared/config.HeaderName)
// and are used lower-cased, as in every other filter.
func TestHeaderNamesAreLowered(t *testing.T) {
	p, err := Parse([]byte(`{"product_header": "X-Team", "app_header": "X-App",
		"default": {"threat": {"headers": ["X-Forwarded-User"]}}}`))
	require.NoError(t, err)
	require.Equal(t, "x-team", p.ProductHeader)
	require.Equal(t, "x-app", p.AppHeader)
	_, err = Parse([]byte(`{"product_header": "X Team", "default": {"threat": {"json_fields": ["user"]}}}`))
	require.ErrorContains(t, err, "product_header")
}
