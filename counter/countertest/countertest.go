// Package countertest is the contract every counter.Backend must meet: one
// suite of engine-level tests that runs identically against each backend.
package countertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/window"
)

// Clock is a manual clock shared by an engine and its backend.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Harness tells the suite how to make backends.
type Harness struct {
	// Storage prepares fresh storage for one test and returns a function that
	// opens a backend instance on it; instances opened by one function see
	// the same counters when Shared (Redis) or after Close when Persistent.
	Storage func(t *testing.T, clock func() time.Time) (open func() counter.Backend)
	// Shared means several open instances share live state.
	Shared bool
	// Persistent means state survives closing and reopening.
	Persistent bool
	// Leases means the backends implement counter.LeaseBackend; the lease
	// contract then runs too.
	Leases bool
}

// T0 is the suite's starting instant: a Sunday, aligned to the minute.
var T0 = time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)

type env struct {
	clock *Clock
	open  func() counter.Backend
	eng   *counter.Engine
}

func setup(t *testing.T, h Harness) *env {
	t.Helper()
	c := NewClock(T0)
	open := h.Storage(t, c.Now)
	e := &env{clock: c, open: open}
	e.eng = e.engine(t)
	return e
}

// engine opens a new backend instance and wraps it in an engine.
func (e *env) engine(t *testing.T) *counter.Engine {
	t.Helper()
	eng := counter.New(e.open(), counter.WithClock(e.clock.Now))
	t.Cleanup(func() { _ = eng.Close() })
	return eng
}

func spec(t *testing.T, limit int64, interval int, unit, kind string) window.Spec {
	t.Helper()
	s, err := window.NewSpec(limit, interval, unit, kind)
	require.NoError(t, err)
	return s
}

func key(app string) counter.Key {
	return counter.Key{App: app, Product: "chat", Operation: "completions", Kind: counter.Requests}
}

func consume(t *testing.T, eng *counter.Engine, k counter.Key, s window.Spec, n int64) counter.Decision {
	t.Helper()
	d, err := eng.Consume(context.Background(), k, s, n)
	require.NoError(t, err)
	return d
}

// Run runs the whole contract against the harness.
func Run(t *testing.T, h Harness) {
	t.Run("ConsumeToLimit", func(t *testing.T) { testConsumeToLimit(t, h) })
	t.Run("CalendarReset", func(t *testing.T) { testCalendarReset(t, h) })
	t.Run("RollingWindow", func(t *testing.T) { testRolling(t, h) })
	t.Run("FlexiWindow", func(t *testing.T) { testFlexi(t, h) })
	t.Run("KeysAreIndependent", func(t *testing.T) { testKeys(t, h) })
	t.Run("LimitChangeKeepsUsage", func(t *testing.T) { testLimitChange(t, h) })
	t.Run("PeekAndForce", func(t *testing.T) { testPeekForce(t, h) })
	t.Run("Batch", func(t *testing.T) { testBatch(t, h) })
	t.Run("ReserveBlocksOvershoot", func(t *testing.T) { testReserve(t, h) })
	t.Run("Settle", func(t *testing.T) { testSettle(t, h) })
	t.Run("SettleOncePerReservation", func(t *testing.T) { testSettleOnce(t, h) })
	t.Run("Release", func(t *testing.T) { testRelease(t, h) })
	t.Run("ReservationExpiry", func(t *testing.T) { testExpiry(t, h) })
	t.Run("SettleAfterWindowEnded", func(t *testing.T) { testSettleOldWindow(t, h) })
	t.Run("ReserveBatchAllOrNothing", func(t *testing.T) { testReserveBatch(t, h) })
	t.Run("BadReservationID", func(t *testing.T) { testBadID(t, h) })
	t.Run("ConcurrentConsumeExact", func(t *testing.T) { testConcurrent(t, h) })
	t.Run("ConcurrentReserveExact", func(t *testing.T) { testConcurrentReserve(t, h) })
	if h.Leases {
		runLease(t, h)
	}
	if h.Persistent {
		t.Run("RestartKeepsCounts", func(t *testing.T) { testRestart(t, h) })
	}
}

