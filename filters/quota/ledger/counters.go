// Package ledger keeps the quota filter's per-Envoy state in a table.Table
// (proxy-wasm shared data): request counters for local mode, the local half
// of async mode, and spike-arrest arrival times. It is plain Go over the
// table.Store interface, so it is tested natively with concurrent "workers".
package ledger

import (
	"context"
	"errors"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/bucket"
	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/table"
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

// update runs fn on the decoded state of a counter. fn returns whether to
// write the state back; a corrupt state reads as empty.
func (c *Counters) update(id string, now int64, fn func(st *bucket.State) bool) error {
	var encErr error
	ev, err := c.t.Update(counterID(id), now, func(old []byte, _ int64) ([]byte, int64, bool) {
		st, err := bucket.Decode(old)
		if err != nil {
			st = bucket.State{}
		}
		if !fn(&st) {
			return nil, 0, false
		}
		if st.Empty(now) {
			return nil, now, true // nothing left to count: drop the record
		}
		b, err := st.AppendBinary(nil)
		if err != nil {
			encErr = err
			return nil, 0, false
		}
		return b, st.Lifetime(), true
	})
	if ev && c.OnEvict != nil {
		c.OnEvict()
	}
	if err == nil {
		err = encErr
	}
	return err
}

// read returns the decoded state of a counter without writing.
func (c *Counters) read(id string, now int64) (bucket.State, error) {
	v, _, _, err := c.t.Get(counterID(id), now)
	if err != nil {
		return bucket.State{}, err
	}
	st, err := bucket.Decode(v)
	if err != nil {
		return bucket.State{}, nil
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
			err := c.update(op.Counter, now, func(st *bucket.State) bool {
				var changed bool
				outs[i], changed = st.Apply(now, op)
				return changed
			})
			if err != nil {
				return nil, config.Wrap("ledger: ", err, "")
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
		err := c.update(op.Counter, now, func(st *bucket.State) bool {
			cnt := st.Prune(now, op.Frame)
			if fits = op.Force || bucket.Fits(cnt, op, 0); !fits {
				return false
			}
			at, cnt = st.Charge(op, cnt)
			outs[i] = st.Outcome(op.Kind, true, cnt)
			return true
		})
		if err != nil || !fits {
			rerr := c.refund(now, ops[:i], charged)
			if err != nil {
				return nil, errors.Join(config.Wrap("ledger: ", err, ""), rerr)
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
			return false, config.Wrap("ledger: ", err, "")
		}
		cnt := st.Prune(now, op.Frame)
		if !op.Force && !bucket.Fits(cnt, op, pending[op.Counter]) {
			all = false
		}
		pending[op.Counter] += op.N
		outs[i] = st.Outcome(op.Kind, false, cnt)
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
		err := c.update(op.Counter, now, func(st *bucket.State) bool {
			st.Refund(charged[i], op.N, op.Reservation)
			return true
		})
		if err != nil {
			errs = append(errs, config.Wrap("ledger: refund: ", err, ""))
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
	err := c.update(a.Counter, now, func(st *bucket.State) bool {
		out, found = st.Adjust(now, a)
		return found
	})
	if err != nil {
		return counter.Outcome{}, config.Wrap("ledger: ", err, "")
	}
	if !found {
		return counter.Outcome{}, counter.ErrReservationNotFound
	}
	return out, nil
}

// Close implements counter.Backend; the table belongs to the host.
func (c *Counters) Close() error { return nil }
