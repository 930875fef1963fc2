// Package bucket is the counting arithmetic of one counter — buckets of
// usage, the flexi window and open reservations — written once in Go for
// every Go counter.Backend: counter/memstore holds States in maps, and
// filters/quota/ledger stores them encoded in proxy-wasm shared data. The
// Redis backend's counter.lua is the same rules in Lua; the contract suite
// in counter/countertest runs all three.
//
// The package is plain Go with no dependencies beyond counter and window, so
// it builds for GOOS=wasip1.
package bucket

import (
	"math"
	"slices"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/window"
)

// Reservation is an open reservation: its amount was added to Bucket and is
// taken back on expiry or release, or replaced on settle.
type Reservation struct {
	// Token is the id the engine gave the reservation.
	Token string
	// Bucket is the bucket index the amount was charged to.
	Bucket int64
	// Amount is the usage reserved.
	Amount int64
	// Expires is when the reservation is released automatically (Unix ms).
	Expires int64
	// Seq and Reported remember a budget lease's last report (its sequence
	// number and the used it reported) so that a re-send is not counted
	// twice; 0 for reservations. AppendBinary does not store them: the
	// shared-data ledger holds no leases.
	Seq, Reported int64
}

// State is one counter as the counter.Backend contract describes it. The
// zero value is an empty counter.
type State struct {
	// FlexiStart and FlexiEnd bound the live flexi window; 0 when none.
	FlexiStart, FlexiEnd int64
	// ExpireAt is when nothing in the state matters any more (Unix ms): the
	// state may be dropped from then on.
	ExpireAt int64
	// Buckets are the usage buckets in ascending index order, each Used > 0.
	Buckets []counter.Bucket
	// Reservations are the open reservations, in the order they were made.
	Reservations []Reservation
	// nextExpiry is the earliest reservation expiry when known, 0 when it
	// is unknown (a State built or decoded elsewhere) or there is none.
	nextExpiry int64
}

// Counted is a State's view at one instant after Prune: what the op or
// adjustment that follows is decided on.
type Counted struct {
	// Used is the usage counted in the window.
	Used int64
	// Oldest is the oldest bucket index counted.
	Oldest int64
	// Live reports whether a flexi window is open.
	Live bool
}

// Prune applies the contract's expiry rules at now: a flexi window that has
// ended forgets its buckets, expired reservations give back their amount,
// and buckets older than the frame's oldest are dropped. It returns what is
// counted afterwards.
func (st *State) Prune(now int64, f counter.Frame) Counted {
	c := Counted{Oldest: f.Oldest}
	if f.Kind == window.Flexi {
		if st.FlexiEnd > 0 && now < st.FlexiEnd {
			c.Oldest, c.Live = st.FlexiStart, true
		} else {
			st.Buckets = st.Buckets[:0]
			st.FlexiStart, st.FlexiEnd = 0, 0
			c.Oldest = math.MaxInt64
		}
	}
	if len(st.Reservations) > 0 && (st.nextExpiry == 0 || now >= st.nextExpiry) {
		st.nextExpiry = 0
		kept := st.Reservations[:0]
		for _, r := range st.Reservations {
			if r.Expires <= now {
				if r.Bucket >= c.Oldest {
					st.add(r.Bucket, -r.Amount)
				}
				continue
			}
			kept = append(kept, r)
			st.noteExpiry(r.Expires)
		}
		clear(st.Reservations[len(kept):])
		st.Reservations = kept
	}
	i := 0
	for i < len(st.Buckets) && st.Buckets[i].Index < c.Oldest {
		i++
	}
	st.Buckets = slices.Delete(st.Buckets, 0, i)
	for _, b := range st.Buckets {
		c.Used += b.Used
	}
	return c
}

// noteExpiry keeps nextExpiry the earliest of the open reservations' expiries.
func (st *State) noteExpiry(at int64) {
	if st.nextExpiry == 0 || at < st.nextExpiry {
		st.nextExpiry = at
	}
}

// Fits reports whether op's N fits the limit on top of c and of pending, the
// usage earlier ops of the same atomic batch add to the same counter. Force
// is the caller's business: a forced op is applied even when it does not fit.
func Fits(c Counted, op counter.Op, pending int64) bool {
	return c.Used+pending+op.N <= op.Limit
}

