package cache

import "time"

// Memo is a bounded, expiring map private to one process (one Wasm VM): it
// keeps decoded copies of shared entries so that a hit costs no store read
// and no decoding. An entry never outlives the shared entry it copies, so a
// Memo changes when an answer is seen, never what the answer is.
type Memo[V any] struct {
	max       int
	entries   map[string]memoEntry[V]
	lastSweep time.Time
}

type memoEntry[V any] struct {
	value   V
	expires time.Time
}

// NewMemo returns a Memo holding at most max entries (at least 1).
func NewMemo[V any](max int) *Memo[V] {
	if max < 1 {
		max = 1
	}
	return &Memo[V]{max: max, entries: make(map[string]memoEntry[V])}
}

// Get returns the live value for key.
func (m *Memo[V]) Get(key string, now time.Time) (V, bool) {
	e, ok := m.entries[key]
	if !ok {
		var zero V
		return zero, false
	}
	if !now.Before(e.expires) {
		delete(m.entries, key)
		var zero V
		return zero, false
	}
	return e.value, true
}

// Put stores value until expires. When the Memo is full, expired entries are
// swept (at most once a second, so a flood of new keys stays O(1) per Put),
// then an arbitrary entry (Go's map order) makes room.
func (m *Memo[V]) Put(key string, value V, expires, now time.Time) {
	if !expires.After(now) {
		delete(m.entries, key)
		return
	}
	if _, exists := m.entries[key]; !exists && len(m.entries) >= m.max {
		if now.Sub(m.lastSweep) >= time.Second {
			m.lastSweep = now
			for k, e := range m.entries {
				if !now.Before(e.expires) {
					delete(m.entries, k)
				}
			}
		}
		for k := range m.entries {
			if len(m.entries) < m.max {
				break
			}
			delete(m.entries, k)
		}
	}
	m.entries[key] = memoEntry[V]{value: value, expires: expires}
}

// Delete forgets key.
func (m *Memo[V]) Delete(key string) { delete(m.entries, key) }

// Len is the number of entries held, live or not yet swept.
func (m *Memo[V]) Len() int { return len(m.entries) }