// testSettleOnce: a reservation is charged once, whatever repeats its
// settle or release: retried settles (the tokencount filter retries those
// the keystore did not answer, from every Envoy worker) answer
// ErrReservationNotFound and change nothing, also when they race.
func testSettleOnce(t *testing.T, h Harness) {
	e := setup(t, h)
	ctx := context.Background()
	s := spec(t, 10000, 1, "hour", "calendar")
	r, err := e.eng.Reserve(ctx, tokKey("once"), s, 800, time.Minute)
	require.NoError(t, err)
	d, err := e.eng.Settle(ctx, r.ID, 300)
	require.NoError(t, err)
	require.Equal(t, int64(300), d.Used)
	for _, again := range []func() error{
		func() error { _, err := e.eng.Settle(ctx, r.ID, 300); return err },
		func() error { _, err := e.eng.Settle(ctx, r.ID, 5000); return err },
		func() error { _, err := e.eng.Release(ctx, r.ID); return err },
	} {
		require.ErrorIs(t, again(), counter.ErrReservationNotFound)
		assert.Equal(t, int64(300), consume(t, e.eng, tokKey("once"), s, 0).Used, "a repeat changes nothing")
	}

	// Racing settles of one reservation: exactly one applies.
	const racers = 8
	var ids []string
	for range 20 {
		r, err := e.eng.Reserve(ctx, tokKey("race"), s, 100, time.Minute)
		require.NoError(t, err)
		ids = append(ids, r.ID)
	}
	var wg sync.WaitGroup
	var applied atomic.Int64
	for _, id := range ids {
		for range racers {
			wg.Go(func() {
				if _, err := e.eng.Settle(ctx, id, 7); err == nil {
					applied.Add(1)
				} else if !errors.Is(err, counter.ErrReservationNotFound) {
					t.Errorf("settle: %v", err)
				}
			})
		}
	}
	wg.Wait()
	assert.Equal(t, int64(len(ids)), applied.Load(), "one settle per reservation applied")
	assert.Equal(t, int64(7*len(ids)), consume(t, e.eng, tokKey("race"), s, 0).Used)
}

func testConsumeToLimit(t *testing.T, h Harness) {
	for _, kind := range []string{"calendar", "rolling", "flexi"} {
		t.Run(kind, func(t *testing.T) {
			e := setup(t, h)
			s := spec(t, 5, 1, "minute", kind)
			e.clock.Set(T0.Add(10 * time.Second))
			for i := int64(1); i <= 5; i++ {
				d := consume(t, e.eng, key("a"), s, 1)
				require.True(t, d.Allowed, "request %d", i)
				assert.Equal(t, int64(5), d.Limit)
				assert.Equal(t, 5-i, d.Remaining)
				assert.Equal(t, i, d.Used)
				assert.Zero(t, d.RetryAfter)
			}
			d := consume(t, e.eng, key("a"), s, 1)
			assert.False(t, d.Allowed)
			assert.Equal(t, int64(0), d.Remaining)
			assert.Equal(t, int64(5), d.Used)
			assert.Positive(t, d.RetryAfter)
			switch kind {
			case "calendar":
				assert.Equal(t, T0.Add(time.Minute), d.Reset)
				assert.Equal(t, 50*time.Second, d.RetryAfter)
			case "flexi":
				assert.Equal(t, T0.Add(70*time.Second), d.Reset)
				assert.Equal(t, time.Minute, d.RetryAfter)
			case "rolling":
				// Usage at T0+10 s sits in bucket [10 s, 11 s) and expires at 71 s.
				assert.Equal(t, T0.Add(71*time.Second), d.Reset)
				assert.Equal(t, 61*time.Second, d.RetryAfter)
			}
		})
	}
}

