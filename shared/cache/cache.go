// Package cache is a bounded, expiring cache kept in a shared key-value store
// with compare-and-swap — proxy-wasm shared data, which every Envoy worker of
// one vm_id sees — with per-key claims so that concurrent misses for one key
// are coalesced into a single fetch.
//
// # Layout
//
// The cache is set-associative: MaxEntries entries are spread over
// ceil(MaxEntries/Ways) sets, each stored as one value under the key
// "<namespace>.<set>". A cache key picks its set by FNV-1a. Every change is a
// read-modify-write of one set with CAS, retried on conflict, so workers never
// lose each other's updates. Proxy-wasm shared data cannot delete keys, so a
// fixed number of store keys is the only way to bound memory whatever keys
// clients send.
//
// # Eviction
//
// A write to a full set drops, in order: entries already expired, then the
// entry with the earliest expiry that is not a live claim, then the claim
// that expires first. Expired entries are also dropped from any set being
// rewritten. Lookups never write.
//
// # Claims
//
// GetOrClaim either returns a live value, or reports that another owner holds
// a live claim (the caller waits and looks again), or records a claim for the
// caller (the caller fetches, then Put or Release). Claims expire, so a
// claimer that dies never blocks others for longer than its claim.
package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"
)

// Store is the shared key-value store the cache lives in.
type Store interface {
	// Get returns a value and its CAS version; found is false when the key does not exist.
	Get(key string) (value []byte, cas uint32, found bool, err error)
	// Set writes value if the stored version still equals cas (0: unconditionally);
	// ok is false on a version mismatch.
	Set(key string, value []byte, cas uint32) (ok bool, err error)
}

// Options size the cache.
type Options struct {
	// Namespace prefixes every store key, e.g. "tollgate.apikey.v1".
	Namespace string
	// MaxEntries bounds the number of entries (claims included).
	MaxEntries int
	// Ways is the number of entries per set (default 4).
	Ways int
}

// Limits of the cache.
const (
	// MaxKeyLen bounds a cache key.
	MaxKeyLen = 1024
	// MaxValueLen bounds a cached value; larger values are refused with ErrTooLarge.
	MaxValueLen = 64 << 10
	// maxAttempts bounds CAS retries of one operation.
	maxAttempts = 32
)

// Errors of the cache.
var (
	// ErrTooLarge refuses a key or value over the limits.
	ErrTooLarge = errors.New("cache: key or value too large")
	// ErrContention reports that CAS retries ran out; the operation did not happen.
	ErrContention = errors.New("cache: too much contention on one set")
	// ErrCorrupt reports a stored set that cannot be decoded (it is then reset).
	ErrCorrupt = errors.New("cache: corrupt set")
)

// Cache is a handle on one shared cache; it holds no entries itself, so any
// number of handles (one per Envoy worker) share the same store.
type Cache struct {
	store Store
	ns    string
	sets  uint64
	ways  int
}

// New checks the options and returns a handle; call Init once per process
// (per Wasm VM) before serving.
func New(store Store, opts Options) (*Cache, error) {
	if store == nil {
		return nil, errors.New("cache: nil store")
	}
	if opts.Namespace == "" {
		return nil, errors.New("cache: empty namespace")
	}
	if opts.Ways == 0 {
		opts.Ways = 4
	}
	if opts.Ways < 1 || opts.Ways > 64 {
		return nil, fmt.Errorf("cache: ways %d out of range 1..64", opts.Ways)
	}
	if opts.MaxEntries < 1 {
		return nil, fmt.Errorf("cache: max entries %d must be positive", opts.MaxEntries)
	}
	if opts.MaxEntries < opts.Ways {
		opts.Ways = opts.MaxEntries
	}
	sets := (opts.MaxEntries + opts.Ways - 1) / opts.Ways
	return &Cache{store: store, ns: opts.Namespace, sets: uint64(sets), ways: opts.Ways}, nil
}

// Sets is the number of sets (store keys) the cache uses.
func (c *Cache) Sets() int { return int(c.sets) }

// Capacity is the number of entries the cache can hold.
func (c *Cache) Capacity() int { return int(c.sets) * c.ways }

// Init creates every set that does not exist yet. Proxy-wasm shared data has
// no create-if-absent, so creating sets lazily would let two workers both
// "claim" a key on first use; creating them before serving closes that race.
func (c *Cache) Init() error {
	for i := uint64(0); i < c.sets; i++ {
		k := c.setKey(i)
		_, _, found, err := c.store.Get(k)
		if err != nil {
			return fmt.Errorf("cache: init %s: %w", k, err)
		}
		if found {
			continue
		}
		if _, err := c.store.Set(k, nil, 0); err != nil {
			return fmt.Errorf("cache: init %s: %w", k, err)
		}
	}
	return nil
}

