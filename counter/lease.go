package counter

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/window"
)

// Limits of lease requests.
const (
	// DefaultLeaseTTL applies when a LeaseRequest names no TTL.
	DefaultLeaseTTL = 30 * time.Second
	// MaxLeaseTTL bounds how long a lease may stay open without a renewal.
	MaxLeaseTTL = 10 * time.Minute
)

// ErrLeaseUnsupported is returned by Engine.Lease when the backend does not
// implement LeaseBackend.
var ErrLeaseUnsupported = errors.New("counter backend does not support leases")

// ErrInvalidLeaseID marks a lease id that is not one the engine issued; it
// is also an ErrInvalidRequest.
var ErrInvalidLeaseID = config.Wrap("", ErrInvalidRequest, ": malformed lease id")

// LeaseBackend is the optional Backend extension that budget leases need. It
// is separate from Backend so that backends without leases (the quota
// filter's shared-data ledger) keep compiling; memstore and redisstore
// implement it, and countertest runs the lease contract on every backend that
// does.
//
// A lease is stored as an open reservation (token → bucket, amount, expiry)
// whose amount is the lease's held budget, so every Backend rule about
// reservations (expiry releases the amount, storage lives until the expiry)
// applies unchanged. A record of amount 0 is a tombstone: it only keeps Seq
// and Reported. Per op, atomically and in order (ops are independent):
//
//  1. Prune as for Apply. Let used = Used, or max(0, Used − Reported) when
//     Seq > 0 and the record under Token has the same Seq (a re-send). When
//     Token names a record of amount > 0 charged to the frame's current
//     bucket (flexi: the live window's start), used is drawn from it:
//     amount −= used, and the part above the amount is added to the current
//     bucket with force. A record of amount > 0 in another bucket is settled
//     at used (as Adjust) and the lease is Lost. Otherwise (no record, or a
//     tombstone) used is added to the current bucket with force, and the
//     lease is Lost when Token was set.
//  2. The held amount (0 unless the lease continues) is resized to Want: a
//     smaller Want gives back the difference; a larger one adds
//     g = min(Want − held, max(0, Limit − usage)) to the current bucket, or
//     nothing when held + g < Min. A flexi window is opened by a grant
//     g > 0 or a forced used > 0, as by a consume.
//  3. A continued lease keeps its record (amount = held) when held > 0.
//     When Seq > 0 and Token is set but the lease does not continue with
//     held > 0, the record under Token becomes a tombstone. Either way the
//     record expires at Expires and remembers Seq and Reported (Used, or the
//     larger of the two on a re-send). Without Seq such a record is
//     forgotten. A new lease (held > 0 but not continued) is recorded under
//     NewToken. Token in the outcome is the open lease, or "".
type LeaseBackend interface {
	// Lease applies the ops in order, each atomically, in one round trip.
	Lease(ctx context.Context, now int64, ops []LeaseOp) ([]LeaseOutcome, error)
}

// LeaseOp is one precomputed lease operation handed to a LeaseBackend.
type LeaseOp struct {
	Frame
	// Limit is the most usage the window allows.
	Limit int64
	// Token is the lease to continue; "" opens a new one.
	Token string
	// NewToken is the token a newly opened lease is stored under.
	NewToken string
	// Used is consumption drawn from the lease since the last report.
	Used int64
	// Want is the held amount asked for; 0 closes the lease.
	Want int64
	// Min is the smallest held amount worth a grant.
	Min int64
	// Seq numbers the report (0: none); see LeaseRequest.Seq.
	Seq int64
	// Expires is when the lease is released unless renewed (Unix ms).
	Expires int64
}

// LeaseOutcome is what a LeaseBackend reports for one LeaseOp.
type LeaseOutcome struct {
	// Outcome holds the counter's usage after the op (Allowed is unused).
	Outcome
	// Token is the open lease after the op; "" when it is closed.
	Token string
	// Held is the lease's held amount after the op.
	Held int64
	// Lost reports that Token named no open lease of the current frame.
	Lost bool
}

// LeaseRequest asks to report consumption on, and resize, one lease.
type LeaseRequest struct {
	// Key is the counter.
	Key Key
	// Spec is the quota applied to it.
	Spec window.Spec
	// ID is the lease to continue; "" opens a new one.
	ID string
	// Used is the consumption drawn from the lease since the last report; it
	// stays counted and can no longer be returned.
	Used int64
	// Want is the held amount asked for after the report; 0 closes the lease.
	Want int64
	// Min is the smallest held amount worth having: a top-up that would leave
	// less than Min grants nothing. 0 ≤ Min ≤ Want.
	Min int64
	// TTL is how long the lease lives without a renewal; 0 means
	// DefaultLeaseTTL.
	TTL time.Duration
	// Seq, when > 0, numbers this report of the lease so that a re-send
	// after an unknown outcome (a timeout) is not counted twice: the caller
	// sends the same Seq again, with a Used at least as large, and only
	// Used minus what was already applied under that Seq is counted. The
	// caller increments Seq after each answered report. The keystore then
	// remembers the report for a TTL, also after the lease closed or was
	// lost (a tombstone of amount 0). 0 turns this off.
	Seq int64
}

