// Package table is a bounded table of small records kept in a shared
// key-value store with compare-and-swap: proxy-wasm shared data, which every
// Envoy worker of one vm_id sees. It is the one shared-data mechanism of the
// filters: the quota filter keeps its per-Envoy counters in it directly, and
// shared/cache builds the apikey filter's expiring cache with claims on it.
//
// # Layout
//
// The table is set-associative: MaxEntries records are spread over
// ceil(MaxEntries/Ways) sets, each stored as one value under
// "<namespace>.<set>". A record's id picks its set by FNV-1a. Proxy-wasm
// shared data can never delete a key, so a fixed number of store keys is the
// only way to bound memory whatever ids clients cause (client IPs, header
// values, API keys).
//
// # Updates
//
// Every change is a read-modify-write of one set under CAS, retried on
// conflict (bounded), so concurrent workers never lose each other's
// updates: an Update's function sees the record as it is when the write
// succeeds. Lookups never write.
//
// # Expiry and eviction
//
// Records carry an expiry; expired records read as absent and are dropped
// whenever their set is rewritten. A write into a full set of live records
// evicts the record that expires first — among the unprotected ones, when
// Options.Protect marks some — and reports it, because forgetting a live
// counter under-counts: size MaxEntries above the number of ids active at
// once.
//
// Instants (now, expiry) are int64s in whatever unit the user picks, the
// same for every handle on one namespace: the quota filter uses Unix
// milliseconds, shared/cache Unix nanoseconds.
package table

import (
	"encoding/binary"
	"errors"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/tollgate/tollgate/shared/config"
)

// Store is the shared key-value store the table lives in: proxy-wasm shared
// data in a filter (shareddata.Store), MemStore in native tests.
type Store interface {
	// Get returns a value and its CAS version; found is false when the key
	// does not exist. The value is the caller's: the table keeps views of it
	// (record ids and values), so the store must not change it afterwards.
	Get(key string) (value []byte, cas uint32, found bool, err error)
	// Set writes value if the stored version still equals cas (0: unconditionally);
	// ok is false on a version mismatch.
	Set(key string, value []byte, cas uint32) (ok bool, err error)
}

// Options size the table.
type Options struct {
	// Namespace prefixes every store key, e.g. "tollgate.quota.v1".
	Namespace string
	// MaxEntries bounds the number of live records (1 to 1<<20).
	MaxEntries int
	// Ways is the number of records per set (default 4, at most 64).
	Ways int
	// MaxValueLen bounds a record's value (default DefaultMaxValueLen, at most 1 MiB).
	MaxValueLen int
	// Protect, when set, marks values evicted only once every record of
	// their set is protected (shared/cache protects its claims).
	Protect func(value []byte) bool
}

// Limits of the table.
const (
	// MaxIDLen bounds a record id.
	MaxIDLen = 2048
	// DefaultMaxValueLen bounds a record's value unless Options say otherwise.
	DefaultMaxValueLen = 16 << 10
	// MaxAttempts bounds the CAS retries of one Update.
	MaxAttempts = 64
)

// Errors of the table.
var (
	// ErrTooLarge refuses an id or value over the limits.
	ErrTooLarge = errors.New("table: id or value too large")
	// ErrContention reports that CAS retries ran out; nothing was written.
	ErrContention = errors.New("table: too much contention on one set")
)

// Table is a handle on one shared table; it holds no records itself, so
// every worker's handle sees the same records.
type Table struct {
	store    Store
	ns       string
	sets     uint64
	ways     int
	maxValue int
	protect  func([]byte) bool
	// keys remembers each set's store key once built (tables of up to
	// maxCachedKeys sets): every lookup and update needs one, and a
	// handle may be shared by goroutines in native tests, hence atomics.
	keys []atomic.Pointer[string]
}

// maxCachedKeys bounds the sets whose keys a handle remembers (8 bytes
// each, plus the key of each set used).
const maxCachedKeys = 4096