func (c *Cache) setKey(i uint64) string { return c.ns + "." + strconv.FormatUint(i, 10) }

func (c *Cache) setOf(key string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return c.setKey(h.Sum64() % c.sets)
}

// Kinds of entries.
const (
	kindValue   byte = 'V'
	kindPending byte = 'P'
)

// entry is one cached value or claim.
type entry struct {
	kind    byte
	key     string
	expires int64 // unix nanoseconds
	owner   uint64
	value   []byte
}

func (e *entry) live(now int64) bool { return e.expires > now }

// setVersion is the first byte of every non-empty set value.
const setVersion byte = 1

// encodeSet writes: version byte, then per entry kind(1) keyLen(2) key
// expires(8) owner(8) valueLen(4) value, all little-endian.
func encodeSet(es []entry) []byte {
	if len(es) == 0 {
		return nil
	}
	n := 1
	for i := range es {
		n += 1 + 2 + len(es[i].key) + 8 + 8 + 4 + len(es[i].value)
	}
	b := make([]byte, 0, n)
	b = append(b, setVersion)
	for i := range es {
		e := &es[i]
		b = append(b, e.kind)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(e.key)))
		b = append(b, e.key...)
		b = binary.LittleEndian.AppendUint64(b, uint64(e.expires))
		b = binary.LittleEndian.AppendUint64(b, e.owner)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e.value)))
		b = append(b, e.value...)
	}
	return b
}

// decodeSet parses encodeSet's output; values alias b.
func decodeSet(b []byte) ([]entry, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != setVersion {
		return nil, fmt.Errorf("%w: version %d", ErrCorrupt, b[0])
	}
	b = b[1:]
	var es []entry
	for len(b) > 0 {
		if len(b) < 3 {
			return nil, fmt.Errorf("%w: truncated entry header", ErrCorrupt)
		}
		e := entry{kind: b[0]}
		if e.kind != kindValue && e.kind != kindPending {
			return nil, fmt.Errorf("%w: entry kind %#x", ErrCorrupt, e.kind)
		}
		kl := int(binary.LittleEndian.Uint16(b[1:]))
		b = b[3:]
		if len(b) < kl+20 {
			return nil, fmt.Errorf("%w: truncated entry", ErrCorrupt)
		}
		e.key = string(b[:kl])
		b = b[kl:]
		e.expires = int64(binary.LittleEndian.Uint64(b))
		e.owner = binary.LittleEndian.Uint64(b[8:])
		vl := binary.LittleEndian.Uint32(b[16:])
		b = b[20:]
		if uint64(vl) > uint64(len(b)) || vl > MaxValueLen {
			return nil, fmt.Errorf("%w: value length %d", ErrCorrupt, vl)
		}
		e.value = b[:vl:vl]
		b = b[vl:]
		es = append(es, e)
	}
	return es, nil
}

// read loads and decodes the set holding key; a corrupt set reads as empty
// (it is overwritten by the next write).
func (c *Cache) read(setKey string) ([]entry, uint32, error) {
	raw, cas, _, err := c.store.Get(setKey)
	if err != nil {
		return nil, 0, fmt.Errorf("cache: read %s: %w", setKey, err)
	}
	es, err := decodeSet(raw)
	if err != nil {
		return nil, cas, nil
	}
	return es, cas, nil
}

func find(es []entry, key string) int {
	for i := range es {
		if es[i].key == key {
			return i
		}
	}
	return -1
}

// Get returns a live value for key, without claiming anything.
func (c *Cache) Get(key string, now time.Time) (value []byte, expires time.Time, ok bool, err error) {
	es, _, err := c.read(c.setOf(key))
	if err != nil {
		return nil, time.Time{}, false, err
	}
	if i := find(es, key); i >= 0 && es[i].kind == kindValue && es[i].live(now.UnixNano()) {
		return es[i].value, time.Unix(0, es[i].expires), true, nil
	}
	return nil, time.Time{}, false, nil
}

// State is the result of GetOrClaim.
type State int

// The outcomes of GetOrClaim.
const (
	// Hit: a live value is cached.
	Hit State = iota
	// Claimed: the caller now holds the claim and should fetch, then Put or Release.
	Claimed
	// Pending: another owner holds a live claim; look again later.
	Pending
)

// Lookup is the answer of GetOrClaim.
type Lookup struct {
	State State
	// Value and Expires are set on Hit.
	Value   []byte
	Expires time.Time
	// ClaimExpires is when the claim (ours on Claimed, theirs on Pending) lapses.
	ClaimExpires time.Time
}

