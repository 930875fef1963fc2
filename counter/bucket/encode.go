package bucket

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/tollgate/tollgate/counter"
)

// ErrCorrupt reports bytes that are not an encoded State.
var ErrCorrupt = errors.New("bucket: corrupt counter state")

// encodingVersion is the first byte of every encoded State.
const encodingVersion byte = 1

// Limits of the binary encoding, which stores counts in 16 bits and tokens
// with an 8-bit length.
const (
	// MaxBuckets is the most buckets an encodable State holds.
	MaxBuckets = math.MaxUint16
	// MaxReservations is the most open reservations an encodable State holds.
	MaxReservations = math.MaxUint16
	// MaxTokenLen is the longest reservation token an encodable State holds.
	MaxTokenLen = math.MaxUint8
)

// ErrTooLarge reports a State beyond the limits of the binary encoding.
var ErrTooLarge = errors.New("bucket: counter state too large to encode")

// AppendBinary appends the compact binary form of st to b, for backends that
// keep a counter in one byte string (proxy-wasm shared data):
//
//	version(1) flexiStart(8) flexiEnd(8) expireAt(8)
//	nBuckets(2) { index(8) used(8) }…
//	nReservations(2) { len(1) token bucket(8) amount(8) expires(8) }…
//
// Integers are little-endian.
func (st *State) AppendBinary(b []byte) ([]byte, error) {
	if len(st.Buckets) > MaxBuckets || len(st.Reservations) > MaxReservations {
		return b, ErrTooLarge
	}
	for _, r := range st.Reservations {
		if len(r.Token) > MaxTokenLen {
			return b, ErrTooLarge
		}
	}
	b = append(b, encodingVersion)
	b = binary.LittleEndian.AppendUint64(b, uint64(st.FlexiStart))
	b = binary.LittleEndian.AppendUint64(b, uint64(st.FlexiEnd))
	b = binary.LittleEndian.AppendUint64(b, uint64(st.ExpireAt))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(st.Buckets)))
	for _, bk := range st.Buckets {
		b = binary.LittleEndian.AppendUint64(b, uint64(bk.Index))
		b = binary.LittleEndian.AppendUint64(b, uint64(bk.Used))
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(st.Reservations)))
	for _, r := range st.Reservations {
		b = append(b, byte(len(r.Token)))
		b = append(b, r.Token...)
		b = binary.LittleEndian.AppendUint64(b, uint64(r.Bucket))
		b = binary.LittleEndian.AppendUint64(b, uint64(r.Amount))
		b = binary.LittleEndian.AppendUint64(b, uint64(r.Expires))
	}
	return b, nil
}

// Decode parses what AppendBinary wrote. Empty input is the empty State.
// Buckets must be in strictly ascending index order with positive usage, as
// AppendBinary writes them; anything else is ErrCorrupt.
func Decode(b []byte) (State, error) {
	var st State
	if len(b) == 0 {
		return st, nil
	}
	if b[0] != encodingVersion || len(b) < 1+24+2 {
		return State{}, ErrCorrupt
	}
	u := func(p []byte) int64 { return int64(binary.LittleEndian.Uint64(p)) }
	st.FlexiStart, st.FlexiEnd, st.ExpireAt = u(b[1:]), u(b[9:]), u(b[17:])
	nb := int(binary.LittleEndian.Uint16(b[25:]))
	b = b[27:]
	if len(b) < 16*nb+2 {
		return State{}, ErrCorrupt
	}
	if nb > 0 {
		st.Buckets = make([]counter.Bucket, nb)
	}
	for i := range st.Buckets {
		bk := counter.Bucket{Index: u(b), Used: u(b[8:])}
		if bk.Used <= 0 || (i > 0 && bk.Index <= st.Buckets[i-1].Index) {
			return State{}, ErrCorrupt
		}
		st.Buckets[i] = bk
		b = b[16:]
	}
	nr := int(binary.LittleEndian.Uint16(b))
	b = b[2:]
	for range nr {
		if len(b) < 1 || len(b) < 1+int(b[0])+24 {
			return State{}, ErrCorrupt
		}
		tl := int(b[0])
		r := Reservation{Token: string(b[1 : 1+tl])}
		b = b[1+tl:]
		r.Bucket, r.Amount, r.Expires = u(b), u(b[8:]), u(b[16:])
		b = b[24:]
		st.Reservations = append(st.Reservations, r)
		st.noteExpiry(r.Expires)
	}
	if len(b) != 0 {
		return State{}, ErrCorrupt
	}
	return st, nil
}
