package table

import (
	"encoding/binary"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTable(t *testing.T, store Store, maxEntries, ways int) *Table {
	t.Helper()
	tb, err := New(store, Options{Namespace: "test", MaxEntries: maxEntries, Ways: ways})
	require.NoError(t, err)
	require.NoError(t, tb.Init())
	return tb
}

// put stores value for id until expires.
func put(t *testing.T, tb *Table, id string, value string, expires, now int64) bool {
	t.Helper()
	ev, err := tb.Update(id, now, func([]byte, int64) ([]byte, int64, bool) { return []byte(value), expires, true })
	require.NoError(t, err)
	return ev
}

func get(t *testing.T, tb *Table, id string, now int64) (string, bool) {
	t.Helper()
	v, _, ok, err := tb.Get(id, now)
	require.NoError(t, err)
	return string(v), ok
}

func TestNewValidates(t *testing.T) {
	store := NewMemStore()
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"default ways", Options{Namespace: "n", MaxEntries: 10}, true},
		{"no namespace", Options{MaxEntries: 10}, false},
		{"zero entries", Options{Namespace: "n"}, false},
		{"too many entries", Options{Namespace: "n", MaxEntries: 1<<20 + 1}, false},
		{"bad ways", Options{Namespace: "n", MaxEntries: 10, Ways: 65}, false},
		{"value bound", Options{Namespace: "n", MaxEntries: 10, MaxValueLen: 1 << 20}, true},
		{"value bound too large", Options{Namespace: "n", MaxEntries: 10, MaxValueLen: 1<<20 + 1}, false},
		{"negative value bound", Options{Namespace: "n", MaxEntries: 10, MaxValueLen: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(store, tt.opts)
			assert.Equal(t, tt.ok, err == nil, "%v", err)
		})
	}
	_, err := New(nil, Options{Namespace: "n", MaxEntries: 1})
	assert.Error(t, err)
}

func TestSizing(t *testing.T) {
	store := NewMemStore()
	tb := newTable(t, store, 10, 4)
	assert.Equal(t, 3, tb.Sets())
	assert.Equal(t, 12, tb.Capacity())
	assert.Equal(t, 3, store.Keys(), "Init creates every set")
	tb = newTable(t, store, 2, 4)
	assert.Equal(t, 1, tb.Sets())
	assert.Equal(t, 2, tb.Capacity(), "ways shrink to MaxEntries")
}

func TestInitKeepsExistingSets(t *testing.T) {
	store := NewMemStore()
	a := newTable(t, store, 4, 4)
	put(t, a, "x", "1", 100, 0)
	b := newTable(t, store, 4, 4) // a second worker starting later
	v, ok := get(t, b, "x", 0)
	assert.True(t, ok)
	assert.Equal(t, "1", v)
}

func TestUpdateAndExpiry(t *testing.T) {
	tb := newTable(t, NewMemStore(), 8, 4)
	_, ok := get(t, tb, "a", 0)
	assert.False(t, ok)

	put(t, tb, "a", "one", 100, 0)
	v, ok := get(t, tb, "a", 99)
	assert.True(t, ok)
	assert.Equal(t, "one", v)
	_, ok = get(t, tb, "a", 100)
	assert.False(t, ok, "a record reads as absent from its expiry on")

	// The mutator sees nil for an expired record.
	var seen []byte
	_, err := tb.Update("a", 150, func(old []byte, _ int64) ([]byte, int64, bool) {
		seen = old
		return []byte("two"), 300, true
	})
	require.NoError(t, err)
	assert.Nil(t, seen)
	v, _ = get(t, tb, "a", 150)
	assert.Equal(t, "two", v)

	// write=false changes nothing; an expiry in the past deletes.
	_, err = tb.Update("a", 150, func(old []byte, _ int64) ([]byte, int64, bool) { return nil, 0, false })
	require.NoError(t, err)
	v, _ = get(t, tb, "a", 150)
	assert.Equal(t, "two", v)
	put(t, tb, "a", "gone", 150, 150)
	_, ok = get(t, tb, "a", 150)
	assert.False(t, ok)
}

func TestEvictionPrefersExpiredThenEarliest(t *testing.T) {
	tb := newTable(t, NewMemStore(), 2, 2) // one set of two ways
	assert.False(t, put(t, tb, "a", "a", 100, 0))
	assert.False(t, put(t, tb, "b", "b", 200, 0))
	// Full of live records: the one expiring first goes.
	assert.True(t, put(t, tb, "c", "c", 300, 0))
	_, ok := get(t, tb, "a", 0)
	assert.False(t, ok)
	_, ok = get(t, tb, "b", 0)
	assert.True(t, ok)
	// Once b has expired, a new record takes its place without evicting c.
	assert.False(t, put(t, tb, "d", "d", 400, 250))
	_, ok = get(t, tb, "c", 250)
	assert.True(t, ok)
	// Rewriting an existing record never evicts.
	assert.False(t, put(t, tb, "c", "c2", 500, 250))
}

