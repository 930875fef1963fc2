package ledger

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/countertest"
	"github.com/tollgate/tollgate/counter/memstore"
	"github.com/tollgate/tollgate/shared/table"
	"github.com/tollgate/tollgate/window"
)

func newTable(t testing.TB, store table.Store, maxEntries int) *table.Table {
	t.Helper()
	tb, err := table.New(store, table.Options{Namespace: "q", MaxEntries: maxEntries})
	require.NoError(t, err)
	require.NoError(t, tb.Init())
	return tb
}

// TestContract runs the counter engine's backend contract suite against the
// shared-data ledger: every instance opened is another worker's handle on
// the same store, as Envoy's workers share one vm_id's shared data.
func TestContract(t *testing.T) {
	countertest.Run(t, countertest.Harness{
		Shared: true,
		Storage: func(t *testing.T, _ func() time.Time) func() counter.Backend {
			store := table.NewMemStore()
			return func() counter.Backend { return NewCounters(newTable(t, store, 4096)) }
		},
	})
}

// TestCorruptRecordReadsEmpty: a record that does not decode is a fresh
// counter, never a wedged one.
func TestCorruptRecordReadsEmpty(t *testing.T) {
	store := table.NewMemStore()
	tb := newTable(t, store, 16)
	_, err := tb.Update(counterID("app/p//requests|calendar/1minute"), 0, func([]byte, int64) ([]byte, int64, bool) {
		return []byte{1, 7}, 1 << 60, true // version 1, then too short
	})
	require.NoError(t, err)
	eng := counter.New(NewCounters(tb), counter.WithClock(func() time.Time { return countertest.T0 }))
	spec := window.Spec{Limit: 2, Interval: 1, Unit: window.Minute, Kind: window.Calendar}
	d, err := eng.Consume(context.Background(), counter.Key{App: "app", Product: "p", Kind: counter.Requests}, spec, 1)
	require.NoError(t, err)
	assert.True(t, d.Allowed)
	assert.EqualValues(t, 1, d.Used)
}

// TestEvictionReported: a table too small for the live counters forgets the
// one expiring first and says so.
func TestEvictionReported(t *testing.T) {
	tb := newTable(t, table.NewMemStore(), 1)
	c := NewCounters(tb)
	evictions := 0
	c.OnEvict = func() { evictions++ }
	eng := counter.New(c, counter.WithClock(func() time.Time { return countertest.T0 }))
	spec := window.Spec{Limit: 5, Interval: 1, Unit: window.Minute, Kind: window.Calendar}
	for _, app := range []string{"a", "b", "a"} {
		_, err := eng.Consume(context.Background(), counter.Key{App: app, Kind: counter.Requests}, spec, 1)
		require.NoError(t, err)
	}
	assert.Equal(t, 2, evictions)
}

// flakyStore lets one other "worker" write between this worker's read and
// its write of the first CAS attempt on a chosen key, once.
type flakyStore struct {
	*table.MemStore
	key    string
	before func()
	done   bool
}

func (s *flakyStore) Set(key string, value []byte, cas uint32) (bool, error) {
	if key == s.key && !s.done {
		s.done = true
		s.before()
	}
	return s.MemStore.Set(key, value, cas)
}

// TestAtomicRaceRefunds: when another worker fills a counter between the
// atomic batch's check and its charge, the ops already charged are refunded
// and the batch is denied.
func TestAtomicRaceRefunds(t *testing.T) {
	mem := table.NewMemStore()
	store := &flakyStore{MemStore: mem}
	tb := newTable(t, store, 4096)
	other := counter.New(NewCounters(newTable(t, mem, 4096)), counter.WithClock(func() time.Time { return countertest.T0 }))
	eng := counter.New(NewCounters(tb), counter.WithClock(func() time.Time { return countertest.T0 }))
	ctx := context.Background()
	spec := window.Spec{Limit: 1, Interval: 1, Unit: window.Minute, Kind: window.Calendar}
	k1 := counter.Key{App: "app", Product: "p1", Kind: counter.Requests}
	k2 := counter.Key{App: "app", Product: "p2", Kind: counter.Requests}
	store.key = tb.SetOf(counterID(counter.CounterID(k2, spec)))
	store.before = func() {
		d, err := other.Consume(ctx, k2, spec, 1)
		require.NoError(t, err)
		require.True(t, d.Allowed)
	}
	if tb.SetOf(counterID(counter.CounterID(k1, spec))) == store.key {
		t.Skip("both counters hash to one set; the race needs two sets")
	}
	ds, err := eng.ConsumeBatch(ctx, []counter.Request{{Key: k1, Spec: spec, N: 1}, {Key: k2, Spec: spec, N: 1}}, true)
	require.NoError(t, err)
	assert.False(t, ds[0].Allowed)
	assert.False(t, ds[1].Allowed)
	// k1's charge was refunded: it still has its whole limit.
	d, err := eng.Consume(ctx, k1, spec, 0)
	require.NoError(t, err)
	assert.EqualValues(t, 0, d.Used)
}

// TestMatchesMemstore: the shared-data ledger and the keystore's embedded
// store answer the same random sequences identically (both count with
// counter/bucket; the ledger adds its own atomic-batch protocol over CAS).
func TestMatchesMemstore(t *testing.T) {
	for seed := range uint64(4) {
		ref, err := memstore.Open(memstore.Options{})
		require.NoError(t, err)
		countertest.Compare(t, ref, NewCounters(newTable(t, table.NewMemStore(), 4096)), seed, 400)
		require.NoError(t, ref.Close())
	}
}
