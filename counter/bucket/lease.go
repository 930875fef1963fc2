package bucket

import (
	"slices"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/window"
)

// Lease applies one lease op at now as counter.LeaseBackend describes it: a
// lease is an open reservation whose amount is the held budget. changed
// reports whether the state must be written back.
func (st *State) Lease(now int64, op counter.LeaseOp) (out counter.LeaseOutcome, changed bool) {
	c := st.Prune(now, op.Frame)
	cur := op.Current
	if op.Kind == window.Flexi {
		cur = st.FlexiStart // 0 when no window is live; set by open below
	}
	i := -1
	if op.Token != "" {
		i = slices.IndexFunc(st.Reservations, func(r Reservation) bool { return r.Token == op.Token })
	}
	var held int64
	force := op.Used // consumption not covered by the lease's held amount
	switch {
	case i >= 0 && st.Reservations[i].Bucket == cur && (op.Kind != window.Flexi || c.Live):
		held = st.Reservations[i].Amount
		taken := min(held, op.Used)
		held -= taken
		force -= taken
	case i >= 0:
		// A lease of an ended frame: settle it at Used where it was drawn.
		r := st.Reservations[i]
		st.Reservations = slices.Delete(st.Reservations, i, i+1)
		st.nextExpiry = 0
		i = -1
		if r.Bucket >= c.Oldest {
			before := st.UsedIn(r.Bucket)
			st.add(r.Bucket, op.Used-r.Amount)
			c.Used += st.UsedIn(r.Bucket) - before
		}
		force = 0
		out.Lost = true
	case op.Token != "":
		out.Lost = true
	}
	open := func() {
		if op.Kind == window.Flexi && !c.Live {
			st.FlexiStart, st.FlexiEnd = op.FlexiStart, op.FlexiEnd
			cur, c.Oldest, c.Live = st.FlexiStart, st.FlexiStart, true
		}
	}
	if force > 0 {
		open()
		st.add(cur, force)
		c.Used += force
		changed = true
	}
	switch {
	case op.Want < held:
		st.add(cur, op.Want-held)
		c.Used -= held - op.Want
		held = op.Want
	case op.Want > held:
		g := min(op.Want-held, max(0, op.Limit-c.Used))
		if held+g < op.Min {
			g = 0
		}
		if g > 0 {
			open()
			st.add(cur, g)
			c.Used += g
			held += g
		}
	}
	switch {
	case held == 0 && i >= 0:
		st.Reservations = slices.Delete(st.Reservations, i, i+1)
		st.nextExpiry = 0
		changed = true
	case held > 0 && i >= 0:
		st.Reservations[i].Amount = held
		st.Reservations[i].Expires = op.Expires
		st.nextExpiry = 0
		out.Token = op.Token
		changed = true
	case held > 0:
		st.Reservations = append(st.Reservations, Reservation{Token: op.NewToken, Bucket: cur, Amount: held, Expires: op.Expires})
		st.noteExpiry(op.Expires)
		out.Token = op.NewToken
		changed = true
	}
	if changed || out.Lost {
		changed = true
		st.ExpireAt = max(st.ExpireAt, op.Deadline, st.FlexiEnd)
		if held > 0 {
			st.ExpireAt = max(st.ExpireAt, op.Expires)
		}
	}
	out.Held = held
	out.Outcome = st.Outcome(op.Kind, true, c)
	return out, changed
}