func TestExpiryIsVisible(t *testing.T) {
	tb := newTable(t, NewMemStore(), 8, 4)
	put(t, tb, "a", "one", 100, 0)
	_, exp, ok, err := tb.Get("a", 10)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, int64(100), exp)

	var seen int64 = -1
	_, err = tb.Update("a", 10, func(old []byte, oldExpires int64) ([]byte, int64, bool) {
		seen = oldExpires
		return nil, 0, false
	})
	require.NoError(t, err)
	assert.Equal(t, int64(100), seen, "the mutator sees the live record's expiry")
	_, err = tb.Update("a", 100, func(old []byte, oldExpires int64) ([]byte, int64, bool) {
		seen = oldExpires
		return nil, 0, false
	})
	require.NoError(t, err)
	assert.Equal(t, int64(0), seen, "an expired record has no expiry")
}

func TestEvictionSparesProtected(t *testing.T) {
	tb, err := New(NewMemStore(), Options{Namespace: "n", MaxEntries: 3, Ways: 3,
		Protect: func(v []byte) bool { return len(v) > 0 && v[0] == '!' }})
	require.NoError(t, err)
	require.NoError(t, tb.Init())
	put(t, tb, "p", "!", 50, 0) // protected, expiring first of all
	put(t, tb, "a", "a", 300, 0)
	put(t, tb, "b", "b", 100, 0)
	// Full: the unprotected record expiring first (b) goes, not p.
	assert.True(t, put(t, tb, "c", "c", 200, 0))
	for id, want := range map[string]bool{"p": true, "a": true, "b": false, "c": true} {
		_, ok := get(t, tb, id, 0)
		assert.Equal(t, want, ok, id)
	}

	// Nothing but protected records: the one expiring first goes.
	tb, err = New(NewMemStore(), Options{Namespace: "m", MaxEntries: 2, Ways: 2,
		Protect: func([]byte) bool { return true }})
	require.NoError(t, err)
	put(t, tb, "x", "x", 200, 0)
	put(t, tb, "y", "y", 100, 0)
	assert.True(t, put(t, tb, "z", "z", 300, 0))
	_, ok := get(t, tb, "y", 0)
	assert.False(t, ok)
	_, ok = get(t, tb, "x", 0)
	assert.True(t, ok)
}

func TestBoundedStoreKeys(t *testing.T) {
	store := NewMemStore()
	tb := newTable(t, store, 32, 4)
	live := 0
	for i := range 1000 {
		put(t, tb, "id-"+strconv.Itoa(i), "v", 100, 0)
	}
	for i := range 1000 {
		if _, ok := get(t, tb, "id-"+strconv.Itoa(i), 0); ok {
			live++
		}
	}
	assert.Equal(t, 8, store.Keys(), "store keys never grow past the set count")
	assert.LessOrEqual(t, live, 32)
	assert.Greater(t, live, 8)
}

func TestCorruptSetReadsEmpty(t *testing.T) {
	store := NewMemStore()
	tb := newTable(t, store, 1, 1)
	_, err := store.Set(tb.SetOf("a"), []byte{9, 9, 9}, 0)
	require.NoError(t, err)
	_, ok := get(t, tb, "a", 0)
	assert.False(t, ok)
	put(t, tb, "a", "ok", 10, 0)
	v, ok := get(t, tb, "a", 0)
	assert.True(t, ok)
	assert.Equal(t, "ok", v)
}

func TestLimits(t *testing.T) {
	tb := newTable(t, NewMemStore(), 4, 4)
	long := string(make([]byte, MaxIDLen+1))
	_, err := tb.Update(long, 0, func([]byte, int64) ([]byte, int64, bool) { return nil, 1, true })
	assert.ErrorIs(t, err, ErrTooLarge)
	_, err = tb.Update("a", 0, func([]byte, int64) ([]byte, int64, bool) { return make([]byte, DefaultMaxValueLen+1), 1, true })
	assert.ErrorIs(t, err, ErrTooLarge)

	big, err := New(NewMemStore(), Options{Namespace: "n", MaxEntries: 4, MaxValueLen: 2 * DefaultMaxValueLen})
	require.NoError(t, err)
	_, err = big.Update("a", 0, func([]byte, int64) ([]byte, int64, bool) { return make([]byte, DefaultMaxValueLen+1), 1, true })
	assert.NoError(t, err, "Options.MaxValueLen raises the bound")
	_, err = big.Update("a", 0, func([]byte, int64) ([]byte, int64, bool) { return make([]byte, 2*DefaultMaxValueLen+1), 1, true })
	assert.ErrorIs(t, err, ErrTooLarge)
}