func testCalendarReset(t *testing.T, h Harness) {
	cases := []struct {
		name     string
		interval int
		unit     string
		start    time.Time
		boundary time.Time
	}{
		{"5 minutes", 5, "minute", T0.Add(7 * time.Minute), T0.Add(10 * time.Minute)},
		{"hour", 1, "hour", T0.Add(30 * time.Minute), T0.Add(time.Hour)},
		{"day at midnight", 1, "day", T0, time.Date(2024, 3, 11, 0, 0, 0, 0, time.UTC)},
		{"leap month", 1, "month", time.Date(2024, 2, 29, 23, 0, 0, 0, time.UTC), time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, h)
			s := spec(t, 2, tc.interval, tc.unit, "calendar")
			e.clock.Set(tc.start)
			require.True(t, consume(t, e.eng, key("a"), s, 2).Allowed)
			e.clock.Set(tc.boundary.Add(-time.Millisecond))
			d := consume(t, e.eng, key("a"), s, 1)
			require.False(t, d.Allowed, "still the old window")
			assert.Equal(t, tc.boundary, d.Reset)
			assert.Equal(t, time.Millisecond, d.RetryAfter)
			e.clock.Set(tc.boundary)
			d = consume(t, e.eng, key("a"), s, 1)
			require.True(t, d.Allowed, "new window")
			assert.Equal(t, int64(1), d.Remaining)
		})
	}
}

func testRolling(t *testing.T, h Harness) {
	e := setup(t, h)
	s := spec(t, 5, 1, "minute", "rolling")
	for i := 0; i < 5; i++ {
		e.clock.Set(T0.Add(time.Duration(i) * 10 * time.Second))
		require.True(t, consume(t, e.eng, key("a"), s, 1).Allowed)
	}
	e.clock.Set(T0.Add(45 * time.Second))
	d := consume(t, e.eng, key("a"), s, 2)
	require.False(t, d.Allowed)
	// The two oldest uses (0 s and 10 s) leave at 61 s and 71 s.
	assert.Equal(t, 26*time.Second, d.RetryAfter)
	assert.Equal(t, T0.Add(101*time.Second), d.Reset)
	e.clock.Set(T0.Add(61*time.Second - time.Millisecond))
	require.False(t, consume(t, e.eng, key("a"), s, 1).Allowed, "0 s use still counted")
	e.clock.Set(T0.Add(61 * time.Second))
	d = consume(t, e.eng, key("a"), s, 1)
	require.True(t, d.Allowed, "0 s use expired")
	assert.Equal(t, int64(0), d.Remaining)
	e.clock.Set(T0.Add(200 * time.Second))
	d = consume(t, e.eng, key("a"), s, 5)
	require.True(t, d.Allowed, "everything expired")
}

func testFlexi(t *testing.T, h Harness) {
	e := setup(t, h)
	s := spec(t, 3, 1, "minute", "flexi")
	start := T0.Add(17*time.Second + 250*time.Millisecond)
	e.clock.Set(start)
	d := consume(t, e.eng, key("a"), s, 0)
	require.True(t, d.Allowed)
	assert.Equal(t, start.Add(time.Minute), d.Reset, "a query opens no window")
	e.clock.Set(start.Add(5 * time.Second))
	d = consume(t, e.eng, key("a"), s, 3)
	require.True(t, d.Allowed)
	windowEnd := start.Add(65 * time.Second)
	assert.Equal(t, windowEnd, d.Reset, "window starts at the first counted request")
	e.clock.Set(windowEnd.Add(-time.Millisecond))
	d = consume(t, e.eng, key("a"), s, 1)
	require.False(t, d.Allowed)
	assert.Equal(t, time.Millisecond, d.RetryAfter)
	e.clock.Set(windowEnd.Add(10 * time.Second))
	d = consume(t, e.eng, key("a"), s, 1)
	require.True(t, d.Allowed)
	assert.Equal(t, int64(2), d.Remaining)
	assert.Equal(t, windowEnd.Add(70*time.Second), d.Reset, "next window starts at its first request")
}

