package cache

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/table"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newCache(t *testing.T, max, ways int) (*Cache, *table.MemStore) {
	t.Helper()
	st := table.NewMemStore()
	c, err := New(st, Options{Namespace: "test", MaxEntries: max, Ways: ways})
	require.NoError(t, err)
	require.NoError(t, c.Init())
	return c, st
}

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		wantErr  bool
		sets     int
		capacity int
	}{
		{"defaults", Options{Namespace: "n", MaxEntries: 10}, false, 3, 12},
		{"one entry", Options{Namespace: "n", MaxEntries: 1}, false, 1, 1},
		{"direct mapped", Options{Namespace: "n", MaxEntries: 5, Ways: 1}, false, 5, 5},
		{"no namespace", Options{MaxEntries: 5}, true, 0, 0},
		{"zero entries", Options{Namespace: "n"}, true, 0, 0},
		{"too many ways", Options{Namespace: "n", MaxEntries: 500, Ways: 65}, true, 0, 0},
		{"too many entries", Options{Namespace: "n", MaxEntries: 1<<20 + 1}, true, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(table.NewMemStore(), tt.opts)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.sets, c.Sets())
			assert.Equal(t, tt.capacity, c.Capacity())
		})
	}
	_, err := New(nil, Options{Namespace: "n", MaxEntries: 1})
	require.Error(t, err)
}

func TestInitCreatesEverySetOnce(t *testing.T) {
	c, st := newCache(t, 40, 4)
	assert.Equal(t, 10, st.Keys())
	w := st.Writes()
	require.NoError(t, c.Init())
	assert.Equal(t, w, st.Writes(), "a second Init must not overwrite existing sets")
}

func TestGetOrClaimPutCycle(t *testing.T) {
	c, _ := newCache(t, 16, 4)
	l, err := c.GetOrClaim("k", 1, t0, time.Second)
	require.NoError(t, err)
	assert.Equal(t, Claimed, l.State)
	assert.WithinDuration(t, t0.Add(time.Second), l.ClaimExpires, 0)

	l, err = c.GetOrClaim("k", 1, t0, time.Second)
	require.NoError(t, err)
	assert.Equal(t, Claimed, l.State, "the owner sees its own claim")

	l, err = c.GetOrClaim("k", 2, t0.Add(500*time.Millisecond), time.Second)
	require.NoError(t, err)
	assert.Equal(t, Pending, l.State)

	_, _, ok, err := c.Get("k", t0)
	require.NoError(t, err)
	assert.False(t, ok, "a claim is not a value")

	require.NoError(t, c.Put("k", []byte("v1"), t0.Add(time.Minute), t0))
	l, err = c.GetOrClaim("k", 2, t0.Add(time.Second), time.Second)
	require.NoError(t, err)
	assert.Equal(t, Hit, l.State)
	assert.Equal(t, []byte("v1"), l.Value)
	assert.WithinDuration(t, t0.Add(time.Minute), l.Expires, 0)

	v, exp, ok, err := c.Get("k", t0.Add(59*time.Second))
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "v1", string(v))
	assert.WithinDuration(t, t0.Add(time.Minute), exp, 0)

	_, _, ok, err = c.Get("k", t0.Add(time.Minute))
	require.NoError(t, err)
	assert.False(t, ok, "expired at its expiry instant")

	l, err = c.GetOrClaim("k", 3, t0.Add(time.Minute), time.Second)
	require.NoError(t, err)
	assert.Equal(t, Claimed, l.State, "an expired value can be claimed")
}

func TestClaimExpiresAndRelease(t *testing.T) {
	c, _ := newCache(t, 16, 4)
	_, err := c.GetOrClaim("k", 1, t0, time.Second)
	require.NoError(t, err)
	l, err := c.GetOrClaim("k", 2, t0.Add(time.Second), time.Second)
	require.NoError(t, err)
	assert.Equal(t, Claimed, l.State, "a lapsed claim can be taken over")

	require.NoError(t, c.Release("k", 1, t0.Add(time.Second)), "releasing someone else's claim is a no-op")
	l, err = c.GetOrClaim("k", 3, t0.Add(time.Second), time.Second)
	require.NoError(t, err)
	assert.Equal(t, Pending, l.State)

	require.NoError(t, c.Release("k", 2, t0.Add(time.Second)))
	l, err = c.GetOrClaim("k", 3, t0.Add(time.Second), time.Second)
	require.NoError(t, err)
	assert.Equal(t, Claimed, l.State)
}

