package pick

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHeaderNamesAreLowered: header names take any case (shared/config.HeaderName)
// and are used lower-cased, as in every other filter.
func TestHeaderNamesAreLowered(t *testing.T) {
	p, err := Parse([]byte(`{"scrape_cluster": "s", "destination_header": "X-Team", "reason_header": "X-Why",
		"pools": [{"name": "p", "endpoints": [{"address": "10.0.0.1:80"}]}]}`))
	require.NoError(t, err)
	require.Equal(t, "x-team", p.DestinationHeader)
	require.Equal(t, "x-why", p.ReasonHeader)
}
