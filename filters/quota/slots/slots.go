// Package slots is a bounded table of small records kept in a shared
// key-value store with compare-and-swap: proxy-wasm shared data, which every
// Envoy worker of one vm_id sees. The quota filter keeps its per-Envoy
// counters, spike-arrest states and async sync states in it.
//
// # Layout
//
// The table is set-associative: MaxEntries records are spread over
// ceil(MaxEntries/Ways) sets, each stored as one value under
// "<namespace>.<set>". A record's id picks its set by FNV-1a. Proxy-wasm
// shared data can never delete a key, so a fixed number of store keys is the
// only way to bound memory whatever ids clients cause (client IPs, header
// values).
//
// # Updates
//
// Every change is a read-modify-write of one set under CAS, retried on
// conflict (bounded), so concurrent workers never lose each other's
// updates: an Update's function sees the record as it is when the write
// succeeds. Records carry an expiry; expired records read as absent and are
// dropped whenever their set is rewritten. A write into a full set evicts the
// record that expires first and reports it, because forgetting a live counter
// under-counts: size MaxEntries above the number of keys active at once.
package slots

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Store is the shared key-value store the table lives in; proxy-wasm shared
// data in the filter, shared/cache.MemStore in native tests.
type Store interface {
	// Get returns a value and its CAS version; found is false when the key does not exist.
	Get(key string) (value []byte, cas uint32, found bool, err error)
	// Set writes value if the stored version still equals cas (0: unconditionally);
	// ok is false on a version mismatch.
	Set(key string, value []byte, cas uint32) (ok bool, err error)
}

// Options size the table.
type Options struct {
	// Namespace prefixes every store key, e.g. "tollgate.quota.v1".
	Namespace string
	// MaxEntries bounds the number of live records.
	MaxEntries int
	// Ways is the number of records per set (default 4).
	Ways int
}

// Limits of the table.
const (
	// MaxIDLen bounds a record id.
	MaxIDLen = 2048
	// MaxValueLen bounds a record's value.
	MaxValueLen = 16 << 10
	// MaxAttempts bounds the CAS retries of one Update.
	MaxAttempts = 64
)

// Errors of the table.
var (
	// ErrTooLarge refuses an id or value over the limits.
	ErrTooLarge = errors.New("slots: id or value too large")
	// ErrContention reports that CAS retries ran out; nothing was written.
	ErrContention = errors.New("slots: too much contention on one set")
)

// Table is a handle on one shared table; it holds no records itself, so
// every worker's handle sees the same records.
type Table struct {
	store Store
	ns    string
	sets  uint64
	ways  int
}

// New checks the options and returns a handle; call Init once per Wasm VM
// before serving.
func New(store Store, opts Options) (*Table, error) {
	if store == nil {
		return nil, errors.New("slots: nil store")
	}
	if opts.Namespace == "" {
		return nil, errors.New("slots: empty namespace")
	}
	if opts.Ways == 0 {
		opts.Ways = 4
	}
	if opts.Ways < 1 || opts.Ways > 64 {
		return nil, fmt.Errorf("slots: ways %d out of range 1..64", opts.Ways)
	}
	if opts.MaxEntries < 1 || opts.MaxEntries > 1<<20 {
		return nil, fmt.Errorf("slots: max entries %d out of range 1..%d", opts.MaxEntries, 1<<20)
	}
	opts.Ways = min(opts.Ways, opts.MaxEntries)
	sets := (opts.MaxEntries + opts.Ways - 1) / opts.Ways
	return &Table{store: store, ns: opts.Namespace, sets: uint64(sets), ways: opts.Ways}, nil
}

// Sets is the number of store keys the table uses.
func (t *Table) Sets() int { return int(t.sets) }

// Capacity is the number of records the table can hold.
func (t *Table) Capacity() int { return int(t.sets) * t.ways }

// Init creates every set that does not exist yet. Shared data has no
// create-if-absent (a missing key accepts any CAS), so a set created lazily
// by two workers at once could lose one worker's first record; creating the
// sets before serving closes that window.
func (t *Table) Init() error {
	for i := uint64(0); i < t.sets; i++ {
		k := t.setKey(i)
		_, _, found, err := t.store.Get(k)
		if err != nil {
			return fmt.Errorf("slots: init %s: %w", k, err)
		}
		if found {
			continue
		}
		if _, err := t.store.Set(k, []byte{setVersion}, 0); err != nil {
			return fmt.Errorf("slots: init %s: %w", k, err)
		}
	}
	return nil
}

func (t *Table) setKey(i uint64) string { return t.ns + "." + strconv.FormatUint(i, 10) }

// SetOf names the store key holding id (exported for tests and diagnostics).
func (t *Table) SetOf(id string) string { return t.setKey(fnv64a(id) % t.sets) }

func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// record is one id's value and expiry.
type record struct {
	id      string
	expires int64 // unix ms; the record reads as absent from then on
	value   []byte
}