func TestPutPastExpiryRemoves(t *testing.T) {
	c, _ := newCache(t, 16, 4)
	require.NoError(t, c.Put("k", []byte("v"), t0.Add(time.Minute), t0))
	require.NoError(t, c.Put("k", []byte("v"), t0, t0))
	_, _, ok, err := c.Get("k", t0)
	require.NoError(t, err)
	assert.False(t, ok)
}

func TestTooLarge(t *testing.T) {
	c, _ := newCache(t, 16, 4)
	require.ErrorIs(t, c.Put("k", make([]byte, MaxValueLen+1), t0.Add(time.Minute), t0), table.ErrTooLarge)
	big := string(make([]byte, MaxKeyLen+1))
	require.ErrorIs(t, c.Put(big, nil, t0.Add(time.Minute), t0), table.ErrTooLarge)
	_, err := c.GetOrClaim(big, 1, t0, time.Second)
	require.ErrorIs(t, err, table.ErrTooLarge)
}

func TestEvictionOrder(t *testing.T) {
	// One set of three ways, so every key collides.
	c, _ := newCache(t, 3, 3)
	require.Equal(t, 1, c.Sets())
	require.NoError(t, c.Put("a", []byte("a"), t0.Add(3*time.Minute), t0))
	require.NoError(t, c.Put("b", []byte("b"), t0.Add(1*time.Minute), t0))
	_, err := c.GetOrClaim("p", 9, t0, 10*time.Second) // a claim, expiring first of all
	require.NoError(t, err)

	// Full: the value expiring first (b) goes, not the earlier-expiring claim.
	require.NoError(t, c.Put("c", []byte("c"), t0.Add(2*time.Minute), t0))
	present := func(key string, at time.Time) bool {
		_, _, ok, err := c.Get(key, at)
		require.NoError(t, err)
		return ok
	}
	assert.True(t, present("a", t0))
	assert.False(t, present("b", t0))
	assert.True(t, present("c", t0))
	l, err := c.GetOrClaim("p", 8, t0, time.Second)
	require.NoError(t, err)
	assert.Equal(t, Pending, l.State, "the claim survived")

	// Later, expired entries are dropped before anything live.
	at := t0.Add(150 * time.Second) // c (2m) expired; a (3m) live; claim lapsed
	require.NoError(t, c.Put("d", []byte("d"), at.Add(time.Minute), at))
	require.NoError(t, c.Put("e", []byte("e"), at.Add(time.Minute), at))
	assert.True(t, present("a", at))
	assert.True(t, present("d", at))
	assert.True(t, present("e", at))
}

func TestEvictionAllClaims(t *testing.T) {
	c, _ := newCache(t, 2, 2)
	_, err := c.GetOrClaim("x", 1, t0, 2*time.Second)
	require.NoError(t, err)
	_, err = c.GetOrClaim("y", 2, t0, time.Second)
	require.NoError(t, err)
	l, err := c.GetOrClaim("z", 3, t0, 3*time.Second)
	require.NoError(t, err)
	assert.Equal(t, Claimed, l.State)
	l, err = c.GetOrClaim("y", 4, t0, time.Second)
	require.NoError(t, err)
	assert.Equal(t, Claimed, l.State, "the claim expiring first was evicted")
}

func TestCorruptSetReadsEmptyAndIsRepaired(t *testing.T) {
	c, st := newCache(t, 1, 1)
	_, err := st.Set("test.0", []byte{9, 9, 9}, 0)
	require.NoError(t, err)
	_, _, ok, err := c.Get("k", t0)
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, c.Put("k", []byte("v"), t0.Add(time.Minute), t0))
	v, _, ok, err := c.Get("k", t0)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "v", string(v))
}

// conflictStore fails the first n CAS writes as if another worker won the race.
type conflictStore struct {
	*table.MemStore
	fail int
}

func (s *conflictStore) Set(key string, value []byte, cas uint32) (bool, error) {
	if s.fail > 0 && cas != 0 {
		s.fail--
		return false, nil
	}
	return s.MemStore.Set(key, value, cas)
}

func TestContention(t *testing.T) {
	st := &conflictStore{MemStore: table.NewMemStore()}
	c, err := New(st, Options{Namespace: "n", MaxEntries: 4})
	require.NoError(t, err)
	require.NoError(t, c.Init())

	st.fail = 3
	require.NoError(t, c.Put("k", []byte("v"), t0.Add(time.Minute), t0), "a few conflicts are retried")
	st.fail = table.MaxAttempts
	require.ErrorIs(t, c.Put("k2", []byte("v"), t0.Add(time.Minute), t0), table.ErrContention)
	st.fail = table.MaxAttempts
	_, err = c.GetOrClaim("k3", 1, t0, time.Second)
	require.ErrorIs(t, err, table.ErrContention)
}

