package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStopAndRestart(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		kept bool
	}{
		{"without persistence the data is gone", Options{}, false},
		{"append-only keeps every acknowledged write", Options{AppendOnly: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := StartWith(t, tt.opts)
			c := s.Client(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, c.Set(ctx, "k", "v", 0).Err())

			s.Stop()
			assert.Error(t, c.Ping(ctx).Err(), "a stopped server refuses connections")
			s.Stop() // idempotent

			s.Restart(t)
			require.NoError(t, c.Ping(ctx).Err(), "the client reconnects to the same address")
			v, err := c.Get(ctx, "k").Result()
			if tt.kept {
				require.NoError(t, err)
				assert.Equal(t, "v", v)
			} else {
				assert.Error(t, err)
			}
		})
	}
}
