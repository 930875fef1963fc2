package bucket

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/window"
)

// calendar is the frame of a calendar window [0, 1000) seen at any instant
// inside it; next is the window after it.
var (
	calendar = counter.Frame{Counter: "c", Kind: window.Calendar, Current: 0, Oldest: 0, Deadline: 1000}
	next     = counter.Frame{Counter: "c", Kind: window.Calendar, Current: 1000, Oldest: 1000, Deadline: 2000}
)

// rollingAt is the frame of a rolling window of 3 buckets of 10 ms at now.
func rollingAt(now int64) counter.Frame {
	cur := now / 10
	return counter.Frame{Counter: "r", Kind: window.Rolling, Current: cur, Oldest: cur - 2, Deadline: (cur + 3) * 10}
}

// flexiAt is the frame of a 100 ms flexi window that would open at now.
func flexiAt(now int64) counter.Frame {
	return counter.Frame{Counter: "f", Kind: window.Flexi, FlexiStart: now, FlexiEnd: now + 100}
}

func op(f counter.Frame, n, limit int64) counter.Op {
	return counter.Op{Frame: f, N: n, Limit: limit}
}

// step is one operation on a State in a table test, with what it must report.
type step struct {
	now int64
	op  *counter.Op
	adj *counter.Adjustment
	// want
	allowed bool
	used    int64
	found   bool // adjustments only
}

func run(t *testing.T, steps []step) *State {
	t.Helper()
	st := &State{}
	for i, s := range steps {
		switch {
		case s.op != nil:
			out, _ := st.Apply(s.now, *s.op)
			assert.Equal(t, s.allowed, out.Allowed, "step %d allowed", i)
			assert.Equal(t, s.used, out.Used, "step %d used", i)
		case s.adj != nil:
			out, found := st.Adjust(s.now, *s.adj)
			require.Equal(t, s.found, found, "step %d found", i)
			if found {
				assert.Equal(t, s.used, out.Used, "step %d used", i)
			}
		}
		checkInvariants(t, st)
	}
	return st
}

