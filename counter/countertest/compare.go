package countertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/window"
)

// Compare drives one pseudo-random sequence of consumes, atomic batches,
// reservations, settles, releases, lease ops (when both backends implement
// counter.LeaseBackend) and clock steps through two engines that
// share a clock, one over ref and one over got, and fails at the first
// answer on which they differ. It checks a backend written in another
// language (counter.lua) against the reference arithmetic (counter/bucket,
// as memstore uses it), on the edge cases the scripted contract may miss:
// limits reached by batches, settles after windows ended, expiries landing
// on the instant of an op.
func Compare(t *testing.T, ref, got counter.Backend, seed uint64, steps int) {
	t.Helper()
	clock := NewClock(T0.Add(59*time.Second + 990*time.Millisecond))
	engines := [2]*counter.Engine{
		counter.New(ref, counter.WithClock(clock.Now)),
		counter.New(got, counter.WithClock(clock.Now)),
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	var specs []window.Spec
	for _, s := range []string{"10/1minute/calendar", "10/1minute/rolling", "10/30second/flexi", "6/1second/calendar"} {
		sp, err := window.ParseCompact(s)
		if err != nil {
			t.Fatalf("spec %s: %v", s, err)
		}
		specs = append(specs, sp)
	}
	keys := []counter.Key{
		{App: "a", Product: "p", Kind: counter.Tokens},
		{App: "b", Product: "p", Kind: counter.Tokens},
	}
	req := func() counter.Request {
		r := counter.Request{Key: keys[rng.IntN(len(keys))], Spec: specs[rng.IntN(len(specs))], N: rng.Int64N(5)}
		r.Force = rng.IntN(8) == 0
		return r
	}
	var ids [2][]string // reservation ids, by engine, in the same order
	// Lease slots, by engine: the id each slot last held, kept after a close
	// so that later reports exercise lost leases.
	var leases [2][]string
	var seqs, sent []int64 // per slot: the last report's seq and used
	_, refLeases := ref.(counter.LeaseBackend)
	_, gotLeases := got.(counter.LeaseBackend)
	kinds := 7
	if refLeases && gotLeases {
		kinds = 9
	}
	ctx := context.Background()
	for i := range steps {
		var what string
		var answers [2]string
		op := rng.IntN(kinds)
		switch op {
		case 0, 1: // consume
			rq := req()
			what = fmt.Sprintf("consume %+v", rq)
			for e, eng := range engines {
				d, err := eng.ConsumeBatch(ctx, []counter.Request{rq}, false)
				answers[e] = describe(d, err)
			}
		case 2: // atomic batch
			rqs := []counter.Request{req(), req(), req()}
			what = fmt.Sprintf("atomic batch %+v", rqs)
			for e, eng := range engines {
				d, err := eng.ConsumeBatch(ctx, rqs, true)
				answers[e] = describe(d, err)
			}
		case 3: // reserve
			rqs := []counter.Request{req()}
			if rng.IntN(3) == 0 {
				rqs = append(rqs, req())
			}
			ttl := time.Duration(1+rng.IntN(40)) * time.Second
			what = fmt.Sprintf("reserve %+v ttl %s", rqs, ttl)
			for e, eng := range engines {
				rs, err := eng.ReserveBatch(ctx, rqs, ttl)
				ds := make([]counter.Decision, len(rs))
				for j, r := range rs {
					ds[j] = r.Decision
					if r.ID != "" {
						ids[e] = append(ids[e], r.ID)
					}
					if !r.Expires.IsZero() {
						answers[e] += fmt.Sprintf("expires %s ", r.Expires.Sub(T0))
					}
				}
				answers[e] += describe(ds, err)
			}
		case 4, 5: // settle or release an open or closed reservation
			if len(ids[0]) == 0 || len(ids[0]) != len(ids[1]) {
				continue
			}
			j := rng.IntN(len(ids[0]))
			actual := rng.Int64N(12)
			if op == 5 {
				actual = -1
			}
			what = fmt.Sprintf("adjust reservation %d to %d", j, actual)
			for e, eng := range engines {
				var d counter.Decision
				var err error
				if actual < 0 {
					d, err = eng.Release(ctx, ids[e][j])
				} else {
					d, err = eng.Settle(ctx, ids[e][j], actual)
				}
				answers[e] = describe([]counter.Decision{d}, err)
			}
		case 7, 8: // report on and resize a lease (a new one or a slot's)
			rq := req()
			slot := rng.IntN(len(leases[0]) + 1)
			lr := counter.LeaseRequest{Key: rq.Key, Spec: rq.Spec, Used: rng.Int64N(7), Want: rng.Int64N(9),
				TTL: time.Duration(1+rng.IntN(40)) * time.Second}
			lr.Min = rng.Int64N(lr.Want + 1)
			if rng.IntN(2) == 0 {
				lr.Min = 0
			}
			if slot == len(seqs) {
				seqs, sent = append(seqs, 0), append(sent, 0)
			}
			switch rng.IntN(4) {
			case 0: // no sequence number
				lr.Seq = 0
			case 1: // a re-send of the last report, perhaps with more used
				lr.Seq, lr.Used = seqs[slot], sent[slot]+rng.Int64N(3)
			default:
				lr.Seq = seqs[slot] + 1
			}
			seqs[slot], sent[slot] = lr.Seq, lr.Used
			what = fmt.Sprintf("lease slot %d %+v", slot, lr)
			for e, eng := range engines {
				r := lr
				if slot < len(leases[e]) {
					r.ID = leases[e][slot]
				}
				ls, err := eng.Lease(ctx, []counter.LeaseRequest{r})
				answers[e] = describeLeases(ls, err)
				if err != nil || ls[0].Err != nil {
					continue
				}
				switch {
				case slot == len(leases[e]):
					leases[e] = append(leases[e], ls[0].ID)
				case ls[0].ID != "":
					leases[e][slot] = ls[0].ID
				}
			}
		case 6: // time passes, sometimes onto a window boundary
			d := time.Duration(rng.IntN(15000)) * time.Millisecond
			if rng.IntN(4) == 0 {
				d = clock.Now().Truncate(time.Second).Add(time.Second).Sub(clock.Now())
			}
			clock.Advance(d)
			continue
		}
		if answers[0] != answers[1] {
			t.Fatalf("seed %d step %d at T0+%s: %s\nreference: %s\ngot:       %s",
				seed, i, clock.Now().Sub(T0), what, answers[0], answers[1])
		}
	}
}

// describe renders decisions or an error so that two backends' answers can
// be compared as strings.
func describe(ds []counter.Decision, err error) string {
	switch {
	case errors.Is(err, counter.ErrReservationNotFound):
		return "reservation not found"
	case err != nil:
		return "error: " + err.Error()
	}
	s := ""
	for _, d := range ds {
		s += fmt.Sprintf("{allowed %v used %d remaining %d reset %s retry %s} ",
			d.Allowed, d.Used, d.Remaining, d.Reset.Sub(T0), d.RetryAfter)
	}
	return s
}

// describeLeases renders lease answers or an error for comparison; ids are
// random, so only whether one is open is compared.
func describeLeases(ls []counter.Lease, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	s := ""
	for _, l := range ls {
		if l.Err != nil {
			s += "{error: " + l.Err.Error() + "} "
			continue
		}
		valid := "none"
		if !l.ValidUntil.IsZero() {
			valid = l.ValidUntil.Sub(T0).String()
		}
		s += fmt.Sprintf("{open %v held %d used %d remaining %d reset %s valid %s lost %v} ",
			l.ID != "", l.Held, l.Used, l.Remaining, l.Reset.Sub(T0), valid, l.Lost)
	}
	return s
}
