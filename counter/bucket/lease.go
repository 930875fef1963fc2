package bucket

import (
	"slices"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/window"
)

// Lease applies one lease op at now as counter.LeaseBackend describes it: a
// lease is an open reservation whose amount is the held budget. A record
// with amount 0 is a tombstone: it only remembers a report (Seq, Reported)
// so that a re-send is not counted twice. changed reports whether the state
// must be written back.
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
	used := op.Used
	if i >= 0 && op.Seq > 0 && st.Reservations[i].Seq == op.Seq {
		used = max(0, op.Used-st.Reservations[i].Reported) // a re-send: only what is new
	}
	var held int64
	force := used // consumption not covered by the lease's held amount
	have := false // the record found continues as the lease
	switch {
	case i >= 0 && st.Reservations[i].Amount > 0 && st.Reservations[i].Bucket == cur && (op.Kind != window.Flexi || c.Live):
		held = st.Reservations[i].Amount
		taken := min(held, used)
		held -= taken
		force -= taken
		have = true
	case i >= 0 && st.Reservations[i].Amount > 0:
		// A lease of an ended frame: settle it at used where it was drawn.
		r := st.Reservations[i]
		if r.Bucket >= c.Oldest {
			before := st.UsedIn(r.Bucket)
			st.add(r.Bucket, used-r.Amount)
			c.Used += st.UsedIn(r.Bucket) - before
		}
		st.Reservations[i].Amount = 0
		force = 0
		out.Lost = true
	case op.Token != "":
		out.Lost = true // unknown, expired, closed, or a tombstone
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
	// The record under op.Token: the lease itself, a tombstone remembering
	// this report (only with a Seq), or nothing.
	keep := have && held > 0
	if op.Seq > 0 && op.Token != "" && !keep {
		if i < 0 {
			st.Reservations = append(st.Reservations, Reservation{Token: op.Token})
			i = len(st.Reservations) - 1
		}
		st.Reservations[i].Bucket, st.Reservations[i].Amount = cur, 0
		keep = true
	}
	switch {
	case keep:
		r := &st.Reservations[i]
		if have {
			r.Amount = held
		}
		r.Expires = op.Expires
		if op.Seq > 0 {
			if r.Seq != op.Seq {
				r.Seq, r.Reported = op.Seq, 0
			}
			r.Reported = max(r.Reported, op.Used)
		}
		st.nextExpiry = 0
		if have && held > 0 {
			out.Token = op.Token
		}
	case i >= 0:
		st.Reservations = slices.Delete(st.Reservations, i, i+1)
		st.nextExpiry = 0
	}
	if !have && held > 0 {
		st.Reservations = append(st.Reservations, Reservation{Token: op.NewToken, Bucket: cur, Amount: held, Expires: op.Expires})
		st.nextExpiry = 0
		out.Token = op.NewToken
	}
	st.ExpireAt = max(st.ExpireAt, op.Deadline, st.FlexiEnd)
	if keep || held > 0 {
		st.ExpireAt = max(st.ExpireAt, op.Expires)
	}
	out.Held = held
	out.Outcome = st.Outcome(op.Kind, true, c)
	return out, true
}
