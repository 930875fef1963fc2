package policy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/config"
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

// TestModerationDurations: timeout and cache_ttl are duration strings;
// "0s" turns the verdict cache off, bare numbers are refused.
func TestModerationDurations(t *testing.T) {
	tests := []struct {
		cfg     string
		timeout time.Duration
		ttl     time.Duration
		err     string
	}{
		{`{"cluster": "m", "fail": "open"}`, time.Second, 5 * time.Minute, ""},
		{`{"cluster": "m", "fail": "open", "timeout": "250ms", "cache_ttl": "10s"}`, 250 * time.Millisecond, 10 * time.Second, ""},
		{`{"cluster": "m", "fail": "open", "cache_ttl": "0s"}`, time.Second, 0, ""},
		{`{"cluster": "m", "fail": "open", "cache_ttl": "500ms"}`, 0, 0, "cache_ttl"},
		{`{"cluster": "m", "fail": "open", "cache_ttl": 300}`, 0, 0, "not a duration"},
		{`{"cluster": "m", "fail": "open", "timeout": "2m"}`, 0, 0, "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.cfg, func(t *testing.T) {
			var c ModerationConfig
			err := config.Decode([]byte(tc.cfg), &c)
			var m *Moderation
			if err == nil {
				m, err = compileModeration(&c)
			}
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.timeout, m.Timeout)
			require.Equal(t, tc.ttl, m.CacheTTL)
		})
	}
}
