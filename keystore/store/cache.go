package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
)

// maxCachedRecords bounds the decode cache; when full it starts over.
const maxCachedRecords = 8192

type cacheKey struct{ bucket, id string }

type cacheEntry struct {
	raw []byte
	val any
}

// decodeCache remembers decoded records by their stored bytes. A hit needs
// the stored bytes to be identical, so it can never serve a stale record; it
// only saves the JSON decoding on the verify hot path. Cached values are
// shared and must be treated as read-only.
type decodeCache struct {
	mu sync.RWMutex
	m  map[cacheKey]cacheEntry
}

func newDecodeCache() *decodeCache { return &decodeCache{m: map[cacheKey]cacheEntry{}} }

// getCached is get with the decode cache in front.
func getCached[T any](c *decodeCache, tx Tx, bucket, id string) (T, bool, error) {
	var zero T
	raw, ok, err := tx.Get(bucket, id)
	if err != nil || !ok {
		return zero, ok, err
	}
	k := cacheKey{bucket, id}
	c.mu.RLock()
	e, hit := c.m[k]
	c.mu.RUnlock()
	if hit && bytes.Equal(e.raw, raw) {
		if v, ok := e.val.(T); ok {
			return v, true, nil
		}
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return zero, false, fmt.Errorf("decode %s/%s: %w", bucket, id, err)
	}
	c.mu.Lock()
	if len(c.m) >= maxCachedRecords {
		clear(c.m)
	}
	c.m[k] = cacheEntry{raw: bytes.Clone(raw), val: v}
	c.mu.Unlock()
	return v, true, nil
}