// New checks the options and returns a handle; call Init once per Wasm VM
// before serving.
func New(store Store, opts Options) (*Table, error) {
	if store == nil {
		return nil, errors.New("table: nil store")
	}
	if opts.Namespace == "" {
		return nil, errors.New("table: empty namespace")
	}
	if opts.Ways == 0 {
		opts.Ways = 4
	}
	if opts.Ways < 1 || opts.Ways > 64 {
		return nil, errors.New("table: ways " + strconv.Itoa(opts.Ways) + " out of range 1..64")
	}
	if opts.MaxEntries < 1 || opts.MaxEntries > 1<<20 {
		return nil, errors.New("table: max entries " + strconv.Itoa(opts.MaxEntries) + " out of range 1.." + strconv.Itoa(1<<20))
	}
	if opts.MaxValueLen == 0 {
		opts.MaxValueLen = DefaultMaxValueLen
	}
	if opts.MaxValueLen < 1 || opts.MaxValueLen > 1<<20 {
		return nil, errors.New("table: max value length " + strconv.Itoa(opts.MaxValueLen) + " out of range 1.." + strconv.Itoa(1<<20))
	}
	opts.Ways = min(opts.Ways, opts.MaxEntries)
	sets := (opts.MaxEntries + opts.Ways - 1) / opts.Ways
	t := &Table{store: store, ns: opts.Namespace, sets: uint64(sets), ways: opts.Ways,
		maxValue: opts.MaxValueLen, protect: opts.Protect}
	if sets <= maxCachedKeys {
		t.keys = make([]atomic.Pointer[string], sets)
	}
	return t, nil
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
			return config.Wrap("table: init "+k+": ", err, "")
		}
		if found {
			continue
		}
		if _, err := t.store.Set(k, []byte{setVersion}, 0); err != nil {
			return config.Wrap("table: init "+k+": ", err, "")
		}
	}
	return nil
}

// setKey is "<namespace>.<i>": built once per set and remembered, since
// it runs on every lookup and update.
func (t *Table) setKey(i uint64) string {
	if i < uint64(len(t.keys)) {
		if k := t.keys[i].Load(); k != nil {
			return *k
		}
	}
	var buf [96]byte
	b := append(buf[:0], t.ns...)
	b = append(b, '.')
	k := string(strconv.AppendUint(b, i, 10))
	if i < uint64(len(t.keys)) {
		t.keys[i].Store(&k)
	}
	return k
}

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
	expires int64 // the record reads as absent from then on
	value   []byte
}

// setVersion is the first byte of every set value.
const setVersion byte = 2

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
var errCorrupt = errors.New("table: corrupt set")

// decode parses encode's output, appending to rs (a caller's buffer, so
// that a set read allocates nothing); ids and values alias b, which the
// Store hands over (a fresh copy) and nothing writes afterwards.
func decode(b []byte, rs []record) ([]record, error) {
	if len(b) == 0 {
		return rs, nil
	}
	if b[0] != setVersion {
		return nil, config.Wrap("", errCorrupt, ": version "+strconv.FormatUint(uint64(b[0]), 10))
	}
	b = b[1:]
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, config.Wrap("", errCorrupt, ": truncated record")
		}
		il := int(binary.LittleEndian.Uint16(b))
		b = b[2:]
		if len(b) < il+12 {
			return nil, config.Wrap("", errCorrupt, ": truncated record")
		}
		r := record{id: unsafe.String(unsafe.SliceData(b), il)}
		b = b[il:]
		r.expires = int64(binary.LittleEndian.Uint64(b))
		vl := binary.LittleEndian.Uint32(b[8:])
		b = b[12:]
		if uint64(vl) > uint64(len(b)) {
			return nil, config.Wrap("", errCorrupt, ": value length "+strconv.FormatUint(uint64(vl), 10))
		}
		r.value = b[:vl:vl]
		b = b[vl:]
		rs = append(rs, r)
	}
	return rs, nil
}

// setBuf holds one set's records on the caller's stack (sets of up to 8
// ways; the default is 4).
type setBuf [8]record

