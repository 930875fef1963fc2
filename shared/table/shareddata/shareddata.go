// Package shareddata adapts proxy-wasm shared data to table.Store, so that
// every filter keeping a table in shared data uses the same adapter.
package shareddata

import (
	"errors"

	"github.com/tollgate/tollgate/shared/proxywasm"
)

// Store is table.Store over this VM's proxy-wasm shared data.
type Store struct{}

// Get returns a shared value and its CAS version; found is false when the key does not exist.
func (Store) Get(key string) ([]byte, uint32, bool, error) {
	v, cas, err := proxywasm.GetSharedData(key)
	if errors.Is(err, proxywasm.ErrNotFound) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	return v, cas, true, nil
}

// Set writes a shared value if its version still equals cas (0: unconditionally);
// ok is false on a version mismatch.
func (Store) Set(key string, value []byte, cas uint32) (bool, error) {
	err := proxywasm.SetSharedData(key, value, cas)
	if errors.Is(err, proxywasm.ErrCASMismatch) {
		return false, nil
	}
	return err == nil, err
}