const setVersion byte = 1

// encode writes: version byte, then per record idLen(2) id expires(8)
// valueLen(4) value, little-endian.
func encode(rs []record) []byte {
	n := 1
	for i := range rs {
		n += 2 + len(rs[i].id) + 8 + 4 + len(rs[i].value)
	}
	b := make([]byte, 0, n)
	b = append(b, setVersion)
	for i := range rs {
		r := &rs[i]
		b = binary.LittleEndian.AppendUint16(b, uint16(len(r.id)))
		b = append(b, r.id...)
		b = binary.LittleEndian.AppendUint64(b, uint64(r.expires))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r.value)))
		b = append(b, r.value...)
	}
	return b
}

// errCorrupt marks a set value that does not decode.
var errCorrupt = errors.New("slots: corrupt set")

// decode parses encode's output; values alias b.
func decode(b []byte) ([]record, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != setVersion {
		return nil, fmt.Errorf("%w: version %d", errCorrupt, b[0])
	}
	b = b[1:]
	var rs []record
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, fmt.Errorf("%w: truncated record", errCorrupt)
		}
		il := int(binary.LittleEndian.Uint16(b))
		b = b[2:]
		if len(b) < il+12 {
			return nil, fmt.Errorf("%w: truncated record", errCorrupt)
		}
		r := record{id: string(b[:il])}
		b = b[il:]
		r.expires = int64(binary.LittleEndian.Uint64(b))
		vl := binary.LittleEndian.Uint32(b[8:])
		b = b[12:]
		if vl > MaxValueLen || uint64(vl) > uint64(len(b)) {
			return nil, fmt.Errorf("%w: value length %d", errCorrupt, vl)
		}
		r.value = b[:vl:vl]
		b = b[vl:]
		rs = append(rs, r)
	}
	return rs, nil
}

// read loads one set. A corrupt set reads as empty and is overwritten by the
// next write, so one bad value never wedges the filter.
func (t *Table) read(key string) ([]record, uint32, error) {
	raw, cas, _, err := t.store.Get(key)
	if err != nil {
		return nil, 0, fmt.Errorf("slots: read %s: %w", key, err)
	}
	rs, err := decode(raw)
	if err != nil {
		return nil, cas, nil
	}
	return rs, cas, nil
}

// Get returns the live value of id (nil, false when absent or expired).
func (t *Table) Get(id string, now int64) ([]byte, bool, error) {
	rs, _, err := t.read(t.SetOf(id))
	if err != nil {
		return nil, false, err
	}
	for i := range rs {
		if rs[i].id == id && rs[i].expires > now {
			return rs[i].value, true, nil
		}
	}
	return nil, false, nil
}

// Mutator computes a record's next value from its current one (nil when
// absent or expired). It returns the value to store and its expiry; an
// expiry at or before now deletes the record, and write=false leaves the set
// untouched. It may run several times (once per CAS attempt) and must not
// keep old, which aliases the store's buffer.
type Mutator func(old []byte) (value []byte, expires int64, write bool)

// Update applies fn to id's record under CAS. evicted reports that another
// live record had to be dropped to make room.
func (t *Table) Update(id string, now int64, fn Mutator) (evicted bool, err error) {
	if len(id) > MaxIDLen {
		return false, ErrTooLarge
	}
	key := t.SetOf(id)
	for range MaxAttempts {
		rs, cas, err := t.read(key)
		if err != nil {
			return false, err
		}
		var old []byte
		at := -1
		for i := range rs {
			if rs[i].id == id {
				at = i
				if rs[i].expires > now {
					old = rs[i].value
				}
				break
			}
		}
		value, expires, write := fn(old)
		if !write {
			return false, nil
		}
		if len(value) > MaxValueLen {
			return false, ErrTooLarge
		}
		next, ev := t.place(rs, at, record{id: id, expires: expires, value: value}, now)
		ok, err := t.store.Set(key, encode(next), cas)
		if err != nil {
			return false, fmt.Errorf("slots: write %s: %w", key, err)
		}
		if ok {
			return ev, nil
		}
	}
	return false, ErrContention
}

// place returns the set with r stored (or removed when expired), expired
// records dropped, and at most ways records, evicting the one that expires
// first when the set is full of live records.
func (t *Table) place(rs []record, at int, r record, now int64) ([]record, bool) {
	out := make([]record, 0, t.ways)
	for i := range rs {
		if i != at && rs[i].expires > now {
			out = append(out, rs[i])
		}
	}
	if r.expires <= now {
		return out, false
	}
	evicted := false
	for len(out) >= t.ways {
		first := 0
		for i := range out {
			if out[i].expires < out[first].expires {
				first = i
			}
		}
		out = append(out[:first], out[first+1:]...)
		evicted = true
	}
	return append(out, r), evicted
}
