package table

import "sync"

// MemStore is an in-process Store with the CAS semantics of Envoy's shared
// data: versions start at 1 and grow with every write, cas 0 writes
// unconditionally, and a missing key accepts any cas. It stands in for
// shared data in native tests of code built on the table.
type MemStore struct {
	mu     sync.Mutex
	next   uint32
	data   map[string]memValue
	writes int
}

type memValue struct {
	value []byte
	cas   uint32
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{next: 1, data: map[string]memValue{}} }

// Get returns a copy of the value and its version.
func (s *MemStore) Get(key string) ([]byte, uint32, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	if !ok {
		return nil, 0, false, nil
	}
	return append([]byte(nil), v.value...), v.cas, true, nil
}

// Set stores a copy of value when cas matches (or is 0, or the key is new).
func (s *MemStore) Set(key string, value []byte, cas uint32) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if v, ok := s.data[key]; ok && cas != 0 && cas != v.cas {
		return false, nil
	}
	s.data[key] = memValue{value: append([]byte(nil), value...), cas: s.next}
	s.next++
	return true, nil
}

// Writes counts Set calls, successful or not.
func (s *MemStore) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// Keys is the number of keys stored.
func (s *MemStore) Keys() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.data)
}
