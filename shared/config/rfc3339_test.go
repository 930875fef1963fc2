package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseTime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2026-01-02T15:04:05Z", time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC), true},
		{"2026-01-02T15:04:05.5Z", time.Date(2026, 1, 2, 15, 4, 5, 500_000_000, time.UTC), true},
		{"2026-01-02T15:04:05.123456789Z", time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.UTC), true},
		{"2026-01-02T15:04:05+02:00", time.Date(2026, 1, 2, 13, 4, 5, 0, time.UTC), true},
		{"2026-01-02T15:04:05-05:30", time.Date(2026, 1, 2, 20, 34, 5, 0, time.UTC), true},
		{"2024-02-29T00:00:00Z", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), true},
		{"2025-02-29T00:00:00Z", time.Time{}, false},
		{"2026-13-02T15:04:05Z", time.Time{}, false},
		{"2026-01-02T24:00:00Z", time.Time{}, false},
		{"2026-01-02T15:04:60Z", time.Time{}, false},
		{"2026-01-02 15:04:05Z", time.Time{}, false},
		{"2026-01-02T15:04:05", time.Time{}, false},
		{"2026-01-02T15:04:05.Z", time.Time{}, false},
		{"2026-01-02T15:04:05.1234567891Z", time.Time{}, false},
		{"2026-01-02T15:04:05+0200", time.Time{}, false},
		{"2026-01-02", time.Time{}, false},
		{"", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTime(tt.in)
			if !tt.ok {
				require.ErrorIs(t, err, ErrTime)
				return
			}
			require.NoError(t, err)
			assert.True(t, tt.want.Equal(got), "got %v, want %v", got, tt.want)
			std, err := time.Parse(time.RFC3339Nano, tt.in)
			require.NoError(t, err)
			assert.True(t, std.Equal(got))
		})
	}
}

// FuzzParseTime differentially checks ParseTime against time.Parse: it
// accepts nothing time.Parse refuses, and reads the same instant and
// offset from what both accept.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-01-02T15:04:05Z", "2026-01-02T15:04:05.999+23:59", "1999-12-31T23:59:59-00:00", "2026-02-30T00:00:00Z", "0000-01-01T00:00:00.1Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTime(s)
		if err != nil {
			return
		}
		std, err := time.Parse(time.RFC3339Nano, s)
		require.NoError(t, err, "ParseTime accepted %q", s)
		require.True(t, std.Equal(got), "%q: got %v, time.Parse %v", s, got, std)
		_, o1 := got.Zone()
		_, o2 := std.Zone()
		require.Equal(t, o2, o1, "%q: offset", s)
	})
}
