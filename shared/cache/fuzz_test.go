package cache

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/table"
)

// FuzzCacheOps runs a random sequence of operations on a tiny cache and
// checks its invariants: no errors, a value read back is the last one put,
// and the store never holds more keys than sets.
func FuzzCacheOps(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{3, 3, 3, 0, 0, 0, 1, 1, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		st := table.NewMemStore()
		c, err := New(st, Options{Namespace: "f", MaxEntries: 6, Ways: 2})
		require.NoError(t, err)
		require.NoError(t, c.Init())
		last := map[string]byte{}
		now := t0
		for i, op := range ops {
			key := string(rune('a' + op%5))
			now = now.Add(time.Duration(op>>5) * time.Second)
			switch (op >> 3) % 4 {
			case 0:
				require.NoError(t, c.Put(key, []byte{byte(i)}, now.Add(time.Hour), now))
				last[key] = byte(i)
			case 1:
				l, err := c.GetOrClaim(key, uint64(op%3)+1, now, time.Second)
				require.NoError(t, err)
				if l.State == Hit {
					require.Equal(t, []byte{last[key]}, l.Value)
				}
			case 2:
				require.NoError(t, c.Release(key, uint64(op%3)+1, now))
			case 3:
				if v, _, ok, err := c.Get(key, now); ok {
					require.NoError(t, err)
					require.Equal(t, []byte{last[key]}, v)
				}
			}
		}
		require.LessOrEqual(t, st.Keys(), c.Sets())
	})
}