func testKeys(t *testing.T, h Harness) {
	e := setup(t, h)
	s := spec(t, 1, 1, "minute", "calendar")
	keys := []counter.Key{
		{App: "a", Product: "p", Kind: counter.Requests},
		{App: "a", Product: "p", Operation: "op", Kind: counter.Requests},
		{App: "a", Product: "p", Kind: counter.Tokens},
		{App: "a/p", Kind: counter.Requests},
		{App: "b", Product: "p", Kind: counter.Requests},
	}
	for _, k := range keys {
		require.True(t, consume(t, e.eng, k, s, 1).Allowed, k.String())
	}
	for _, k := range keys {
		require.False(t, consume(t, e.eng, k, s, 1).Allowed, k.String())
	}
	// Another window shape is another counter.
	require.True(t, consume(t, e.eng, keys[0], spec(t, 1, 1, "hour", "calendar"), 1).Allowed)
}

func testLimitChange(t *testing.T, h Harness) {
	e := setup(t, h)
	require.True(t, consume(t, e.eng, key("a"), spec(t, 5, 1, "minute", "calendar"), 5).Allowed)
	d := consume(t, e.eng, key("a"), spec(t, 8, 1, "minute", "calendar"), 3)
	require.True(t, d.Allowed)
	assert.Equal(t, int64(0), d.Remaining)
	assert.False(t, consume(t, e.eng, key("a"), spec(t, 8, 1, "minute", "calendar"), 1).Allowed)
}

func testPeekForce(t *testing.T, h Harness) {
	e := setup(t, h)
	s := spec(t, 10, 1, "minute", "calendar")
	d := consume(t, e.eng, key("a"), s, 0)
	assert.True(t, d.Allowed)
	assert.Equal(t, int64(10), d.Remaining)
	ds, err := e.eng.ConsumeBatch(context.Background(), []counter.Request{{Key: key("a"), Spec: s, N: 25, Force: true}}, false)
	require.NoError(t, err)
	assert.False(t, ds[0].Allowed, "did not fit")
	assert.Equal(t, int64(25), ds[0].Used, "but was recorded")
	d = consume(t, e.eng, key("a"), s, 0)
	assert.False(t, d.Allowed)
	assert.Equal(t, int64(0), d.Remaining)
	assert.Equal(t, int64(25), d.Used)
}

func testBatch(t *testing.T, h Harness) {
	e := setup(t, h)
	ctx := context.Background()
	s := spec(t, 5, 1, "minute", "calendar")
	require.True(t, consume(t, e.eng, key("full"), s, 5).Allowed)
	reqs := []counter.Request{{Key: key("free"), Spec: s, N: 2}, {Key: key("full"), Spec: s, N: 1}}
	ds, err := e.eng.ConsumeBatch(ctx, reqs, true)
	require.NoError(t, err)
	assert.False(t, ds[0].Allowed)
	assert.False(t, ds[1].Allowed)
	assert.Zero(t, ds[0].RetryAfter, "the free key alone would fit")
	assert.Positive(t, ds[1].RetryAfter)
	assert.Equal(t, int64(5), consume(t, e.eng, key("free"), s, 0).Remaining, "atomic batch counted nothing")
	ds, err = e.eng.ConsumeBatch(ctx, reqs, false)
	require.NoError(t, err)
	assert.True(t, ds[0].Allowed)
	assert.False(t, ds[1].Allowed)
	assert.Equal(t, int64(3), consume(t, e.eng, key("free"), s, 0).Remaining)
	// The same counter twice in one atomic batch counts both parts.
	twice := []counter.Request{{Key: key("twice"), Spec: s, N: 3}, {Key: key("twice"), Spec: s, N: 3}}
	ds, err = e.eng.ConsumeBatch(ctx, twice, true)
	require.NoError(t, err)
	assert.False(t, ds[0].Allowed)
	twice[1].N = 2
	ds, err = e.eng.ConsumeBatch(ctx, twice, true)
	require.NoError(t, err)
	assert.True(t, ds[1].Allowed)
	assert.Equal(t, int64(5), ds[1].Used)
	// Invalid requests are refused before anything is counted.
	_, err = e.eng.ConsumeBatch(ctx, nil, false)
	require.ErrorIs(t, err, counter.ErrInvalidRequest)
	_, err = e.eng.ConsumeBatch(ctx, []counter.Request{{Key: counter.Key{Kind: counter.Requests}, Spec: s, N: 1}}, false)
	require.ErrorIs(t, err, counter.ErrInvalidKey)
	_, err = e.eng.ConsumeBatch(ctx, []counter.Request{{Key: key("x"), Spec: window.Spec{Limit: 1}, N: 1}}, false)
	require.ErrorIs(t, err, window.ErrInvalidSpec)
	_, err = e.eng.ConsumeBatch(ctx, []counter.Request{{Key: key("x"), Spec: s, N: -1}}, false)
	require.ErrorIs(t, err, counter.ErrInvalidRequest)
}