// read loads one set into buf. A corrupt set reads as empty and is
// overwritten by the next write, so one bad value never wedges a filter.
func (t *Table) read(key string, buf []record) ([]record, uint32, error) {
	raw, cas, _, err := t.store.Get(key)
	if err != nil {
		return nil, 0, config.Wrap("table: read "+key+": ", err, "")
	}
	rs, err := decode(raw, buf)
	if err != nil {
		return buf[:0], cas, nil
	}
	return rs, cas, nil
}

// Get returns the live value of id and its expiry (ok false when absent or expired).
func (t *Table) Get(id string, now int64) (value []byte, expires int64, ok bool, err error) {
	var buf setBuf
	rs, _, err := t.read(t.SetOf(id), buf[:0])
	if err != nil {
		return nil, 0, false, err
	}
	for i := range rs {
		if rs[i].id == id && rs[i].expires > now {
			return rs[i].value, rs[i].expires, true, nil
		}
	}
	return nil, 0, false, nil
}

// Scan calls fn with the id, value and expiry of every live record of set
// i (0 ≤ i < Sets()), for owners that sweep their whole table (the
// tokencount filter's settle queue). It never writes; value aliases the
// read and must not be kept.
func (t *Table) Scan(i int, now int64, fn func(id string, value []byte, expires int64)) error {
	if i < 0 || uint64(i) >= t.sets {
		return errors.New("table: set " + strconv.Itoa(i) + " out of range 0.." + strconv.FormatUint(t.sets-1, 10))
	}
	var buf setBuf
	rs, _, err := t.read(t.setKey(uint64(i)), buf[:0])
	if err != nil {
		return err
	}
	for j := range rs {
		if rs[j].expires > now {
			fn(rs[j].id, rs[j].value, rs[j].expires)
		}
	}
	return nil
}

// Mutator computes a record's next value from its current one and that
// one's expiry (nil, 0 when absent or expired). It returns the value to
// store and its expiry; an expiry at or before now deletes the record, and
// write=false leaves the set untouched. It may run several times (once per
// CAS attempt) and must not modify old.
type Mutator func(old []byte, oldExpires int64) (value []byte, expires int64, write bool)

// Update applies fn to id's record under CAS. evicted reports that another
// live record had to be dropped to make room.
func (t *Table) Update(id string, now int64, fn Mutator) (evicted bool, err error) {
	if len(id) > MaxIDLen {
		return false, ErrTooLarge
	}
	key := t.SetOf(id)
	for range MaxAttempts {
		var buf, out setBuf
		rs, cas, err := t.read(key, buf[:0])
		if err != nil {
			return false, err
		}
		var old []byte
		var oldExpires int64
		at := -1
		for i := range rs {
			if rs[i].id == id {
				at = i
				if rs[i].expires > now {
					old, oldExpires = rs[i].value, rs[i].expires
				}
				break
			}
		}
		value, expires, write := fn(old, oldExpires)
		if !write {
			return false, nil
		}
		if len(value) > t.maxValue {
			return false, ErrTooLarge
		}
		next, ev := t.place(rs, at, record{id: id, expires: expires, value: value}, now, out[:0])
		ok, err := t.store.Set(key, encode(next), cas)
		if err != nil {
			return false, config.Wrap("table: write "+key+": ", err, "")
		}
		if ok {
			return ev, nil
		}
	}
	return false, ErrContention
}

// place returns the set with r stored (or removed when expired), expired
// records dropped, and at most ways records, evicting a victim when the set
// is full of live records; it appends to out.
func (t *Table) place(rs []record, at int, r record, now int64, out []record) ([]record, bool) {
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
		v := t.victim(out)
		out = append(out[:v], out[v+1:]...)
		evicted = true
	}
	return append(out, r), evicted
}

// victim picks the record to evict: the unprotected one expiring first, or,
// when every record is protected, the one expiring first.
func (t *Table) victim(rs []record) int {
	best := -1
	for i := range rs {
		if t.protect != nil && t.protect(rs[i].value) {
			continue
		}
		if best < 0 || rs[i].expires < rs[best].expires {
			best = i
		}
	}
	if best >= 0 {
		return best
	}
	best = 0
	for i := range rs {
		if rs[i].expires < rs[best].expires {
			best = i
		}
	}
	return best
}
