// Package ledger keeps the quota filter's per-Envoy state in a table.Table
// (proxy-wasm shared data): request counters for local mode, the local half
// of async mode, and spike-arrest arrival times. It is plain Go over the
// table.Store interface, so it is tested natively with concurrent "workers".
package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/shared/table"
	"github.com/tollgate/tollgate/window"
)

// Counters is a counter.Backend over a table.Table: wrapped in a
// counter.Engine it gives local mode exactly the keystore's window
// semantics (calendar, rolling, flexi, reservations), with one shared view
// per Envoy.
type Counters struct {
	t *table.Table
	// OnEvict, when set, is called when a live record had to be evicted.
	OnEvict func()
}

// NewCounters returns a backend storing counters in t.
func NewCounters(t *table.Table) *Counters { return &Counters{t: t} }

var _ counter.Backend = (*Counters)(nil)

// counterID is the table id of a counter.
func counterID(c string) string { return "c|" + c }

// bucket is one window bucket's usage.
type bucket struct{ idx, used int64 }

// reservation is an open reservation.
type reservation struct {
	token                   string
	bucket, amount, expires int64
}

// state is one counter as stored: the same model as the counter.Backend
// contract describes.
type state struct {
	fs, fe   int64 // live flexi window, 0 when none
	expireAt int64 // nothing in the state matters from then on (Unix ms)
	buckets  []bucket
	res      []reservation
}

const stateVersion byte = 1

var errBadState = errors.New("ledger: corrupt counter state")

func (st *state) encode() []byte {
	n := 1 + 24 + 2 + 16*len(st.buckets) + 2
	for _, r := range st.res {
		n += 1 + len(r.token) + 24
	}
	b := make([]byte, 0, n)
	b = append(b, stateVersion)
	b = binary.LittleEndian.AppendUint64(b, uint64(st.fs))
	b = binary.LittleEndian.AppendUint64(b, uint64(st.fe))
	b = binary.LittleEndian.AppendUint64(b, uint64(st.expireAt))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(st.buckets)))
	for _, bk := range st.buckets {
		b = binary.LittleEndian.AppendUint64(b, uint64(bk.idx))
		b = binary.LittleEndian.AppendUint64(b, uint64(bk.used))
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(st.res)))
	for _, r := range st.res {
		b = append(b, byte(len(r.token)))
		b = append(b, r.token...)
		b = binary.LittleEndian.AppendUint64(b, uint64(r.bucket))
		b = binary.LittleEndian.AppendUint64(b, uint64(r.amount))
		b = binary.LittleEndian.AppendUint64(b, uint64(r.expires))
	}
	return b
}

func decodeState(b []byte) (state, error) {
	var st state
	if len(b) == 0 {
		return st, nil
	}
	if b[0] != stateVersion || len(b) < 1+24+2 {
		return st, errBadState
	}
	u := func(p []byte) int64 { return int64(binary.LittleEndian.Uint64(p)) }
	st.fs, st.fe, st.expireAt = u(b[1:]), u(b[9:]), u(b[17:])
	nb := int(binary.LittleEndian.Uint16(b[25:]))
	b = b[27:]
	if len(b) < 16*nb+2 {
		return state{}, errBadState
	}
	st.buckets = make([]bucket, nb)
	for i := range st.buckets {
		st.buckets[i] = bucket{idx: u(b), used: u(b[8:])}
		b = b[16:]
	}
	nr := int(binary.LittleEndian.Uint16(b))
	b = b[2:]
	for range nr {
		if len(b) < 1 || len(b) < 1+int(b[0])+24 {
			return state{}, errBadState
		}
		tl := int(b[0])
		r := reservation{token: string(b[1 : 1+tl])}
		b = b[1+tl:]
		r.bucket, r.amount, r.expires = u(b), u(b[8:]), u(b[16:])
		b = b[24:]
		st.res = append(st.res, r)
	}
	if len(b) != 0 {
		return state{}, errBadState
	}
	return st, nil
}

// add changes a bucket's usage, never below zero, dropping empty buckets and
// keeping them in index order.
func (st *state) add(idx, delta int64) {
	i, found := slices.BinarySearchFunc(st.buckets, idx, func(b bucket, t int64) int { return cmp64(b.idx, t) })
	if !found {
		if delta <= 0 {
			return
		}
		st.buckets = slices.Insert(st.buckets, i, bucket{idx: idx, used: delta})
		return
	}
	v := st.buckets[i].used + delta
	if v <= 0 {
		st.buckets = slices.Delete(st.buckets, i, i+1)
		return
	}
	st.buckets[i].used = v
}

