package countertest

import (
	"context"
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

// runLease runs the budget-lease contract (counter.LeaseBackend).
func runLease(t *testing.T, h Harness) {
	t.Run("LeaseGrantUpToRemaining", func(t *testing.T) { testLeaseGrant(t, h) })
	t.Run("LeaseMinRespected", func(t *testing.T) { testLeaseMin(t, h) })
	t.Run("LeaseDrawdown", func(t *testing.T) { testLeaseDrawdown(t, h) })
	t.Run("LeaseShrinkAndClose", func(t *testing.T) { testLeaseShrinkClose(t, h) })
	t.Run("LeaseExpiryReturnsBudget", func(t *testing.T) { testLeaseExpiry(t, h) })
	t.Run("LeaseLostForceCharges", func(t *testing.T) { testLeaseLost(t, h) })
	t.Run("LeaseFrameRoll", func(t *testing.T) { testLeaseFrameRoll(t, h) })
	t.Run("LeaseFlexi", func(t *testing.T) { testLeaseFlexi(t, h) })
	t.Run("LeaseBatchItems", func(t *testing.T) { testLeaseBatch(t, h) })
	t.Run("LeaseResendCountedOnce", func(t *testing.T) { testLeaseResend(t, h) })
	t.Run("LeaseConcurrentExact", func(t *testing.T) { testLeaseConcurrent(t, h) })
}

// lease runs one lease request and requires it to succeed.
func lease(t *testing.T, eng *counter.Engine, r counter.LeaseRequest) counter.Lease {
	t.Helper()
	ls, err := eng.Lease(context.Background(), []counter.LeaseRequest{r})
	require.NoError(t, err)
	require.Len(t, ls, 1)
	require.NoError(t, ls[0].Err)
	return ls[0]
}

func leaseReq(k counter.Key, s window.Spec, id string, used, want int64) counter.LeaseRequest {
	return counter.LeaseRequest{Key: k, Spec: s, ID: id, Used: used, Want: want}
}

func testLeaseGrant(t *testing.T, h Harness) {
	for _, kind := range []string{"calendar", "rolling", "flexi"} {
		t.Run(kind, func(t *testing.T) {
			e := setup(t, h)
			e.clock.Set(T0.Add(10 * time.Second))
			s := spec(t, 1000, 1, "minute", kind)
			require.True(t, consume(t, e.eng, tokKey("a"), s, 700).Allowed)
			l := lease(t, e.eng, leaseReq(tokKey("a"), s, "", 0, 500))
			assert.NotEmpty(t, l.ID)
			assert.False(t, l.Lost)
			assert.Equal(t, int64(300), l.Held, "granted up to what remains")
			assert.Equal(t, int64(1000), l.Used, "the held amount is counted")
			assert.Equal(t, int64(0), l.Remaining)
			assert.Equal(t, int64(1000), l.Limit)
			switch kind {
			case "rolling": // the lease belongs to the 1 s sub-bucket [10 s, 11 s)
				assert.Equal(t, T0.Add(11*time.Second), l.ValidUntil)
			default: // the default TTL (30 s) ends before the window
				assert.Equal(t, T0.Add(40*time.Second), l.ValidUntil)
			}
			assert.False(t, consume(t, e.eng, tokKey("a"), s, 1).Allowed, "the lease holds the rest")
			l2 := lease(t, e.eng, leaseReq(tokKey("a"), s, "", 0, 100))
			assert.Empty(t, l2.ID, "nothing left: no lease")
			assert.Equal(t, int64(0), l2.Held)
			assert.True(t, l2.ValidUntil.IsZero())
		})
	}
}

func testLeaseMin(t *testing.T, h Harness) {
	e := setup(t, h)
	s := spec(t, 100, 1, "hour", "calendar")
	require.True(t, consume(t, e.eng, tokKey("a"), s, 70).Allowed)
	r := leaseReq(tokKey("a"), s, "", 0, 50)
	r.Min = 40
	l := lease(t, e.eng, r)
	assert.Empty(t, l.ID, "30 left is below min 40: nothing granted")
	assert.Equal(t, int64(0), l.Held)
	assert.Equal(t, int64(70), l.Used)
	r.Min = 30
	l = lease(t, e.eng, r)
	assert.Equal(t, int64(30), l.Held, "min 30 fits")
	assert.Equal(t, int64(100), l.Used)

	// A top-up counts what is already held against min.
	r = leaseReq(tokKey("a"), s, l.ID, 0, 60)
	r.Min = 30
	l = lease(t, e.eng, r)
	assert.Equal(t, int64(30), l.Held, "held 30 already meets min; nothing more fits")
}

func testLeaseDrawdown(t *testing.T, h Harness) {
	e := setup(t, h)
	s := spec(t, 1000, 1, "hour", "calendar")
	k := tokKey("a")
	l := lease(t, e.eng, leaseReq(k, s, "", 0, 500))
	require.Equal(t, int64(500), l.Held)
	id := l.ID

	l = lease(t, e.eng, leaseReq(k, s, id, 200, 500))
	assert.Equal(t, id, l.ID, "the same lease continues")
	assert.False(t, l.Lost)
	assert.Equal(t, int64(500), l.Held, "drawn 200, topped up 200")
	assert.Equal(t, int64(700), l.Used, "200 consumed + 500 held")

	l = lease(t, e.eng, leaseReq(k, s, id, 100, 400))
	assert.Equal(t, int64(400), l.Held)
	assert.Equal(t, int64(700), l.Used, "consumption stays counted")

	// Top-up only up to what fits: 300 consumed + 400 held, 300 left.
	l = lease(t, e.eng, leaseReq(k, s, id, 0, 900))
	assert.Equal(t, int64(700), l.Held)
	assert.Equal(t, int64(1000), l.Used)

	// Consumption above the held amount is force-charged.
	l = lease(t, e.eng, leaseReq(k, s, id, 750, 100))
	assert.Empty(t, l.ID, "nothing left to hold")
	assert.Equal(t, int64(0), l.Held)
	assert.Equal(t, int64(1050), l.Used, "1050 consumed, 50 above the limit")
	assert.False(t, consume(t, e.eng, k, s, 1).Allowed)
}

func testLeaseShrinkClose(t *testing.T, h Harness) {
	e := setup(t, h)
	s := spec(t, 1000, 1, "hour", "calendar")
	k := tokKey("a")
	l := lease(t, e.eng, leaseReq(k, s, "", 0, 800))
	id := l.ID
	l = lease(t, e.eng, leaseReq(k, s, id, 100, 200))
	assert.Equal(t, id, l.ID)
	assert.Equal(t, int64(200), l.Held, "shrunk")
	assert.Equal(t, int64(300), l.Used, "100 consumed + 200 held; 500 returned")
	assert.True(t, consume(t, e.eng, k, s, 700).Allowed, "the returned budget is usable")

	l = lease(t, e.eng, leaseReq(k, s, id, 50, 0))
	assert.Empty(t, l.ID, "want 0 closes")
	assert.Equal(t, int64(0), l.Held)
	assert.Equal(t, int64(850), l.Used, "100+50 consumed + 700; 150 returned")
	assert.False(t, l.Lost)

	// The closed id is gone: a late report on it is charged once, as lost.
	l = lease(t, e.eng, leaseReq(k, s, id, 10, 0))
	assert.True(t, l.Lost)
	assert.Equal(t, int64(860), l.Used)
}

func testLeaseExpiry(t *testing.T, h Harness) {
	for _, kind := range []string{"calendar", "rolling", "flexi"} {
		t.Run(kind, func(t *testing.T) {
			e := setup(t, h)
			s := spec(t, 1000, 1, "hour", kind)
			k := tokKey("a")
			r := leaseReq(k, s, "", 0, 900)
			r.TTL = 10 * time.Second
			l := lease(t, e.eng, r)
			require.Equal(t, int64(900), l.Held)
			assert.Equal(t, T0.Add(10*time.Second), l.ValidUntil)

			// A renewal moves the expiry.
			e.clock.Advance(8 * time.Second)
			r = leaseReq(k, s, l.ID, 100, 900)
			r.TTL = 10 * time.Second
			l = lease(t, e.eng, r)
			require.False(t, l.Lost)
			assert.Equal(t, int64(900), l.Held)
			assert.Equal(t, T0.Add(18*time.Second), l.ValidUntil)
			e.clock.Advance(10*time.Second - time.Millisecond)
			assert.Equal(t, int64(1000), consume(t, e.eng, k, s, 0).Used, "not expired yet")
			e.clock.Advance(time.Millisecond)
			assert.Equal(t, int64(100), consume(t, e.eng, k, s, 0).Used, "the expired lease's budget returned")

			// A report on the expired lease is charged once and opens a new one.
			l = lease(t, e.eng, leaseReq(k, s, l.ID, 40, 100))
			assert.True(t, l.Lost)
			assert.NotEmpty(t, l.ID)
			assert.Equal(t, int64(100), l.Held)
			assert.Equal(t, int64(240), l.Used, "100 + 40 consumed + 100 held")
		})
	}
}

func testLeaseLost(t *testing.T, h Harness) {
	e := setup(t, h)
	s := spec(t, 1000, 1, "hour", "calendar")
	k := tokKey("a")
	l := lease(t, e.eng, leaseReq(k, s, "", 0, 10))
	gone := l.ID
	lease(t, e.eng, leaseReq(k, s, gone, 0, 0))
	require.True(t, consume(t, e.eng, k, s, 900).Allowed)

	// Unknown lease, consumption above what is left: charged with force.
	l = lease(t, e.eng, leaseReq(k, s, gone, 300, 50))
	assert.True(t, l.Lost)
	assert.Empty(t, l.ID, "nothing left for a new lease")
	assert.Equal(t, int64(1200), l.Used, "300 charged once, above the limit")

	// A lease id of another counter is unknown to this one.
	other := lease(t, e.eng, leaseReq(tokKey("b"), s, "", 0, 10))
	l = lease(t, e.eng, leaseReq(k, s, other.ID, 5, 0))
	assert.True(t, l.Lost)
	assert.Equal(t, int64(1205), l.Used)
	assert.Equal(t, int64(10), consume(t, e.eng, tokKey("b"), s, 0).Used, "the other lease is untouched")

	// A report without an id is charged too.
	l = lease(t, e.eng, leaseReq(k, s, "", 5, 0))
	assert.False(t, l.Lost)
	assert.Equal(t, int64(1210), l.Used)
}

func testLeaseFrameRoll(t *testing.T, h Harness) {
	t.Run("calendar", func(t *testing.T) {
		e := setup(t, h)
		s := spec(t, 1000, 1, "minute", "calendar")
		k := tokKey("a")
		e.clock.Set(T0.Add(50 * time.Second))
		l := lease(t, e.eng, leaseReq(k, s, "", 0, 400))
		assert.Equal(t, T0.Add(time.Minute), l.ValidUntil, "the window ends before the TTL")
		e.clock.Set(T0.Add(70 * time.Second))
		l2 := lease(t, e.eng, leaseReq(k, s, l.ID, 150, 300))
		assert.True(t, l2.Lost, "a lease of an ended window does not continue")
		assert.NotEqual(t, l.ID, l2.ID)
		assert.Equal(t, int64(300), l2.Held)
		assert.Equal(t, int64(300), l2.Used, "usage drawn in minute 1 stays in minute 1")
		assert.Equal(t, T0.Add(100*time.Second), l2.ValidUntil)
	})
	t.Run("rolling", func(t *testing.T) {
		e := setup(t, h)
		s := spec(t, 1000, 1, "minute", "rolling")
		k := tokKey("a")
		e.clock.Set(T0.Add(10*time.Second + 500*time.Millisecond))
		l := lease(t, e.eng, leaseReq(k, s, "", 0, 400))
		assert.Equal(t, T0.Add(11*time.Second), l.ValidUntil, "the 1 s sub-bucket ends")
		e.clock.Set(T0.Add(12 * time.Second))
		l2 := lease(t, e.eng, leaseReq(k, s, l.ID, 150, 300))
		assert.True(t, l2.Lost, "a lease of an older sub-bucket does not continue")
		assert.Equal(t, int64(300), l2.Held)
		assert.Equal(t, int64(450), l2.Used, "150 settled in the old sub-bucket, 250 returned, 300 held")
		e.clock.Set(T0.Add(45 * time.Second))
		assert.Equal(t, int64(150), consume(t, e.eng, k, s, 0).Used, "the new lease expired at 42 s")
		e.clock.Set(T0.Add(71 * time.Second))
		assert.Equal(t, int64(0), consume(t, e.eng, k, s, 0).Used, "the old sub-bucket is counted until 71 s")
	})
}

func testLeaseFlexi(t *testing.T, h Harness) {
	e := setup(t, h)
	s := spec(t, 100, 1, "minute", "flexi")
	k := tokKey("a")
	e.clock.Set(T0.Add(5 * time.Second))
	l := lease(t, e.eng, leaseReq(k, s, "", 0, 0))
	assert.Empty(t, l.ID)
	assert.Equal(t, T0.Add(65*time.Second), consume(t, e.eng, k, s, 0).Reset, "want 0 opens no window")
	e.clock.Set(T0.Add(20 * time.Second))
	l = lease(t, e.eng, leaseReq(k, s, "", 0, 60))
	assert.Equal(t, int64(60), l.Held)
	assert.Equal(t, T0.Add(50*time.Second), l.ValidUntil)
	assert.Equal(t, T0.Add(80*time.Second), l.Reset, "the grant opened the window")
	e.clock.Set(T0.Add(45 * time.Second))
	r := leaseReq(k, s, l.ID, 10, 60)
	r.TTL = time.Minute
	l = lease(t, e.eng, r)
	assert.Equal(t, T0.Add(80*time.Second), l.ValidUntil, "the window ends before the TTL")
	e.clock.Set(T0.Add(81 * time.Second))
	l = lease(t, e.eng, leaseReq(k, s, l.ID, 20, 10))
	assert.True(t, l.Lost, "the window ended")
	assert.Equal(t, int64(10), l.Used, "the old window's usage is gone; 10 held in a new window")
	assert.Equal(t, T0.Add(141*time.Second), l.Reset)
}

func testLeaseBatch(t *testing.T, h Harness) {
	e := setup(t, h)
	s := spec(t, 100, 1, "hour", "calendar")
	k := tokKey("a")
	bad := leaseReq(k, s, "", 0, 10)
	bad.Min = 20
	longTTL := leaseReq(k, s, "", 0, 10)
	longTTL.TTL = counter.MaxLeaseTTL + time.Millisecond
	ls, err := e.eng.Lease(context.Background(), []counter.LeaseRequest{
		leaseReq(k, s, "", 0, 60),
		bad,
		leaseReq(k, s, "", 0, 60), // the same counter again: sees the first grant
		leaseReq(k, s, "not-a-lease-id", 0, 10),
		longTTL,
	})
	require.NoError(t, err)
	require.Len(t, ls, 5)
	assert.Equal(t, int64(60), ls[0].Held)
	require.ErrorIs(t, ls[1].Err, counter.ErrInvalidRequest)
	assert.Equal(t, int64(40), ls[2].Held)
	assert.Equal(t, int64(100), ls[2].Used)
	require.ErrorIs(t, ls[3].Err, counter.ErrInvalidRequest)
	require.ErrorIs(t, ls[4].Err, counter.ErrInvalidRequest)

	_, err = e.eng.Lease(context.Background(), nil)
	require.ErrorIs(t, err, counter.ErrInvalidRequest)
	_, err = e.eng.Lease(context.Background(), make([]counter.LeaseRequest, counter.MaxBatch+1))
	require.ErrorIs(t, err, counter.ErrInvalidRequest)
}

// testLeaseConcurrent: 64 leasers (over two engine instances when the
// backend is shared) draw budget through leases until none is granted; what
// they drew never exceeds the limit, the counter holds exactly what they
// drew once every lease is closed, and the rest is still there.
func testLeaseConcurrent(t *testing.T, h Harness) {
	e := setup(t, h)
	engines := []*counter.Engine{e.eng}
	if h.Shared {
		engines = append(engines, e.engine(t))
	}
	const limit = 1000
	s := spec(t, limit, 1, "hour", "calendar")
	k := tokKey("hot")
	var drawn atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Add(1)
		go func(eng *counter.Engine, want int64) {
			defer wg.Done()
			ctx := context.Background()
			id, held := "", int64(0)
			for range 50 {
				ls, err := eng.Lease(ctx, []counter.LeaseRequest{{Key: k, Spec: s, ID: id, Used: held, Want: want}})
				if err == nil {
					err = ls[0].Err
				}
				if err != nil {
					errs <- err
					return
				}
				if ls[0].Lost {
					errs <- fmt.Errorf("lease %q lost", id)
					return
				}
				drawn.Add(held) // reported above, so counted exactly once
				id, held = ls[0].ID, ls[0].Held
				if held == 0 {
					return
				}
			}
			// Out of rounds: close the lease, reporting all of it as used.
			if _, err := eng.Lease(ctx, []counter.LeaseRequest{{Key: k, Spec: s, ID: id, Used: held}}); err != nil {
				errs <- err
				return
			}
			drawn.Add(held)
		}(engines[g%len(engines)], int64(5+g%7))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got := drawn.Load()
	assert.LessOrEqual(t, got, int64(limit), "never more drawn than the limit")
	assert.Positive(t, got)
	assert.Equal(t, got, consume(t, e.eng, k, s, 0).Used, "every drawn unit counted once")
	l := lease(t, e.eng, leaseReq(k, s, "", 0, limit))
	assert.Equal(t, limit-got, l.Held, "the rest of the budget is grantable")
}

// testLeaseResend: a report re-sent with the same seq (its answer was lost)
// counts only what is new, also after the lease closed or was lost; without
// a seq a re-send counts again.
func testLeaseResend(t *testing.T, h Harness) {
	e := setup(t, h)
	s := spec(t, 1000, 1, "hour", "calendar")
	k := tokKey("a")
	seq := func(id string, used, want, n int64) counter.LeaseRequest {
		r := leaseReq(k, s, id, used, want)
		r.Seq = n
		return r
	}
	l := lease(t, e.eng, seq("", 0, 100, 1))
	id := l.ID
	l = lease(t, e.eng, seq(id, 30, 100, 2))
	require.Equal(t, int64(130), l.Used)
	l = lease(t, e.eng, seq(id, 30, 100, 2))
	assert.Equal(t, id, l.ID)
	assert.False(t, l.Lost)
	assert.Equal(t, int64(100), l.Held)
	assert.Equal(t, int64(130), l.Used, "the re-send is not drawn again")
	l = lease(t, e.eng, seq(id, 45, 100, 2))
	assert.Equal(t, int64(145), l.Used, "only the 15 new units are drawn")
	l = lease(t, e.eng, seq(id, 10, 100, 3))
	assert.Equal(t, int64(155), l.Used, "the next seq counts in full")

	// Closing with a seq leaves a tombstone: the re-send of the close is
	// answered as lost and counts nothing twice.
	l = lease(t, e.eng, seq(id, 10, 0, 4))
	require.Empty(t, l.ID)
	require.Equal(t, int64(65), l.Used)
	l = lease(t, e.eng, seq(id, 10, 0, 4))
	assert.True(t, l.Lost)
	assert.Equal(t, int64(65), l.Used, "the close's report counted once")

	// A lost lease's report, re-sent, is charged once.
	l = lease(t, e.eng, seq(id, 20, 0, 9))
	assert.True(t, l.Lost)
	assert.Equal(t, int64(85), l.Used)
	l = lease(t, e.eng, seq(id, 20, 0, 9))
	assert.Equal(t, int64(85), l.Used)

	// Without a seq, a re-send counts again.
	l = lease(t, e.eng, leaseReq(k, s, "", 0, 50))
	l2 := lease(t, e.eng, leaseReq(k, s, l.ID, 5, 50))
	require.Equal(t, int64(140), l2.Used)
	l2 = lease(t, e.eng, leaseReq(k, s, l.ID, 5, 50))
	assert.Equal(t, int64(145), l2.Used)

	// The tombstone lives for the TTL; after it a re-send is charged again.
	e.clock.Advance(counter.DefaultLeaseTTL)
	l = lease(t, e.eng, seq(id, 20, 0, 9))
	assert.Equal(t, int64(115), l.Used, "the 50 held expired: 85 + 10 drawn + 20 charged again")
}