// TestConcurrentClaimsOneWinner is the coalescing property: many goroutines
// (standing in for Envoy workers) miss the same key at once and exactly one
// claims it.
func TestConcurrentClaimsOneWinner(t *testing.T) {
	for round := range 20 {
		c, _ := newCache(t, 64, 4)
		const n = 16
		var wg sync.WaitGroup
		states := make([]State, n)
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				l, err := c.GetOrClaim("hot", uint64(i+1), t0, time.Second)
				states[i], errs[i] = l.State, err
			}()
		}
		close(start)
		wg.Wait()
		claimed := 0
		for i := range n {
			require.NoError(t, errs[i])
			if states[i] == Claimed {
				claimed++
			} else {
				assert.Equal(t, Pending, states[i])
			}
		}
		assert.Equal(t, 1, claimed, "round %d", round)
	}
}

// TestConcurrentPutsKeepEveryEntry checks that CAS loses no update when
// writers race on one set.
func TestConcurrentPutsKeepEveryEntry(t *testing.T) {
	c, _ := newCache(t, 8, 8) // one set holding all eight keys
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, c.Put(fmt.Sprint("k", i), []byte{byte(i)}, t0.Add(time.Minute), t0))
		}()
	}
	wg.Wait()
	for i := range 8 {
		v, _, ok, err := c.Get(fmt.Sprint("k", i), t0)
		require.NoError(t, err)
		require.True(t, ok, "k%d lost", i)
		assert.Equal(t, []byte{byte(i)}, v)
	}
}

func TestBoundedStoreKeys(t *testing.T) {
	c, st := newCache(t, 32, 4)
	for i := range 1000 {
		require.NoError(t, c.Put(fmt.Sprint("key-", i), []byte("v"), t0.Add(time.Minute), t0))
	}
	assert.Equal(t, 8, st.Keys(), "store keys never grow past the set count")
	live := 0
	for i := range 1000 {
		if _, _, ok, _ := c.Get(fmt.Sprint("key-", i), t0); ok {
			live++
		}
	}
	assert.LessOrEqual(t, live, 32)
	assert.Greater(t, live, 8)
}

func TestMemo(t *testing.T) {
	m := NewMemo[int](2)
	m.Put("a", 1, t0.Add(time.Second), t0)
	m.Put("b", 2, t0.Add(2*time.Second), t0)
	v, ok := m.Get("a", t0)
	assert.True(t, ok)
	assert.Equal(t, 1, v)
	_, ok = m.Get("a", t0.Add(time.Second))
	assert.False(t, ok, "expired at expiry")
	assert.Equal(t, 1, m.Len(), "expired entry dropped on read")

	m.Put("c", 3, t0.Add(time.Minute), t0.Add(time.Second))
	m.Put("d", 4, t0.Add(time.Minute), t0.Add(time.Second))
	assert.LessOrEqual(t, m.Len(), 2)
	v, ok = m.Get("d", t0.Add(time.Second))
	assert.True(t, ok)
	assert.Equal(t, 4, v)

	m.Put("d", 5, t0, t0.Add(time.Second))
	_, ok = m.Get("d", t0.Add(time.Second))
	assert.False(t, ok, "a past expiry deletes")
	m.Delete("c")
	_, ok = m.Get("c", t0.Add(time.Second))
	assert.False(t, ok)
	assert.LessOrEqual(t, m.Len(), 1)
	assert.NotNil(t, NewMemo[int](0))
}

// TestForeignRecordReadsAbsent: a record the cache did not write (neither a
// value nor a claim) is no answer and is claimed over.
func TestForeignRecordReadsAbsent(t *testing.T) {
	c, st := newCache(t, 4, 4)
	raw, err := table.New(st, table.Options{Namespace: "test", MaxEntries: 4, Ways: 4})
	require.NoError(t, err)
	_, err = raw.Update("k", t0.UnixNano(), func([]byte, int64) ([]byte, int64, bool) {
		return []byte("X"), t0.Add(time.Minute).UnixNano(), true
	})
	require.NoError(t, err)
	_, _, ok, err := c.Get("k", t0)
	require.NoError(t, err)
	assert.False(t, ok)
	l, err := c.GetOrClaim("k", 1, t0, time.Second)
	require.NoError(t, err)
	assert.Equal(t, Claimed, l.State)
	require.NoError(t, c.Put("k", make([]byte, MaxValueLen), t0.Add(time.Minute), t0), "a value of the maximum size fits")
}