func (st *state) usedIn(idx int64) int64 {
	for _, b := range st.buckets {
		if b.idx == idx {
			return b.used
		}
	}
	return 0
}

func cmp64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// prune applies the contract's expiry rules at now and returns the counted
// usage, the oldest counted bucket and whether a flexi window is live.
func (st *state) prune(now int64, f counter.Frame) (used, oldest int64, live bool) {
	oldest = f.Oldest
	if f.Kind == window.Flexi {
		if st.fe > 0 && now < st.fe {
			oldest, live = st.fs, true
		} else {
			st.buckets = st.buckets[:0]
			st.fs, st.fe = 0, 0
			oldest = math.MaxInt64
		}
	}
	kept := st.res[:0]
	for _, r := range st.res {
		if r.expires <= now {
			if r.bucket >= oldest {
				st.add(r.bucket, -r.amount)
			}
			continue
		}
		kept = append(kept, r)
	}
	st.res = kept
	i := 0
	for i < len(st.buckets) && st.buckets[i].idx < oldest {
		i++
	}
	st.buckets = st.buckets[i:]
	for _, b := range st.buckets {
		used += b.used
	}
	return used, oldest, live
}

// apply charges op (after prune) and returns the bucket it charged.
func (st *state) apply(op counter.Op, live bool) int64 {
	cur := op.Current
	if op.Kind == window.Flexi {
		if !live && (op.N > 0 || op.Reservation != "") {
			st.fs, st.fe = op.FlexiStart, op.FlexiEnd
		}
		cur = st.fs
	}
	if op.N > 0 {
		st.add(cur, op.N)
	}
	if op.Reservation != "" {
		st.res = append(st.res, reservation{token: op.Reservation, bucket: cur, amount: op.N, expires: op.ReservationExpires})
		st.expireAt = max(st.expireAt, op.ReservationExpires)
	}
	st.expireAt = max(st.expireAt, op.Deadline, st.fe)
	return cur
}

func (st *state) outcome(kind window.Kind, allowed bool, used, oldest int64) counter.Outcome {
	o := counter.Outcome{Allowed: allowed, Used: used}
	if kind == window.Flexi && st.fe > 0 {
		o.WindowStart, o.WindowEnd = st.fs, st.fe
	}
	if kind == window.Rolling {
		o.Buckets = make([]counter.Bucket, 0, len(st.buckets))
		for _, b := range st.buckets {
			if b.idx >= oldest {
				o.Buckets = append(o.Buckets, counter.Bucket{Index: b.idx, Used: b.used})
			}
		}
	}
	return o
}

// update runs fn on the decoded state of a counter. fn returns whether to
// write the state back; a corrupt state reads as empty.
func (c *Counters) update(id string, now int64, fn func(st *state) bool) error {
	ev, err := c.t.Update(counterID(id), now, func(old []byte, _ int64) ([]byte, int64, bool) {
		st, err := decodeState(old)
		if err != nil {
			st = state{}
		}
		if !fn(&st) {
			return nil, 0, false
		}
		if len(st.buckets) == 0 && len(st.res) == 0 && st.fe <= now {
			return nil, now, true // nothing left to count: drop the record
		}
		return st.encode(), max(st.expireAt, st.fe), true
	})
	if ev && c.OnEvict != nil {
		c.OnEvict()
	}
	return err
}

// read returns the decoded state of a counter without writing.
func (c *Counters) read(id string, now int64) (state, error) {
	v, _, _, err := c.t.Get(counterID(id), now)
	if err != nil {
		return state{}, err
	}
	st, err := decodeState(v)
	if err != nil {
		return state{}, nil
	}
	return st, nil
}

