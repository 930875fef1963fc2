package lease

import (
	"encoding/binary"
	"errors"
)

// record is the shared-data state of one counter's lease in this Envoy
// (docs/leases.md). Amounts are in the counter's unit; instants are Unix
// milliseconds.
type record struct {
	// ID is the keystore's lease id ("" when none is open).
	ID string
	// Avail is what requests may still take locally; it can go below zero
	// when a settle charged more than was taken.
	Avail int64
	// Inflight is what open local reservations hold.
	Inflight int64
	// Pending is consumption not yet reported to the keystore.
	Pending int64
	// Sent is the part of Pending reported by the callout in flight.
	Sent int64
	// Flight is when the callout in flight is given up (0: none); Tag
	// names it, so a late answer to a given-up callout is ignored.
	Flight int64
	Tag    uint64
	// Valid is when the lease stops covering takes (its window's end or
	// its expiry); Expiry is when the keystore releases it if not renewed.
	Valid, Expiry int64
	// Limit, Remaining and Reset are the counter's state at the last
	// answer (Remaining excludes every lease's held amount).
	Limit, Remaining, Reset int64
	// Demand is what was asked since the last renewal (fallbacks too);
	// Rate smooths it over renewals; Peak is the largest single ask,
	// decaying.
	Demand, Rate, Peak int64
	// LastUse is the last take.
	LastUse int64
	// Seq numbers the reports on this record's leases: the keystore counts
	// a re-send of an unanswered report (same Seq, a Used at least as
	// large) once. It grows by one with each answered report.
	Seq int64
}

// recordVersion leads every encoded record; version 1 had no Seq.
const recordVersion = 2

var errRecord = errors.New("lease: malformed record")

// protected reports whether the record holds something that evicting it
// would lose: an open lease, local reservations or unreported consumption.
func (r *record) protected() bool { return r.ID != "" || r.Inflight != 0 || r.Pending != 0 }

func (r *record) encode() []byte {
	b := make([]byte, 0, 64+len(r.ID))
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, uint64(len(r.ID)))
	b = append(b, r.ID...)
	for _, v := range [...]int64{r.Avail, r.Inflight, r.Pending, r.Sent, r.Flight, r.Valid, r.Expiry,
		r.Limit, r.Remaining, r.Reset, r.Demand, r.Rate, r.Peak, r.LastUse, r.Seq} {
		b = binary.AppendVarint(b, v)
	}
	return binary.AppendUvarint(b, r.Tag)
}

func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) == 0 {
		return r, nil
	}
	version := b[0]
	if version != 1 && version != recordVersion {
		return r, errRecord
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return record{}, errRecord
	}
	r.ID = string(b[k : k+int(n)])
	b = b[k+int(n):]
	fields := []*int64{&r.Avail, &r.Inflight, &r.Pending, &r.Sent, &r.Flight, &r.Valid, &r.Expiry,
		&r.Limit, &r.Remaining, &r.Reset, &r.Demand, &r.Rate, &r.Peak, &r.LastUse, &r.Seq}
	if version == 1 {
		fields = fields[:len(fields)-1]
	}
	for _, p := range fields {
		v, k := binary.Varint(b)
		if k <= 0 {
			return record{}, errRecord
		}
		*p, b = v, b[k:]
	}
	tag, k := binary.Uvarint(b)
	if k <= 0 || k != len(b) {
		return record{}, errRecord
	}
	r.Tag = tag
	return r, nil
}