// GetOrClaim returns a live value for key, or claims key for owner until
// now+claimFor, or reports another owner's live claim. owner must be non-zero
// and unique to the caller.
func (c *Cache) GetOrClaim(key string, owner uint64, now time.Time, claimFor time.Duration) (Lookup, error) {
	if len(key) > MaxKeyLen {
		return Lookup{}, ErrTooLarge
	}
	sk := c.setOf(key)
	nowNs := now.UnixNano()
	for range maxAttempts {
		es, cas, err := c.read(sk)
		if err != nil {
			return Lookup{}, err
		}
		if i := find(es, key); i >= 0 && es[i].live(nowNs) {
			e := &es[i]
			switch {
			case e.kind == kindValue:
				return Lookup{State: Hit, Value: e.value, Expires: time.Unix(0, e.expires)}, nil
			case e.owner == owner:
				return Lookup{State: Claimed, ClaimExpires: time.Unix(0, e.expires)}, nil
			default:
				return Lookup{State: Pending, ClaimExpires: time.Unix(0, e.expires)}, nil
			}
		}
		claim := entry{kind: kindPending, key: key, expires: now.Add(claimFor).UnixNano(), owner: owner}
		ok, err := c.store.Set(sk, encodeSet(c.place(es, claim, nowNs)), cas)
		if err != nil {
			return Lookup{}, fmt.Errorf("cache: write %s: %w", sk, err)
		}
		if ok {
			return Lookup{State: Claimed, ClaimExpires: time.Unix(0, claim.expires)}, nil
		}
	}
	return Lookup{}, ErrContention
}

// Put stores value for key until expires, replacing any entry for key (a
// claim by anyone included). An expiry at or before now removes the entry.
func (c *Cache) Put(key string, value []byte, expires, now time.Time) error {
	if len(key) > MaxKeyLen || len(value) > MaxValueLen {
		return ErrTooLarge
	}
	nowNs := now.UnixNano()
	e := entry{kind: kindValue, key: key, expires: expires.UnixNano(), value: value}
	return c.update(key, nowNs, func(es []entry) ([]entry, bool) {
		if !expires.After(now) {
			return remove(es, key), true
		}
		return c.place(es, e, nowNs), true
	})
}

// Release drops owner's claim on key, if it still holds it, so that another
// caller can claim the key at once (e.g. after a failed fetch).
func (c *Cache) Release(key string, owner uint64, now time.Time) error {
	return c.update(key, now.UnixNano(), func(es []entry) ([]entry, bool) {
		i := find(es, key)
		if i < 0 || es[i].kind != kindPending || es[i].owner != owner {
			return es, false
		}
		return remove(es, key), true
	})
}

// update applies change to key's set under CAS; change returns false to skip the write.
func (c *Cache) update(key string, nowNs int64, change func([]entry) ([]entry, bool)) error {
	sk := c.setOf(key)
	for range maxAttempts {
		es, cas, err := c.read(sk)
		if err != nil {
			return err
		}
		next, write := change(es)
		if !write {
			return nil
		}
		ok, err := c.store.Set(sk, encodeSet(dropExpired(next, nowNs)), cas)
		if err != nil {
			return fmt.Errorf("cache: write %s: %w", sk, err)
		}
		if ok {
			return nil
		}
	}
	return ErrContention
}

func remove(es []entry, key string) []entry {
	out := es[:0:0]
	for _, e := range es {
		if e.key != key {
			out = append(out, e)
		}
	}
	return out
}

func dropExpired(es []entry, nowNs int64) []entry {
	out := es[:0:0]
	for _, e := range es {
		if e.live(nowNs) {
			out = append(out, e)
		}
	}
	return out
}

// place returns es with e added (replacing any entry with e's key), expired
// entries dropped, and a victim evicted when the set is full.
func (c *Cache) place(es []entry, e entry, nowNs int64) []entry {
	out := dropExpired(remove(es, e.key), nowNs)
	for len(out) >= c.ways {
		v := victim(out)
		out = append(out[:v], out[v+1:]...)
	}
	return append(out, e)
}

// victim picks the entry to evict: the non-claim entry expiring first, or,
// when every entry is a claim, the claim expiring first.
func victim(es []entry) int {
	best := -1
	for i := range es {
		if es[i].kind != kindValue {
			continue
		}
		if best < 0 || es[i].expires < es[best].expires {
			best = i
		}
	}
	if best >= 0 {
		return best
	}
	best = 0
	for i := range es {
		if es[i].expires < es[best].expires {
			best = i
		}
	}
	return best
}
