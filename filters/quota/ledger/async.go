package ledger

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/table"
	"github.com/tollgate/tollgate/window"
)

// Async keeps the local half of async mode: per counter, the global usage
// the keystore reported at the last sync, the usage counted here since, and
// the share of it being pushed right now. Requests are decided against the
// sum, without waiting for the keystore; a periodic sync (Claim, then
// Complete or Abort) pushes the local usage and pulls the global count.
type Async struct {
	t *table.Table
	// OnEvict, when set, is called when a live record had to be evicted.
	OnEvict func()
}

// NewAsync returns async counter states stored in t.
func NewAsync(t *table.Table) *Async { return &Async{t: t} }

// AsyncState is one counter's async record.
type AsyncState struct {
	// Global is the usage the keystore reported at the last sync, which
	// includes every push completed before it.
	Global int64
	// Pending is usage counted here and not yet pushed.
	Pending int64
	// Inflight is usage being pushed by a sync in progress.
	Inflight int64
	// WindowEnd is when the counted usage is entirely forgotten (Unix ms;
	// 0 unknown): the keystore's reset, or the local calendar window's end.
	WindowEnd int64
	// Lease is when a sync in progress is presumed lost (Unix ms; 0 none).
	Lease int64
	// LastSync is when the last sync completed (Unix ms).
	LastSync int64
}

// Used is the usage a decision counts: the global count plus local usage
// the keystore has not seen yet.
func (s AsyncState) Used() int64 { return s.Global + s.Inflight + s.Pending }

const asyncLen = 48

