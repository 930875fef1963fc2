// Package cache is a bounded, expiring cache kept in a shared/table — so in
// proxy-wasm shared data, which every Envoy worker of one vm_id sees — with
// per-key claims so that concurrent misses for one key are coalesced into a
// single fetch.
//
// # Entries
//
// Each cache key is one table record whose value is either a cached value
// or a claim naming its owner. The table gives the layout, CAS updates,
// expiry and eviction; the cache protects claims, so a write to a full set
// drops, in order: entries already expired, then the value with the
// earliest expiry, then — only when the set holds nothing but claims — the
// claim that expires first. Lookups never write.
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
	"time"

	"github.com/tollgate/tollgate/shared/table"
)

// Options size the cache.
type Options struct {
	// Namespace prefixes every store key, e.g. "tollgate.apikey.v1".
	Namespace string
	// MaxEntries bounds the number of entries (claims included), 1 to 1<<20.
	MaxEntries int
	// Ways is the number of entries per set (default 4).
	Ways int
}

// Limits of the cache; larger keys and values are refused with table.ErrTooLarge.
const (
	// MaxKeyLen bounds a cache key.
	MaxKeyLen = 1024
	// MaxValueLen bounds a cached value.
	MaxValueLen = 64 << 10
)

// Cache is a handle on one shared cache; it holds no entries itself, so any
// number of handles (one per Envoy worker) share the same store.
type Cache struct{ t *table.Table }

// New checks the options and returns a handle; call Init once per process
// (per Wasm VM) before serving.
func New(store table.Store, opts Options) (*Cache, error) {
	t, err := table.New(store, table.Options{
		Namespace:   opts.Namespace,
		MaxEntries:  opts.MaxEntries,
		Ways:        opts.Ways,
		MaxValueLen: 1 + MaxValueLen,
		Protect:     isClaim,
	})
	if err != nil {
		return nil, err
	}
	return &Cache{t: t}, nil
}

// Sets is the number of sets (store keys) the cache uses.
func (c *Cache) Sets() int { return c.t.Sets() }

// Capacity is the number of entries the cache can hold.
func (c *Cache) Capacity() int { return c.t.Capacity() }

// Init creates every set that does not exist yet, so that two workers never
// both claim a key on first use; see table.Table.Init.
func (c *Cache) Init() error { return c.t.Init() }

// A record's value is kindValue followed by the cached bytes, or kindClaim
// followed by the owner (8 bytes, little-endian).
const (
	kindValue byte = 'V'
	kindClaim byte = 'P'
)

func isClaim(v []byte) bool { return len(v) == 9 && v[0] == kindClaim }

// Get returns a live value for key, without claiming anything.
func (c *Cache) Get(key string, now time.Time) (value []byte, expires time.Time, ok bool, err error) {
	v, exp, ok, err := c.t.Get(key, now.UnixNano())
	if err != nil || !ok || len(v) == 0 || v[0] != kindValue {
		return nil, time.Time{}, false, err
	}
	return v[1:], time.Unix(0, exp), true, nil
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
		return Lookup{}, table.ErrTooLarge
	}
	var l Lookup
	_, err := c.t.Update(key, now.UnixNano(), func(old []byte, oldExpires int64) ([]byte, int64, bool) {
		switch {
		case len(old) > 0 && old[0] == kindValue:
			l = Lookup{State: Hit, Value: old[1:], Expires: time.Unix(0, oldExpires)}
			return nil, 0, false
		case isClaim(old) && binary.LittleEndian.Uint64(old[1:]) == owner:
			l = Lookup{State: Claimed, ClaimExpires: time.Unix(0, oldExpires)}
			return nil, 0, false
		case isClaim(old):
			l = Lookup{State: Pending, ClaimExpires: time.Unix(0, oldExpires)}
			return nil, 0, false
		}
		exp := now.Add(claimFor)
		l = Lookup{State: Claimed, ClaimExpires: exp}
		return binary.LittleEndian.AppendUint64([]byte{kindClaim}, owner), exp.UnixNano(), true
	})
	if err != nil {
		return Lookup{}, err
	}
	return l, nil
}

// Put stores value for key until expires, replacing any entry for key (a
// claim by anyone included). An expiry at or before now removes the entry.
func (c *Cache) Put(key string, value []byte, expires, now time.Time) error {
	if len(key) > MaxKeyLen || len(value) > MaxValueLen {
		return table.ErrTooLarge
	}
	nowNs, v := now.UnixNano(), append([]byte{kindValue}, value...)
	_, err := c.t.Update(key, nowNs, func([]byte, int64) ([]byte, int64, bool) {
		if !expires.After(now) {
			return nil, nowNs, true
		}
		return v, expires.UnixNano(), true
	})
	return err
}

// Release drops owner's claim on key, if it still holds it, so that another
// caller can claim the key at once (e.g. after a failed fetch).
func (c *Cache) Release(key string, owner uint64, now time.Time) error {
	nowNs := now.UnixNano()
	_, err := c.t.Update(key, nowNs, func(old []byte, _ int64) ([]byte, int64, bool) {
		if !isClaim(old) || binary.LittleEndian.Uint64(old[1:]) != owner {
			return nil, 0, false
		}
		return nil, nowNs, true
	})
	return err
}