// racyStore fails every CAS write, as if another worker always won.
type racyStore struct{ *MemStore }

func (racyStore) Set(string, []byte, uint32) (bool, error) { return false, nil }

// brokenStore fails every call.
type brokenStore struct{}

func (brokenStore) Get(string) ([]byte, uint32, bool, error) {
	return nil, 0, false, errors.New("boom")
}
func (brokenStore) Set(string, []byte, uint32) (bool, error) { return false, errors.New("boom") }

func TestContentionAndErrors(t *testing.T) {
	tb, err := New(racyStore{NewMemStore()}, Options{Namespace: "n", MaxEntries: 4})
	require.NoError(t, err)
	calls := 0
	_, err = tb.Update("a", 0, func([]byte, int64) ([]byte, int64, bool) { calls++; return []byte("x"), 1, true })
	assert.ErrorIs(t, err, ErrContention)
	assert.Equal(t, MaxAttempts, calls, "the mutator runs once per attempt")

	tb, err = New(brokenStore{}, Options{Namespace: "n", MaxEntries: 4})
	require.NoError(t, err)
	assert.Error(t, tb.Init())
	_, _, _, err = tb.Get("a", 0)
	assert.Error(t, err)
	_, err = tb.Update("a", 0, func([]byte, int64) ([]byte, int64, bool) { return []byte("x"), 1, true })
	assert.Error(t, err)
}

// TestConcurrentIncrementsExact has many goroutines (standing for workers
// with their own handles) increment counters sharing sets: CAS retries must
// lose no increment.
func TestConcurrentIncrementsExact(t *testing.T) {
	store := NewMemStore()
	const workers, each, ids = 16, 200, 3
	var wg sync.WaitGroup
	for w := range workers {
		tb := newTable(t, store, 4, 4) // every counter in one set: maximal contention
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := "c" + strconv.Itoa((w+i)%ids)
				_, err := tb.Update(id, 0, func(old []byte, _ int64) ([]byte, int64, bool) {
					var n uint64
					if len(old) == 8 {
						n = binary.LittleEndian.Uint64(old)
					}
					return binary.LittleEndian.AppendUint64(nil, n+1), 1 << 40, true
				})
				if !assert.NoError(t, err) {
					return
				}
			}
		}()
	}
	wg.Wait()
	tb := newTable(t, store, 4, 4)
	var total uint64
	for i := range ids {
		v, _, ok, err := tb.Get("c"+strconv.Itoa(i), 0)
		require.NoError(t, err)
		require.True(t, ok)
		total += binary.LittleEndian.Uint64(v)
	}
	assert.Equal(t, uint64(workers*each), total)
}

func FuzzDecode(f *testing.F) {
	f.Add(encode([]record{{id: "a", expires: 5, value: []byte("v")}, {id: "", expires: -1}}))
	f.Add([]byte{setVersion, 1})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := decode(b, nil)
		if err != nil {
			return
		}
		again, err := decode(encode(rs), nil)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if len(again) != len(rs) {
			t.Fatalf("round trip changed %d records to %d", len(rs), len(again))
		}
		for i := range rs {
			if rs[i].id != again[i].id || rs[i].expires != again[i].expires || string(rs[i].value) != string(again[i].value) {
				t.Fatalf("record %d changed", i)
			}
		}
	})
}

func TestScanSeesLiveRecordsOfEachSet(t *testing.T) {
	tb, err := New(NewMemStore(), Options{Namespace: "scan", MaxEntries: 16, Ways: 4})
	require.NoError(t, err)
	require.NoError(t, tb.Init())
	put := func(id string, expires int64) {
		_, err := tb.Update(id, 0, func([]byte, int64) ([]byte, int64, bool) { return []byte("v" + id), expires, true })
		require.NoError(t, err)
	}
	put("a", 100)
	put("b", 100)
	put("c", 5)
	seen := map[string]string{}
	for i := range tb.Sets() {
		require.NoError(t, tb.Scan(i, 10, func(id string, v []byte, _ int64) { seen[id] = string(v) }))
	}
	require.Equal(t, map[string]string{"a": "va", "b": "vb"}, seen, "the expired record is not seen")
	require.Error(t, tb.Scan(tb.Sets(), 10, func(string, []byte, int64) {}))
}
