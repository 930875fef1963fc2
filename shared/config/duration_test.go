package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/reqview"
)

func TestDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{`{"timeout": "500ms"}`, 500 * time.Millisecond, true},
		{`{"timeout": "1m30s"}`, 90 * time.Second, true},
		{`{}`, 0, true},
		{`{"timeout": 500}`, 0, false},
		{`{"timeout": "500"}`, 0, false},
		{`{"timeout": "soon"}`, 0, false},
		{`{"timeout": null}`, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			var c durationConfig
			err := Decode([]byte(tc.in), &c)
			if !tc.ok {
				require.ErrorIs(t, err, ErrDuration)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, time.Duration(c.Timeout))
		})
	}
	b, err := Duration(1500 * time.Millisecond).MarshalJSON()
	require.NoError(t, err)
	assert.Equal(t, `"1.5s"`, string(b))
}

func TestDurationWithin(t *testing.T) {
	v, err := Duration(0).Within("x", time.Second, time.Millisecond, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, time.Second, v, "unset takes the default")
	_, err = Duration(2*time.Minute).Within("x.timeout", time.Second, time.Millisecond, time.Minute)
	assert.ErrorContains(t, err, "x.timeout 2m0s: want 1ms to 1m0s")
	_, err = Duration(-time.Second).Within("x", time.Second, time.Millisecond, time.Minute)
	assert.Error(t, err)
}

type durationConfig struct {
	Timeout Duration `json:"timeout"`
}

func (c *durationConfig) DecodeConfig(v reqview.Value, path string) error {
	return Object(v, path, c)
}

func (c *durationConfig) DecodeField(key string, v reqview.Value, path string) (bool, error) {
	if key != "timeout" {
		return false, nil
	}
	return true, c.Timeout.DecodeConfig(v, path)
}