// Validate reports the first problem with the request.
func (r LeaseRequest) Validate() error {
	if err := r.Key.Validate(); err != nil {
		return err
	}
	if err := r.Spec.Validate(); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"used", r.Used}, {"want", r.Want}, {"min", r.Min}, {"seq", r.Seq}} {
		if f.v < 0 || f.v > window.MaxLimit {
			return config.Wrap("", ErrInvalidRequest, ": "+f.name+" "+strconv.FormatInt(f.v, 10)+" out of range [0, 2^53]")
		}
	}
	if r.Min > r.Want {
		return config.Wrap("", ErrInvalidRequest, ": min "+strconv.FormatInt(r.Min, 10)+" above want "+strconv.FormatInt(r.Want, 10))
	}
	if r.TTL < 0 || r.TTL > MaxLeaseTTL {
		return config.Wrap("", ErrInvalidRequest, ": ttl "+r.TTL.String()+" out of range [0, "+MaxLeaseTTL.String()+"]")
	}
	return nil
}

// Lease is the engine's answer for one LeaseRequest.
type Lease struct {
	// ID continues the lease in the next request; "" when it is closed.
	ID string
	// Held is the budget the lease holds now: what may still be drawn.
	Held int64
	// Used is the counter's usage after the op, every lease's held amount
	// included.
	Used int64
	// Limit is the spec's limit.
	Limit int64
	// Remaining is Limit−Used, never below zero.
	Remaining int64
	// Reset is when the window's current usage is entirely forgotten.
	Reset time.Time
	// ValidUntil is the last instant the lease may be drawn from: its expiry,
	// or earlier the end of the frame its budget is charged to (the calendar
	// or flexi window, or the rolling sub-bucket), after which consumption
	// would be counted in the wrong window. Zero when the lease is closed.
	ValidUntil time.Time
	// Lost reports that ID named no open lease of the current frame (unknown,
	// expired, closed, or from an ended frame): Used was charged without
	// double counting and a new lease was opened.
	Lost bool
	// Err is set, and the rest empty, when this item was invalid.
	Err error
}

// Lease reports consumption on, and resizes, several leases in one backend
// round trip. Each item is atomic on its own; the items are independent. An
// invalid item gets Lease.Err and is not applied; the error return is for
// backend failures and for a batch of the wrong size.
func (e *Engine) Lease(ctx context.Context, reqs []LeaseRequest) ([]Lease, error) {
	if len(reqs) == 0 || len(reqs) > MaxBatch {
		return nil, config.Wrap("", ErrInvalidRequest, ": a batch holds 1 to "+strconv.Itoa(MaxBatch)+" requests, got "+strconv.Itoa(len(reqs)))
	}
	lb, ok := e.backend.(LeaseBackend)
	if !ok {
		return nil, ErrLeaseUnsupported
	}
	now := e.now()
	nowMs := window.Ms(now)
	out := make([]Lease, len(reqs))
	ops := make([]LeaseOp, 0, len(reqs))
	idx := make([]int, 0, len(reqs))
	for i, r := range reqs {
		op, err := leaseOp(r, now)
		if err != nil {
			out[i].Err = config.Wrap("request "+strconv.Itoa(i)+": ", err, "")
			continue
		}
		ops = append(ops, op)
		idx = append(idx, i)
	}
	if len(ops) == 0 {
		return out, nil
	}
	outs, err := lb.Lease(ctx, nowMs, ops)
	if err != nil {
		return nil, config.Wrap("counter backend: ", err, "")
	}
	if len(outs) != len(ops) {
		return nil, errors.New("counter backend: " + strconv.Itoa(len(outs)) + " lease outcomes for " + strconv.Itoa(len(ops)) + " ops")
	}
	for j, o := range outs {
		r, op := reqs[idx[j]], ops[j]
		d := decide(r.Spec, now, 0, o.Outcome)
		l := Lease{Held: o.Held, Used: d.Used, Limit: d.Limit, Remaining: d.Remaining, Reset: d.Reset, Lost: o.Lost}
		if o.Token != "" {
			l.ID = r.ID
			if o.Token != op.Token || r.ID == "" {
				l.ID = encodeID(r.Key, r.Spec, o.Token)
			}
			l.ValidUntil = window.FromMs(min(op.Expires, frameEnd(r.Spec, op.Frame, o.Outcome)))
		}
		out[idx[j]] = l
	}
	return out, nil
}

// leaseOp validates one request and precomputes its backend op.
func leaseOp(r LeaseRequest, now time.Time) (LeaseOp, error) {
	if err := r.Validate(); err != nil {
		return LeaseOp{}, err
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = DefaultLeaseTTL
	}
	newToken, err := newToken()
	if err != nil {
		return LeaseOp{}, err
	}
	op := LeaseOp{Frame: frameFor(r.Key, r.Spec, now), Limit: r.Spec.Limit, NewToken: newToken,
		Used: r.Used, Want: r.Want, Min: r.Min, Seq: r.Seq, Expires: window.Ms(now.Add(ttl))}
	if r.ID != "" {
		k, s, token, err := decodeID(r.ID)
		if err != nil {
			return LeaseOp{}, config.Wrap("", ErrInvalidLeaseID, " ("+err.Error()+")")
		}
		// A lease of another counter is unknown here: its Used is charged to
		// this counter and the other lease expires on its own.
		if CounterID(k, s) == op.Counter {
			op.Token = token
		} else {
			op.Token = "-"
		}
	}
	return op, nil
}

// frameEnd is when the frame a lease's budget is charged to stops being the
// current one: usage drawn later would belong to another window or bucket.
func frameEnd(s window.Spec, f Frame, o Outcome) int64 {
	switch s.Kind {
	case window.Rolling:
		return (f.Current + 1) * s.BucketWidth()
	case window.Flexi:
		return o.WindowEnd
	}
	return f.Deadline
}