func (s AsyncState) encode() []byte {
	b := make([]byte, 0, asyncLen)
	for _, v := range []int64{s.Global, s.Pending, s.Inflight, s.WindowEnd, s.Lease, s.LastSync} {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func decodeAsync(b []byte) AsyncState {
	if len(b) != asyncLen {
		return AsyncState{}
	}
	u := func(i int) int64 { return int64(binary.LittleEndian.Uint64(b[8*i:])) }
	return AsyncState{Global: u(0), Pending: u(1), Inflight: u(2), WindowEnd: u(3), Lease: u(4), LastSync: u(5)}
}

// roll starts a new window once the known one has ended: the global count
// is forgotten, and so is unpushed usage of an ended calendar or flexi
// window (a rolling window still counts it). Calendar windows are known
// locally before the first sync.
func (s *AsyncState) roll(spec window.Spec, now time.Time) {
	nowMs := now.UnixMilli()
	if s.WindowEnd != 0 && nowMs >= s.WindowEnd {
		s.Global = 0
		if spec.Kind != window.Rolling {
			s.Pending = 0
		}
		s.WindowEnd = 0
	}
	if s.WindowEnd == 0 && spec.Kind == window.Calendar {
		_, end := spec.CalendarWindow(now)
		s.WindowEnd = end.UnixMilli()
	}
}

// AsyncDecision is the local answer for one request.
type AsyncDecision struct {
	Allowed    bool
	Limit      int64
	Used       int64
	Remaining  int64
	Reset      time.Time
	RetryAfter time.Duration
	// Pending is the usage counted here and not yet pushed, after this request.
	Pending int64
}

func (s *AsyncState) expiry(spec window.Spec, now time.Time) int64 {
	return max(s.WindowEnd, s.Lease, now.Add(spec.Length()).UnixMilli())
}

func (a *Async) update(id string, now time.Time, fn table.Mutator) error {
	ev, err := a.t.Update("a|"+id, now.UnixMilli(), fn)
	if ev && a.OnEvict != nil {
		a.OnEvict()
	}
	if err != nil {
		return config.Wrap("ledger: async: ", err, "")
	}
	return nil
}

// Consume counts n against the local view of counter id under spec.
func (a *Async) Consume(id string, spec window.Spec, n int64, now time.Time) (AsyncDecision, error) {
	var d AsyncDecision
	err := a.update(id, now, func(old []byte, _ int64) ([]byte, int64, bool) {
		st := decodeAsync(old)
		before := st
		st.roll(spec, now)
		used := st.Used()
		d = AsyncDecision{Allowed: used+n <= spec.Limit, Limit: spec.Limit}
		if d.Allowed {
			st.Pending += n
			used += n
		}
		d.Used, d.Remaining, d.Pending = used, max(0, spec.Limit-used), st.Pending
		if st.WindowEnd != 0 {
			d.Reset = time.UnixMilli(st.WindowEnd).UTC()
		} else {
			d.Reset = now.Add(spec.Length())
		}
		if !d.Allowed {
			d.RetryAfter = max(0, d.Reset.Sub(now))
		}
		if st == before {
			return nil, 0, false
		}
		return st.encode(), st.expiry(spec, now), true
	})
	return d, err
}

// Claim starts a sync of counter id: it moves the pending usage into
// flight and leases the counter until now+lease, so that only one worker
// pushes it. It claims nothing when another worker's lease is live, or when
// nothing is pending and the counter was synced less than fresh ago (a pull
// would tell nothing new). A lapsed lease's usage is pushed again: the
// keystore may then count it twice, which over-counts but never loses it.
func (a *Async) Claim(id string, spec window.Spec, now time.Time, lease, fresh time.Duration) (delta int64, claimed bool, err error) {
	nowMs := now.UnixMilli()
	err = a.update(id, now, func(old []byte, _ int64) ([]byte, int64, bool) {
		claimed = false
		if old == nil {
			return nil, 0, false
		}
		st := decodeAsync(old)
		if st.Lease > nowMs {
			return nil, 0, false
		}
		st.roll(spec, now)
		if st.Pending == 0 && st.Inflight == 0 && nowMs-st.LastSync < fresh.Milliseconds() {
			return nil, 0, false
		}
		st.Pending, st.Inflight = 0, st.Inflight+st.Pending
		delta, claimed = st.Inflight, true
		st.Lease = now.Add(lease).UnixMilli()
		return st.encode(), st.expiry(spec, now), true
	})
	return delta, claimed, err
}

// Complete ends a sync with the keystore's answer: used is the global usage
// after the push, resetAfter the time until the keystore forgets it.
func (a *Async) Complete(id string, spec window.Spec, now time.Time, used int64, resetAfter time.Duration) error {
	return a.update(id, now, func(old []byte, _ int64) ([]byte, int64, bool) {
		st := decodeAsync(old) // an evicted record restarts from the keystore's view
		st.Global, st.Inflight, st.Lease, st.LastSync = used, 0, 0, now.UnixMilli()
		st.WindowEnd = 0
		if resetAfter > 0 {
			st.WindowEnd = now.Add(resetAfter).UnixMilli()
		}
		return st.encode(), st.expiry(spec, now), true
	})
}

// Abort ends a failed sync: the usage in flight is pending again, to be
// pushed by the next sync.
func (a *Async) Abort(id string, spec window.Spec, now time.Time) error {
	return a.update(id, now, func(old []byte, _ int64) ([]byte, int64, bool) {
		st := decodeAsync(old)
		st.Pending, st.Inflight, st.Lease = st.Pending+st.Inflight, 0, 0
		return st.encode(), st.expiry(spec, now), true
	})
}

// State returns counter id's record (zero when absent), for tests and
// diagnostics.
func (a *Async) State(id string, now time.Time) (AsyncState, error) {
	v, _, _, err := a.t.Get("a|"+id, now.UnixMilli())
	if err != nil {
		return AsyncState{}, config.Wrap("ledger: async: ", err, "")
	}
	return decodeAsync(v), nil
}

// Health records the outcome of this Envoy's keystore syncs, so that async
// rules in fail-closed mode can refuse requests once syncing has failed for
// too long.
type Health struct{ t *table.Table }

// NewHealth returns the sync health record stored in t.
func NewHealth(t *table.Table) *Health { return &Health{t: t} }

const healthID = "h|keystore"

// Record notes a sync outcome at now.
func (h *Health) Record(ok bool, now time.Time) error {
	nowMs := now.UnixMilli()
	_, err := h.t.Update(healthID, nowMs, func(old []byte, _ int64) ([]byte, int64, bool) {
		var lastOK, lastFail int64
		if len(old) == 16 {
			lastOK, lastFail = int64(binary.LittleEndian.Uint64(old)), int64(binary.LittleEndian.Uint64(old[8:]))
		}
		if ok {
			lastOK = nowMs
		} else {
			lastFail = nowMs
		}
		b := binary.LittleEndian.AppendUint64(nil, uint64(lastOK))
		return binary.LittleEndian.AppendUint64(b, uint64(lastFail)), math.MaxInt64, true
	})
	if err != nil {
		return config.Wrap("ledger: health: ", err, "")
	}
	return nil
}

// Failing reports whether the last sync failed and no sync has succeeded
// for longer than after.
func (h *Health) Failing(now time.Time, after time.Duration) (bool, error) {
	v, _, _, err := h.t.Get(healthID, now.UnixMilli())
	if err != nil {
		return false, config.Wrap("ledger: health: ", err, "")
	}
	if len(v) != 16 {
		return false, nil
	}
	lastOK, lastFail := int64(binary.LittleEndian.Uint64(v)), int64(binary.LittleEndian.Uint64(v[8:]))
	return lastFail > lastOK && now.UnixMilli()-lastOK > after.Milliseconds(), nil
}