func tokKey(app string) counter.Key {
	return counter.Key{App: app, Product: "llm", Kind: counter.Tokens}
}

func testReserve(t *testing.T, h Harness) {
	for _, kind := range []string{"calendar", "rolling", "flexi"} {
		t.Run(kind, func(t *testing.T) {
			e := setup(t, h)
			ctx := context.Background()
			s := spec(t, 1000, 1, "minute", kind)
			r, err := e.eng.Reserve(ctx, tokKey("a"), s, 800, time.Minute)
			require.NoError(t, err)
			require.True(t, r.Allowed)
			require.NotEmpty(t, r.ID)
			assert.Equal(t, int64(200), r.Remaining)
			assert.Equal(t, T0.Add(time.Minute), r.Expires)
			r2, err := e.eng.Reserve(ctx, tokKey("a"), s, 300, time.Minute)
			require.NoError(t, err)
			assert.False(t, r2.Allowed, "the open reservation counts")
			assert.Empty(t, r2.ID)
			assert.False(t, consume(t, e.eng, tokKey("a"), s, 201).Allowed)
			assert.True(t, consume(t, e.eng, tokKey("a"), s, 200).Allowed)
		})
	}
}

func testSettle(t *testing.T, h Harness) {
	for _, kind := range []string{"calendar", "rolling", "flexi"} {
		t.Run(kind, func(t *testing.T) {
			e := setup(t, h)
			ctx := context.Background()
			s := spec(t, 1000, 1, "minute", kind)
			down, err := e.eng.Reserve(ctx, tokKey("a"), s, 800, time.Minute)
			require.NoError(t, err)
			e.clock.Advance(5 * time.Second)
			d, err := e.eng.Settle(ctx, down.ID, 300)
			require.NoError(t, err)
			assert.Equal(t, int64(300), d.Used, "settled down")
			assert.Equal(t, int64(700), d.Remaining)
			_, err = e.eng.Settle(ctx, down.ID, 300)
			require.ErrorIs(t, err, counter.ErrReservationNotFound, "settled twice")

			up, err := e.eng.Reserve(ctx, tokKey("a"), s, 100, time.Minute)
			require.NoError(t, err)
			d, err = e.eng.Settle(ctx, up.ID, 1500)
			require.NoError(t, err)
			assert.Equal(t, int64(1800), d.Used, "settled above the limit")
			assert.Equal(t, int64(0), d.Remaining)
			assert.False(t, d.Allowed)
			dd := consume(t, e.eng, tokKey("a"), s, 1)
			assert.False(t, dd.Allowed, "the excess blocks later requests")
			assert.Positive(t, dd.RetryAfter)
		})
	}
}