// Charge applies op after Prune returned c, whether or not it fits: it opens a
// flexi window if none is live, adds N to the current bucket, records the
// reservation and extends ExpireAt. It returns the bucket charged and the
// counted view afterwards.
func (st *State) Charge(op counter.Op, c Counted) (int64, Counted) {
	cur := op.Current
	if op.Kind == window.Flexi {
		if !c.Live && (op.N > 0 || op.Reservation != "") {
			st.FlexiStart, st.FlexiEnd = op.FlexiStart, op.FlexiEnd
		}
		cur = st.FlexiStart
		c.Oldest = st.FlexiStart
		c.Live = st.FlexiEnd > 0
	}
	if op.N > 0 {
		st.add(cur, op.N)
	}
	c.Used += op.N
	if op.Reservation != "" {
		st.Reservations = append(st.Reservations, Reservation{Token: op.Reservation, Bucket: cur, Amount: op.N, Expires: op.ReservationExpires})
		st.noteExpiry(op.ReservationExpires)
		st.ExpireAt = max(st.ExpireAt, op.ReservationExpires)
	}
	st.ExpireAt = max(st.ExpireAt, op.Deadline, st.FlexiEnd)
	return cur, c
}

// Apply runs one op on its own at now: prune, decide, and charge when it fits
// or is forced. changed reports whether the state must be written back.
func (st *State) Apply(now int64, op counter.Op) (out counter.Outcome, changed bool) {
	c := st.Prune(now, op.Frame)
	ok := Fits(c, op, 0)
	if ok || op.Force {
		_, c = st.Charge(op, c)
	}
	return st.Outcome(op.Kind, ok, c), ok || op.Force
}

// Adjust settles (a.Actual ≥ 0) or releases (a.Actual < 0) one reservation
// at now. found is false when the reservation is unknown, already closed or
// expired; the state is then unchanged apart from pruning.
func (st *State) Adjust(now int64, a counter.Adjustment) (out counter.Outcome, found bool) {
	c := st.Prune(now, a.Frame)
	i := slices.IndexFunc(st.Reservations, func(r Reservation) bool { return r.Token == a.Reservation })
	if i < 0 {
		return counter.Outcome{}, false
	}
	r := st.Reservations[i]
	st.Reservations = slices.Delete(st.Reservations, i, i+1)
	st.nextExpiry = 0 // recomputed by the next Prune that needs it
	if r.Bucket >= c.Oldest {
		delta := -r.Amount
		if a.Actual >= 0 {
			delta = a.Actual - r.Amount
		}
		before := st.UsedIn(r.Bucket)
		st.add(r.Bucket, delta)
		c.Used += st.UsedIn(r.Bucket) - before
	}
	return st.Outcome(a.Kind, true, c), true
}

// Refund takes back a charge of n to bucket idx and forgets the reservation
// token (if any): it undoes Charge for a backend that could not complete an
// atomic batch.
func (st *State) Refund(idx, n int64, token string) {
	st.add(idx, -n)
	if token != "" {
		st.Reservations = slices.DeleteFunc(st.Reservations, func(r Reservation) bool { return r.Token == token })
		st.nextExpiry = 0
	}
}

// Outcome is what a backend reports for kind after Prune (and Charge or
// Adjust) left the view c: the live flexi window, and the counted buckets of
// a rolling window.
func (st *State) Outcome(kind window.Kind, allowed bool, c Counted) counter.Outcome {
	o := counter.Outcome{Allowed: allowed, Used: c.Used}
	if kind == window.Flexi && st.FlexiEnd > 0 {
		o.WindowStart, o.WindowEnd = st.FlexiStart, st.FlexiEnd
	}
	if kind == window.Rolling {
		o.Buckets = make([]counter.Bucket, 0, len(st.Buckets))
		for _, b := range st.Buckets {
			if b.Index >= c.Oldest {
				o.Buckets = append(o.Buckets, b)
			}
		}
	}
	return o
}

// Empty reports whether nothing is left to count at now: no bucket, no open
// reservation and no live flexi window. Storage for it may be dropped.
func (st *State) Empty(now int64) bool {
	return len(st.Buckets) == 0 && len(st.Reservations) == 0 && st.FlexiEnd <= now
}

// Lifetime is how long storage for the state must be kept (Unix ms).
func (st *State) Lifetime() int64 { return max(st.ExpireAt, st.FlexiEnd) }

// UsedIn is the usage of bucket idx.
func (st *State) UsedIn(idx int64) int64 {
	if i, found := st.find(idx); found {
		return st.Buckets[i].Used
	}
	return 0
}

func (st *State) find(idx int64) (int, bool) {
	return slices.BinarySearchFunc(st.Buckets, idx, func(b counter.Bucket, t int64) int {
		switch {
		case b.Index < t:
			return -1
		case b.Index > t:
			return 1
		}
		return 0
	})
}

// add changes a bucket's usage, never below zero, dropping empty buckets and
// keeping them in index order.
func (st *State) add(idx, delta int64) {
	i, found := st.find(idx)
	if !found {
		if delta > 0 {
			st.Buckets = slices.Insert(st.Buckets, i, counter.Bucket{Index: idx, Used: delta})
		}
		return
	}
	v := st.Buckets[i].Used + delta
	if v <= 0 {
		st.Buckets = slices.Delete(st.Buckets, i, i+1)
		return
	}
	st.Buckets[i].Used = v
}
