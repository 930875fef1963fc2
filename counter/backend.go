package counter

import (
	"context"
	"errors"

	"github.com/tollgate/tollgate/window"
)

// ErrReservationNotFound is returned by Settle and Release for a reservation
// that is unknown, already settled or released, or expired (and therefore
// already released automatically).
var ErrReservationNotFound = errors.New("reservation not found")

// Backend stores counters and applies precomputed operations atomically.
//
// The Engine computes every window boundary; a backend only keeps buckets
// of usage per counter and follows these rules, which the contract tests in
// package countertest check for every implementation:
//
//   - A counter holds buckets (index → usage), the flexi window (start, end)
//     for flexi counters, and its open reservations (id → bucket, amount,
//     expiry).
//   - The usage of a counter is the sum of its buckets with index ≥ Oldest;
//     older buckets are deleted. For flexi counters Oldest is the start of the
//     live window, and when the stored window has ended (now ≥ end) all
//     buckets are deleted; a new window [FlexiStart, FlexiEnd) is opened by
//     the first op with N > 0, and its start is the bucket index.
//   - Reservations whose expiry is ≤ now are released before anything else:
//     their amount is subtracted from their bucket if that bucket is still
//     counted, and they are forgotten.
//   - An op fits when usage + N ≤ Limit. It is applied (N added to bucket
//     Current, and the reservation recorded if one is named) when it fits or
//     Force is set; in an atomic Apply no op is applied unless all fit.
//   - Storage for a counter may be dropped once no bucket is counted and no
//     reservation is open any more.
type Backend interface {
	// Apply runs ops in order as one atomic step and returns one Outcome per op.
	Apply(ctx context.Context, now int64, ops []Op, atomic bool) ([]Outcome, error)
	// Adjust settles (Actual ≥ 0) or releases (Actual < 0) one reservation.
	Adjust(ctx context.Context, now int64, a Adjustment) (Outcome, error)
	// Close flushes and releases the backend's resources.
	Close() error
}

// Frame is the counting geometry of a counter at one instant, computed by
// the Engine and shared by Op and Adjustment.
type Frame struct {
	// Counter is the storage identity: canonical key, "|", window shape.
	Counter string
	// Kind is the window kind, which selects the flexi rules.
	Kind window.Kind
	// Current is the bucket charged now (calendar: window start in Unix ms;
	// rolling: sub-bucket index; flexi: unused, the window start is stored).
	Current int64
	// Oldest is the oldest bucket still counted (calendar and rolling).
	Oldest int64
	// Deadline is when bucket Current stops being counted, in Unix ms
	// (calendar and rolling); storage must live at least until then.
	Deadline int64
	// FlexiStart and FlexiEnd bound the flexi window that an op would open now.
	FlexiStart, FlexiEnd int64
}

// Op is one precomputed consume or reserve handed to a Backend.
type Op struct {
	Frame
	// N is the usage to add.
	N int64
	// Limit is the most usage the window allows.
	Limit int64
	// Force applies N even when it does not fit (usage that already happened).
	Force bool
	// Reservation, when set, records the charge under this token so that it
	// can be settled or released later.
	Reservation string
	// ReservationExpires is when an unsettled reservation is released (Unix ms).
	ReservationExpires int64
}

// Adjustment is a settle or release of one reservation.
type Adjustment struct {
	Frame
	// Reservation is the token recorded by Op.Reservation.
	Reservation string
	// Actual replaces the reserved amount; negative means release.
	Actual int64
}

// Bucket is one rolling sub-bucket and its usage.
type Bucket struct {
	// Index is the sub-bucket index (Unix ms / bucket width).
	Index int64
	// Used is the usage counted in the bucket.
	Used int64
}

// Outcome is what a Backend reports for one op or adjustment.
type Outcome struct {
	// Allowed reports whether the op fitted and was applied.
	Allowed bool
	// Used is the counted usage after the operation.
	Used int64
	// WindowStart and WindowEnd bound the live flexi window (0 when none).
	WindowStart, WindowEnd int64
	// Buckets lists the counted rolling buckets in ascending index order.
	Buckets []Bucket
}