func testRelease(t *testing.T, h Harness) {
	e := setup(t, h)
	ctx := context.Background()
	s := spec(t, 1000, 1, "hour", "calendar")
	r, err := e.eng.Reserve(ctx, tokKey("a"), s, 900, time.Minute)
	require.NoError(t, err)
	d, err := e.eng.Release(ctx, r.ID)
	require.NoError(t, err)
	assert.Equal(t, int64(0), d.Used)
	assert.Equal(t, int64(1000), d.Remaining)
	_, err = e.eng.Release(ctx, r.ID)
	require.ErrorIs(t, err, counter.ErrReservationNotFound)
	_, err = e.eng.Settle(ctx, r.ID, 10)
	require.ErrorIs(t, err, counter.ErrReservationNotFound)
	assert.True(t, consume(t, e.eng, tokKey("a"), s, 1000).Allowed)
}

func testExpiry(t *testing.T, h Harness) {
	for _, kind := range []string{"calendar", "rolling", "flexi"} {
		t.Run(kind, func(t *testing.T) {
			e := setup(t, h)
			ctx := context.Background()
			s := spec(t, 1000, 1, "hour", kind)
			r, err := e.eng.Reserve(ctx, tokKey("a"), s, 900, 10*time.Second)
			require.NoError(t, err)
			require.True(t, r.Allowed)
			require.True(t, consume(t, e.eng, tokKey("a"), s, 50).Allowed)
			e.clock.Advance(10*time.Second - time.Millisecond)
			assert.False(t, consume(t, e.eng, tokKey("a"), s, 100).Allowed, "not yet expired")
			e.clock.Advance(time.Millisecond)
			d := consume(t, e.eng, tokKey("a"), s, 0)
			assert.Equal(t, int64(50), d.Used, "the unsettled reservation was released")
			_, err = e.eng.Settle(ctx, r.ID, 900)
			require.ErrorIs(t, err, counter.ErrReservationNotFound)
			assert.True(t, consume(t, e.eng, tokKey("a"), s, 950).Allowed)
		})
	}
}

func testSettleOldWindow(t *testing.T, h Harness) {
	e := setup(t, h)
	ctx := context.Background()
	s := spec(t, 1000, 1, "minute", "calendar")
	e.clock.Set(T0.Add(50 * time.Second))
	r, err := e.eng.Reserve(ctx, tokKey("a"), s, 400, 5*time.Minute)
	require.NoError(t, err)
	e.clock.Set(T0.Add(70 * time.Second))
	require.True(t, consume(t, e.eng, tokKey("a"), s, 100).Allowed)
	d, err := e.eng.Settle(ctx, r.ID, 2000)
	require.NoError(t, err)
	assert.Equal(t, int64(100), d.Used, "usage stays in the window it was reserved in")
	assert.Equal(t, int64(900), d.Remaining)
}

func testReserveBatch(t *testing.T, h Harness) {
	e := setup(t, h)
	ctx := context.Background()
	perMin := spec(t, 1000, 1, "minute", "calendar")
	perDay := spec(t, 1500, 1, "day", "calendar")
	reqs := []counter.Request{{Key: tokKey("a"), Spec: perMin, N: 800}, {Key: tokKey("a"), Spec: perDay, N: 800}}
	rs, err := e.eng.ReserveBatch(ctx, reqs, 5*time.Minute)
	require.NoError(t, err)
	require.True(t, rs[0].Allowed)
	require.True(t, rs[1].Allowed)
	assert.NotEqual(t, rs[0].ID, rs[1].ID)
	e.clock.Advance(time.Minute)
	rs2, err := e.eng.ReserveBatch(ctx, reqs, time.Minute)
	require.NoError(t, err)
	assert.False(t, rs2[0].Allowed, "all or nothing")
	assert.Zero(t, rs2[0].RetryAfter, "the per-minute quota alone would fit")
	assert.False(t, rs2[1].Allowed)
	assert.Equal(t, int64(0), consume(t, e.eng, tokKey("a"), perMin, 0).Used, "nothing reserved")
	d, err := e.eng.Settle(ctx, rs[1].ID, 100)
	require.NoError(t, err)
	assert.Equal(t, int64(100), d.Used)
	_, err = e.eng.ReserveBatch(ctx, []counter.Request{{Key: tokKey("a"), Spec: perMin, N: 1, Force: true}}, time.Minute)
	require.ErrorIs(t, err, counter.ErrInvalidRequest)
	_, err = e.eng.ReserveBatch(ctx, reqs[:1], 25*time.Hour)
	require.ErrorIs(t, err, counter.ErrInvalidRequest)
}