// Apply implements counter.Backend. Ops are applied one counter at a time;
// an atomic batch is checked first and, if a concurrent worker changed a
// counter between the check and the charge, the ops already charged are
// refunded and the batch is denied. A refund can briefly make a concurrent
// request see more usage than there is (it may be denied), never less.
func (c *Counters) Apply(ctx context.Context, now int64, ops []counter.Op, atomic bool) ([]counter.Outcome, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	outs := make([]counter.Outcome, len(ops))
	if !atomic || len(ops) == 1 { // one op is atomic by itself: no pre-check read
		for i, op := range ops {
			err := c.update(op.Counter, now, func(st *state) bool {
				used, oldest, live := st.prune(now, op.Frame)
				ok := used+op.N <= op.Limit
				if ok || op.Force {
					st.apply(op, live)
					used += op.N
					if op.Kind == window.Flexi {
						oldest = st.fs
					}
				}
				outs[i] = st.outcome(op.Kind, ok, used, oldest)
				return ok || op.Force
			})
			if err != nil {
				return nil, fmt.Errorf("ledger: %w", err)
			}
		}
		return outs, nil
	}
	if ok, err := c.check(now, ops, outs); err != nil || !ok {
		return outs, err
	}
	charged := make([]int64, 0, len(ops)) // bucket charged by each applied op
	for i, op := range ops {
		fits := true
		var at int64
		err := c.update(op.Counter, now, func(st *state) bool {
			used, oldest, live := st.prune(now, op.Frame)
			fits = used+op.N <= op.Limit || op.Force
			if !fits {
				return false
			}
			at = st.apply(op, live)
			used += op.N
			if op.Kind == window.Flexi {
				oldest = st.fs
			}
			outs[i] = st.outcome(op.Kind, true, used, oldest)
			return true
		})
		if err != nil || !fits {
			rerr := c.refund(now, ops[:i], charged)
			if err != nil {
				return nil, errors.Join(fmt.Errorf("ledger: %w", err), rerr)
			}
			if rerr != nil {
				return nil, rerr
			}
			// Lost a race: report the batch as denied on the current counts.
			_, err := c.check(now, ops, outs)
			for j := range outs {
				outs[j].Allowed = false
			}
			return outs, err
		}
		charged = append(charged, at)
	}
	return outs, nil
}

// check decides an atomic batch without writing, counting earlier ops of the
// batch on the same counter; outs receives each op's outcome.
func (c *Counters) check(now int64, ops []counter.Op, outs []counter.Outcome) (bool, error) {
	pending := make(map[string]int64, len(ops))
	all := true
	for i, op := range ops {
		st, err := c.read(op.Counter, now)
		if err != nil {
			return false, fmt.Errorf("ledger: %w", err)
		}
		used, oldest, _ := st.prune(now, op.Frame)
		if used+pending[op.Counter]+op.N > op.Limit && !op.Force {
			all = false
		}
		pending[op.Counter] += op.N
		outs[i] = st.outcome(op.Kind, false, used, oldest)
	}
	if all {
		for i := range outs {
			outs[i].Allowed = true
		}
	}
	return all, nil
}

// refund takes back the charges of applied ops.
func (c *Counters) refund(now int64, ops []counter.Op, charged []int64) error {
	var errs []error
	for i, op := range ops {
		err := c.update(op.Counter, now, func(st *state) bool {
			st.add(charged[i], -op.N)
			if op.Reservation != "" {
				st.res = slices.DeleteFunc(st.res, func(r reservation) bool { return r.token == op.Reservation })
			}
			return true
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("ledger: refund: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Adjust implements counter.Backend.
func (c *Counters) Adjust(ctx context.Context, now int64, a counter.Adjustment) (counter.Outcome, error) {
	if err := ctx.Err(); err != nil {
		return counter.Outcome{}, err
	}
	var out counter.Outcome
	found := false
	err := c.update(a.Counter, now, func(st *state) bool {
		used, oldest, _ := st.prune(now, a.Frame)
		i := slices.IndexFunc(st.res, func(r reservation) bool { return r.token == a.Reservation })
		if found = i >= 0; !found {
			return false
		}
		r := st.res[i]
		st.res = slices.Delete(st.res, i, i+1)
		if r.bucket >= oldest {
			delta := -r.amount
			if a.Actual >= 0 {
				delta = a.Actual - r.amount
			}
			before := st.usedIn(r.bucket)
			st.add(r.bucket, delta)
			used += st.usedIn(r.bucket) - before
		}
		out = st.outcome(a.Kind, true, used, oldest)
		return true
	})
	if err != nil {
		return counter.Outcome{}, fmt.Errorf("ledger: %w", err)
	}
	if !found {
		return counter.Outcome{}, counter.ErrReservationNotFound
	}
	return out, nil
}

// Close implements counter.Backend; the table belongs to the host.
func (c *Counters) Close() error { return nil }