func checkInvariants(t *testing.T, st *State) {
	t.Helper()
	for i, b := range st.Buckets {
		require.Positive(t, b.Used, "bucket %d empty but kept", b.Index)
		if i > 0 {
			require.Greater(t, b.Index, st.Buckets[i-1].Index, "buckets out of order")
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestApply(t *testing.T) {
	forced := op(calendar, 5, 3)
	forced.Force = true
	tests := []struct {
		name  string
		steps []step
	}{
		{"consume to the limit, then denied", []step{
			{now: 1, op: ptr(op(calendar, 2, 3)), allowed: true, used: 2},
			{now: 2, op: ptr(op(calendar, 1, 3)), allowed: true, used: 3},
			{now: 3, op: ptr(op(calendar, 1, 3)), allowed: false, used: 3},
			{now: 4, op: ptr(op(calendar, 0, 3)), allowed: true, used: 3},
		}},
		{"limit zero denies everything but peeks", []step{
			{now: 1, op: ptr(op(calendar, 1, 0)), allowed: false, used: 0},
			{now: 1, op: ptr(op(calendar, 0, 0)), allowed: true, used: 0},
		}},
		{"force records usage that does not fit", []step{
			{now: 1, op: &forced, allowed: false, used: 5},
			{now: 2, op: ptr(op(calendar, 0, 3)), allowed: false, used: 5},
		}},
		{"next calendar window starts empty", []step{
			{now: 1, op: ptr(op(calendar, 3, 3)), allowed: true, used: 3},
			{now: 1000, op: ptr(op(next, 1, 3)), allowed: true, used: 1},
		}},
		{"rolling buckets leave one by one", []step{
			{now: 0, op: ptr(op(rollingAt(0), 2, 5)), allowed: true, used: 2},
			{now: 10, op: ptr(op(rollingAt(10), 2, 5)), allowed: true, used: 4},
			{now: 20, op: ptr(op(rollingAt(20), 2, 5)), allowed: false, used: 4},
			{now: 30, op: ptr(op(rollingAt(30), 2, 5)), allowed: true, used: 4}, // bucket 0 left
			{now: 50, op: ptr(op(rollingAt(50), 0, 5)), allowed: true, used: 2}, // bucket 1 left too
		}},
		{"flexi window opens on first use and ends", []step{
			{now: 5, op: ptr(op(flexiAt(5), 0, 2)), allowed: true, used: 0},   // a peek opens nothing
			{now: 50, op: ptr(op(flexiAt(50), 2, 2)), allowed: true, used: 2}, // opens [50, 150)
			{now: 149, op: ptr(op(flexiAt(149), 1, 2)), allowed: false, used: 2},
			{now: 150, op: ptr(op(flexiAt(150), 1, 2)), allowed: true, used: 1}, // new window
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { run(t, tc.steps) })
	}
}

func TestFlexiOutcomeReportsWindow(t *testing.T) {
	st := &State{}
	out, changed := st.Apply(50, op(flexiAt(50), 1, 9))
	assert.True(t, changed)
	assert.Equal(t, int64(50), out.WindowStart)
	assert.Equal(t, int64(150), out.WindowEnd)
	assert.Equal(t, int64(150), st.Lifetime())
	out, _ = st.Apply(200, op(flexiAt(200), 0, 9))
	assert.Zero(t, out.WindowEnd, "a peek after the window ended reports no window")
	assert.True(t, st.Empty(200))
}

func TestRollingOutcomeListsBuckets(t *testing.T) {
	st := &State{}
	st.Apply(5, op(rollingAt(5), 1, 9))
	st.Apply(25, op(rollingAt(25), 2, 9))
	out, _ := st.Apply(26, op(rollingAt(26), 3, 9))
	assert.Equal(t, []counter.Bucket{{Index: 0, Used: 1}, {Index: 2, Used: 5}}, out.Buckets)
	assert.Equal(t, int64(50), st.ExpireAt, "kept until the newest bucket leaves the window")
}

func reserve(f counter.Frame, n, limit int64, token string, expires int64) *counter.Op {
	o := op(f, n, limit)
	o.Reservation, o.ReservationExpires = token, expires
	return &o
}

func adjust(f counter.Frame, token string, actual int64) *counter.Adjustment {
	return &counter.Adjustment{Frame: f, Reservation: token, Actual: actual}
}

func TestReservations(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"settle replaces the reserved amount", []step{
			{now: 1, op: reserve(calendar, 5, 10, "a", 500), allowed: true, used: 5},
			{now: 2, adj: adjust(calendar, "a", 3), found: true, used: 3},
			{now: 3, adj: adjust(calendar, "a", 3), found: false}, // closed once
		}},
		{"settle above the reservation counts the actual usage", []step{
			{now: 1, op: reserve(calendar, 5, 10, "a", 500), allowed: true, used: 5},
			{now: 2, adj: adjust(calendar, "a", 12), found: true, used: 12},
		}},
		{"release gives everything back", []step{
			{now: 1, op: ptr(op(calendar, 1, 10)), allowed: true, used: 1},
			{now: 1, op: reserve(calendar, 5, 10, "a", 500), allowed: true, used: 6},
			{now: 2, adj: adjust(calendar, "a", -1), found: true, used: 1},
		}},
		{"an expired reservation is released", []step{
			{now: 1, op: reserve(calendar, 8, 10, "a", 100), allowed: true, used: 8},
			{now: 99, op: ptr(op(calendar, 5, 10)), allowed: false, used: 8},
			{now: 100, op: ptr(op(calendar, 5, 10)), allowed: true, used: 5},
			{now: 101, adj: adjust(calendar, "a", 8), found: false},
		}},
		{"settle after the window ended changes nothing counted", []step{
			{now: 1, op: reserve(calendar, 5, 10, "a", 5000), allowed: true, used: 5},
			{now: 1500, adj: adjust(next, "a", 9), found: true, used: 0},
			{now: 1501, op: ptr(op(next, 0, 10)), allowed: true, used: 0},
		}},
		{"a denied reservation is not recorded", []step{
			{now: 1, op: reserve(calendar, 11, 10, "a", 500), allowed: false, used: 0},
			{now: 2, adj: adjust(calendar, "a", 1), found: false},
		}},
		{"a flexi reservation opens the window and stays in it", []step{
			{now: 10, op: reserve(flexiAt(10), 0, 10, "a", 50), allowed: true, used: 0},
			{now: 20, adj: adjust(flexiAt(20), "a", 4), found: true, used: 4},
			{now: 30, op: ptr(op(flexiAt(30), 0, 10)), allowed: true, used: 4},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { run(t, tc.steps) })
	}
}

func TestChargeAndRefund(t *testing.T) {
	st := &State{}
	o := *reserve(calendar, 4, 10, "tok", 500)
	c := st.Prune(1, o.Frame)
	require.True(t, Fits(c, o, 6))
	require.False(t, Fits(c, o, 7))
	at, c := st.Charge(o, c)
	assert.Equal(t, int64(0), at)
	assert.Equal(t, int64(4), c.Used)
	st.Refund(at, o.N, o.Reservation)
	assert.Empty(t, st.Buckets)
	assert.Empty(t, st.Reservations)
	_, found := st.Adjust(2, counter.Adjustment{Frame: calendar, Reservation: "tok"})
	assert.False(t, found)
}

func TestEncodeRoundTrip(t *testing.T) {
	tests := []State{
		{},
		{FlexiStart: 1, FlexiEnd: 2, ExpireAt: 3, Buckets: []counter.Bucket{{Index: -1, Used: 2}, {Index: 3, Used: 4}}},
		{ExpireAt: 9, Reservations: []Reservation{{Token: "abc", Bucket: 1, Amount: 2, Expires: 3}, {Token: "", Bucket: -1}}},
	}
	for _, st := range tests {
		b, err := st.AppendBinary(nil)
		require.NoError(t, err)
		got, err := Decode(b)
		require.NoError(t, err)
		got.nextExpiry = 0
		assert.Equal(t, st, got)
	}
}

func TestDecodeRejects(t *testing.T) {
	valid, err := (&State{Buckets: []counter.Bucket{{Index: 1, Used: 1}}}).AppendBinary(nil)
	require.NoError(t, err)
	twoBuckets := func(i0, u0, i1, u1 int64) []byte {
		b := []byte{encodingVersion}
		b = append(b, make([]byte, 24)...)
		b = binary.LittleEndian.AppendUint16(b, 2)
		for _, v := range []int64{i0, u0, i1, u1} {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
		return binary.LittleEndian.AppendUint16(b, 0)
	}
	tests := map[string][]byte{
		"unknown version":     {2},
		"truncated header":    {encodingVersion, 1},
		"trailing bytes":      append(valid, 0),
		"truncated bucket":    valid[:len(valid)-3],
		"buckets unordered":   twoBuckets(5, 1, 4, 1),
		"bucket listed twice": twoBuckets(5, 1, 5, 1),
		"empty bucket":        twoBuckets(4, 0, 5, 1),
		"reservation cut":     append(append([]byte{}, valid[:len(valid)-2]...), 1, 0, 9),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(b)
			assert.ErrorIs(t, err, ErrCorrupt)
		})
	}
}

func TestEncodeLimits(t *testing.T) {
	long := string(make([]byte, MaxTokenLen+1))
	_, err := (&State{Reservations: []Reservation{{Token: long}}}).AppendBinary(nil)
	assert.ErrorIs(t, err, ErrTooLarge)
	_, err = (&State{Buckets: make([]counter.Bucket, MaxBuckets+1)}).AppendBinary(nil)
	assert.ErrorIs(t, err, ErrTooLarge)
}
