package bucket

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tollgate/tollgate/counter"
)

// FuzzLeaseInvariant drives random lease reports, resizes, re-sends and
// closes of several leases on one calendar counter and checks the lease
// invariant after every op: usage = consumption + the held amounts, and
// usage ≤ limit while every report stays within what its lease held (so
// nothing is forced).
func FuzzLeaseInvariant(f *testing.F) {
	for _, seed := range []uint64{1, 2, 3, 42} {
		f.Add(seed, int64(100))
	}
	f.Add(uint64(7), int64(0))
	f.Fuzz(func(t *testing.T, seed uint64, limit int64) {
		if limit < 0 || limit > 1<<20 {
			return
		}
		rng := rand.New(rand.NewPCG(seed, seed^0xa11))
		var st State
		type lease struct {
			token          string
			held, seq, rep int64
		}
		leases := make([]lease, 4)
		var consumed int64
		for i := range 300 {
			j := rng.IntN(len(leases))
			l := &leases[j]
			used := rng.Int64N(l.held + 1) // never more than held: nothing forced
			resend := l.token != "" && l.seq > 0 && rng.IntN(5) == 0
			o := counter.LeaseOp{Frame: calendar, Limit: limit, Token: l.token, NewToken: fmt.Sprintf("t%d", i),
				Used: used, Want: rng.Int64N(limit/3 + 2), Expires: 900}
			o.Min = rng.Int64N(o.Want + 1)
			switch {
			case resend: // the last report again: its seq, used grown by what is new
				o.Seq, o.Used = l.seq, l.rep+used
				consumed += used
			default:
				o.Seq = l.seq + 1
				consumed += used
			}
			out, _ := st.Lease(10, o)
			if out.Lost {
				t.Fatalf("op %d: lease %d lost (token %q)", i, j, l.token)
			}
			if out.Token == "" {
				l.token, l.held, l.seq, l.rep = "", 0, 0, 0
			} else {
				l.token, l.held, l.seq, l.rep = out.Token, out.Held, o.Seq, o.Used
			}
			var held int64
			for _, x := range leases {
				held += x.held
			}
			c := st.Prune(10, calendar)
			if c.Used != consumed+held {
				t.Fatalf("op %d %+v: usage %d, want consumed %d + held %d", i, o, c.Used, consumed, held)
			}
			if c.Used > limit {
				t.Fatalf("op %d: usage %d above limit %d with nothing forced", i, c.Used, limit)
			}
			if out.Used != c.Used {
				t.Fatalf("op %d: outcome says used %d, state %d", i, out.Used, c.Used)
			}
		}
	})
}
