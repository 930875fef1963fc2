package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHeaderName(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"x-team", "x-team", true},
		{"X-Team", "x-team", true},
		{"X_TEAM.v2", "x_team.v2", true},
		{"a!#$%&'*+-.^_`|~9", "a!#$%&'*+-.^_`|~9", true},
		{strings.Repeat("a", MaxHeaderNameLen), strings.Repeat("a", MaxHeaderNameLen), true},
		{"", "", false},
		{strings.Repeat("a", MaxHeaderNameLen+1), "", false},
		{":path", "", false},
		{"x team", "", false},
		{"x-team\r\n", "", false},
		{"x:team", "", false},
		{"é", "", false},
		{"x/team", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := HeaderName("some.header", tc.in)
			if !tc.ok {
				require.ErrorIs(t, err, ErrHeaderName)
				assert.Contains(t, err.Error(), "some.header")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func FuzzHeaderName(f *testing.F) {
	f.Add("X-Team")
	f.Add(":authority")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := HeaderName("h", s)
		if err != nil {
			return
		}
		if got != strings.ToLower(s) || got == "" || strings.ContainsAny(got, " :\r\n\t\x00") {
			t.Fatalf("HeaderName(%q) = %q", s, got)
		}
		if again, err := HeaderName("h", got); err != nil || again != got {
			t.Fatalf("not idempotent on %q: %q, %v", got, again, err)
		}
	})
}