func testBadID(t *testing.T, h Harness) {
	e := setup(t, h)
	ctx := context.Background()
	for _, id := range []string{"", "!!!", "YWJj", "dg", string(make([]byte, 5000))} {
		_, err := e.eng.Settle(ctx, id, 1)
		require.ErrorIs(t, err, counter.ErrInvalidRequest, "%q", id)
	}
	r, err := e.eng.Reserve(ctx, tokKey("a"), spec(t, 10, 1, "minute", "calendar"), 1, time.Minute)
	require.NoError(t, err)
	_, err = e.eng.Settle(ctx, r.ID, -1)
	require.ErrorIs(t, err, counter.ErrInvalidRequest)
}

// testConcurrent: 64 goroutines × 10 consumes against a limit of 100 admit
// exactly 100, spread over two engine instances when the backend is shared.
func testConcurrent(t *testing.T, h Harness) {
	for _, kind := range []string{"calendar", "rolling", "flexi"} {
		t.Run(kind, func(t *testing.T) {
			e := setup(t, h)
			engines := []*counter.Engine{e.eng}
			if h.Shared {
				engines = append(engines, e.engine(t))
			}
			s := spec(t, 100, 1, "minute", kind)
			var allowed, denied atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for g := 0; g < 64; g++ {
				wg.Add(1)
				go func(eng *counter.Engine) {
					defer wg.Done()
					for i := 0; i < 10; i++ {
						d, err := eng.Consume(context.Background(), key("hot"), s, 1)
						if err != nil {
							errs <- err
							return
						}
						if d.Allowed {
							allowed.Add(1)
						} else {
							denied.Add(1)
						}
					}
				}(engines[g%len(engines)])
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			assert.Equal(t, int64(100), allowed.Load())
			assert.Equal(t, int64(540), denied.Load())
		})
	}
}

func testConcurrentReserve(t *testing.T, h Harness) {
	e := setup(t, h)
	engines := []*counter.Engine{e.eng}
	if h.Shared {
		engines = append(engines, e.engine(t))
	}
	s := spec(t, 1000, 1, "minute", "calendar")
	var ok atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func(eng *counter.Engine) {
			defer wg.Done()
			r, err := eng.Reserve(context.Background(), tokKey("hot"), s, 90, time.Minute)
			if err != nil {
				errs <- err
				return
			}
			if !r.Allowed {
				return
			}
			ok.Add(1)
			if _, err := eng.Settle(context.Background(), r.ID, 90); err != nil {
				errs <- fmt.Errorf("settle: %w", err)
			}
		}(engines[g%len(engines)])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, int64(11), ok.Load(), "floor(1000/90) reservations fit")
	assert.Equal(t, int64(990), consume(t, e.eng, tokKey("hot"), s, 0).Used)
}

func testRestart(t *testing.T, h Harness) {
	c := NewClock(T0)
	open := h.Storage(t, c.Now)
	ctx := context.Background()
	s := spec(t, 10, 1, "hour", "calendar")
	eng := counter.New(open(), counter.WithClock(c.Now))
	require.True(t, consume(t, eng, key("a"), s, 6).Allowed)
	r, err := eng.Reserve(ctx, tokKey("a"), s, 4, time.Minute)
	require.NoError(t, err)
	require.NoError(t, eng.Close())

	c.Advance(time.Second)
	eng = counter.New(open(), counter.WithClock(c.Now))
	t.Cleanup(func() { _ = eng.Close() })
	d := consume(t, eng, key("a"), s, 0)
	assert.Equal(t, int64(6), d.Used, "counts survive a restart")
	d, err = eng.Settle(ctx, r.ID, 3)
	require.NoError(t, err, "reservations survive a restart")
	assert.Equal(t, int64(3), d.Used)
}
