package ledger

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/memstore"
	"github.com/tollgate/tollgate/shared/table"
	"github.com/tollgate/tollgate/window"
)

var t0 = time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)

func TestSpikeArrestPace(t *testing.T) {
	rate, err := window.ParseRate("5ps") // one per 200ms
	require.NoError(t, err)
	tests := []struct {
		name  string
		burst int64
		steps []struct {
			at    time.Duration
			allow bool
			retry time.Duration
		}
	}{
		{"strict smoothing", 1, []struct {
			at    time.Duration
			allow bool
			retry time.Duration
		}{{0, true, 0}, {50 * time.Millisecond, false, 150 * time.Millisecond}, {199 * time.Millisecond, false, time.Millisecond},
			{200 * time.Millisecond, true, 0}, {time.Second, true, 0}, {time.Second, false, 200 * time.Millisecond}}},
		{"burst of three", 3, []struct {
			at    time.Duration
			allow bool
			retry time.Duration
		}{{0, true, 0}, {0, true, 0}, {0, true, 0}, {0, false, 200 * time.Millisecond}, {200 * time.Millisecond, true, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSpikes(newTable(t, table.NewMemStore(), 16))
			for i, st := range tt.steps {
				ok, retry, err := s.Admit("app", rate, tt.burst, t0.Add(st.at))
				require.NoError(t, err)
				assert.Equal(t, st.allow, ok, "step %d", i)
				assert.Equal(t, st.retry, retry, "step %d", i)
			}
		})
	}
}

// TestSpikeArrestWorkersShareOneRate: workers deciding at the same instant
// admit exactly one request per interval between them.
func TestSpikeArrestWorkersShareOneRate(t *testing.T) {
	store := table.NewMemStore()
	rate, err := window.ParseRate("10ps")
	require.NoError(t, err)
	workers := make([]*Spikes, 8)
	for i := range workers {
		workers[i] = NewSpikes(newTable(t, store, 16))
	}
	for step := range 5 { // five instants 100ms apart
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for _, s := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 5 {
					ok, _, err := s.Admit("k", rate, 1, t0.Add(time.Duration(step)*100*time.Millisecond))
					if assert.NoError(t, err) && ok {
						admitted.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		assert.EqualValues(t, 1, admitted.Load(), "instant %d", step)
	}
}

func spec(t testing.TB, limit int64, unit string, kind string) window.Spec {
	t.Helper()
	s, err := window.NewSpec(limit, 1, unit, kind)
	require.NoError(t, err)
	return s
}

func TestAsyncConsumeAndRoll(t *testing.T) {
	a := NewAsync(newTable(t, table.NewMemStore(), 16))
	s := spec(t, 3, "minute", "calendar")
	for i := range 3 {
		d, err := a.Consume("k", s, 1, t0.Add(time.Duration(i)*time.Second))
		require.NoError(t, err)
		assert.True(t, d.Allowed)
		assert.EqualValues(t, 2-i, d.Remaining)
		assert.Equal(t, t0.Add(time.Minute), d.Reset)
	}
	d, err := a.Consume("k", s, 1, t0.Add(10*time.Second))
	require.NoError(t, err)
	assert.False(t, d.Allowed)
	assert.Equal(t, 50*time.Second, d.RetryAfter)
	// The next calendar minute starts afresh, and the unpushed usage of the
	// old one is dropped.
	d, err = a.Consume("k", s, 1, t0.Add(time.Minute))
	require.NoError(t, err)
	assert.True(t, d.Allowed)
	st, err := a.State("k", t0.Add(time.Minute))
	require.NoError(t, err)
	assert.EqualValues(t, 1, st.Pending)
	assert.Equal(t, t0.Add(2*time.Minute).UnixMilli(), st.WindowEnd)
}

func TestAsyncSyncCycle(t *testing.T) {
	store := table.NewMemStore()
	w1 := NewAsync(newTable(t, store, 16))
	w2 := NewAsync(newTable(t, store, 16)) // another worker of the same Envoy
	s := spec(t, 10, "minute", "rolling")
	now := t0
	for range 4 {
		_, err := w1.Consume("k", s, 1, now)
		require.NoError(t, err)
	}
	delta, ok, err := w1.Claim("k", s, now, time.Second, 100*time.Millisecond)
	require.NoError(t, err)
	require.True(t, ok)
	assert.EqualValues(t, 4, delta)
	_, ok, err = w2.Claim("k", s, now, time.Second, 100*time.Millisecond)
	require.NoError(t, err)
	assert.False(t, ok, "the lease keeps a second worker from pushing the same usage")

	// Usage counted during the push stays pending; the in-flight part still counts.
	d, err := w2.Consume("k", s, 1, now)
	require.NoError(t, err)
	assert.EqualValues(t, 5, d.Used)

	// The keystore saw 4 from us and 3 from another Envoy.
	require.NoError(t, w1.Complete("k", s, now, 7, 30*time.Second))
	st, err := w1.State("k", now)
	require.NoError(t, err)
	assert.Equal(t, AsyncState{Global: 7, Pending: 1, WindowEnd: now.Add(30 * time.Second).UnixMilli(), LastSync: now.UnixMilli()}, st)

	// A fresh counter with nothing pending is not pulled again at once...
	_, err = w1.Consume("j", s, 0, now)
	require.NoError(t, err)
	delta, ok, err = w2.Claim("k", s, now.Add(50*time.Millisecond), time.Second, 100*time.Millisecond)
	require.NoError(t, err)
	assert.True(t, ok, "pending usage is always pushed")
	assert.EqualValues(t, 1, delta)
	// ...a failed push puts the usage back.
	require.NoError(t, w2.Abort("k", s, now))
	st, err = w2.State("k", now)
	require.NoError(t, err)
	assert.EqualValues(t, 1, st.Pending)
	assert.EqualValues(t, 0, st.Inflight)
	assert.EqualValues(t, 0, st.Lease)
	delta, ok, err = w1.Claim("k", s, now, time.Second, 100*time.Millisecond)
	require.NoError(t, err)
	require.True(t, ok)
	assert.EqualValues(t, 1, delta)
	require.NoError(t, w1.Complete("k", s, now, 8, 30*time.Second))
	_, ok, err = w1.Claim("k", s, now.Add(50*time.Millisecond), time.Second, 100*time.Millisecond)
	require.NoError(t, err)
	assert.False(t, ok, "nothing pending and synced 50ms ago")
	_, ok, err = w1.Claim("k", s, now.Add(150*time.Millisecond), time.Second, 100*time.Millisecond)
	require.NoError(t, err)
	assert.True(t, ok, "a stale counter is pulled")

	// A lapsed lease's usage is pushed again rather than lost.
	_, ok, err = w2.Claim("k", s, now.Add(2*time.Second), time.Second, 100*time.Millisecond)
	require.NoError(t, err)
	assert.True(t, ok)
	_, ok, err = w2.Claim("x", s, now, time.Second, 0)
	require.NoError(t, err)
	assert.False(t, ok, "an unknown counter has nothing to sync")
}

// TestAsyncOvershootBound simulates two Envoys (two stores) in front of one
// keystore engine: each admits requests at a steady pace and syncs every
// period. The total admitted in the window stays within the documented
// bound: limit + the other Envoy's admissions during 2 sync periods (the
// callout here is instant), and never above 2 × limit.
func TestAsyncOvershootBound(t *testing.T) {
	ms, err := memstore.Open(memstore.Options{})
	require.NoError(t, err)
	now := t0
	eng := counter.New(ms, counter.WithClock(func() time.Time { return now }))
	defer eng.Close()
	s := spec(t, 100, "minute", "calendar")
	key := counter.Key{App: "app", Kind: counter.Requests}
	envoys := []*Async{NewAsync(newTable(t, table.NewMemStore(), 16)), NewAsync(newTable(t, table.NewMemStore(), 16))}
	const (
		period = 100 * time.Millisecond
		step   = 5 * time.Millisecond // each Envoy sees one request per step: 200 rps each
	)
	sync := func(a *Async) {
		delta, ok, err := a.Claim("k", s, now, time.Second, period/2)
		require.NoError(t, err)
		if !ok {
			return
		}
		ds, err := eng.ConsumeBatch(context.Background(), []counter.Request{{Key: key, Spec: s, N: delta, Force: true}}, false)
		require.NoError(t, err)
		require.NoError(t, a.Complete("k", s, now, ds[0].Used, ds[0].Reset.Sub(now)))
	}
	admitted := 0
	for i := 0; now.Before(t0.Add(2 * time.Second)); i++ {
		for _, a := range envoys {
			d, err := a.Consume("k", s, 1, now)
			require.NoError(t, err)
			if d.Allowed {
				admitted++
			}
		}
		now = now.Add(step)
		if i%int(period/step) == 0 {
			for _, a := range envoys {
				sync(a)
			}
		}
	}
	for _, a := range envoys {
		sync(a)
	}
	perEnvoyIn2Periods := int(2 * period / step)
	t.Logf("admitted %d of limit 100 (bound %d)", admitted, 100+perEnvoyIn2Periods)
	assert.GreaterOrEqual(t, admitted, 100)
	assert.LessOrEqual(t, admitted, 100+perEnvoyIn2Periods)
	// Nothing admitted is lost: the keystore counted every admission.
	d, err := eng.Consume(context.Background(), key, s, 0)
	require.NoError(t, err)
	assert.EqualValues(t, admitted, d.Used)
}

func TestHealth(t *testing.T) {
	h := NewHealth(newTable(t, table.NewMemStore(), 16))
	failing, err := h.Failing(t0, time.Second)
	require.NoError(t, err)
	assert.False(t, failing, "no sync yet is not a failure")
	require.NoError(t, h.Record(false, t0))
	failing, err = h.Failing(t0, time.Second)
	require.NoError(t, err)
	assert.True(t, failing, "never synced and the last attempt failed")
	require.NoError(t, h.Record(true, t0.Add(time.Second)))
	require.NoError(t, h.Record(false, t0.Add(1500*time.Millisecond)))
	failing, err = h.Failing(t0.Add(1500*time.Millisecond), time.Second)
	require.NoError(t, err)
	assert.False(t, failing, "failing for less than the grace period")
	failing, err = h.Failing(t0.Add(2500*time.Millisecond), time.Second)
	require.NoError(t, err)
	assert.True(t, failing)
}
