package cache

import (
	"sync"
)

// mapStore is an in-memory Store with Envoy's shared-data CAS semantics:
// versions start at 1 and grow on every write; cas 0 writes unconditionally;
// a missing key accepts any cas.
type mapStore struct {
	mu     sync.Mutex
	next   uint32
	data   map[string]versioned
	sets   int
	failOn string
}

type versioned struct {
	value []byte
	cas   uint32
}

func newMapStore() *mapStore { return &mapStore{next: 1, data: map[string]versioned{}} }

func (s *mapStore) Get(key string) ([]byte, uint32, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	if !ok {
		return nil, 0, false, nil
	}
	return append([]byte(nil), v.value...), v.cas, true, nil
}

func (s *mapStore) Set(key string, value []byte, cas uint32) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sets++
	if v, ok := s.data[key]; ok && cas != 0 && cas != v.cas {
		return false, nil
	}
	s.data[key] = versioned{value: append([]byte(nil), value...), cas: s.next}
	s.next++
	return true, nil
}

func (s *mapStore) writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sets
}

func (s *mapStore) keys() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.data)
}
