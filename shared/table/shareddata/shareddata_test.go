package shareddata

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tollgate/tollgate/shared/table"
)

var _ table.Store = Store{}

// TestNativeHostErrors: outside a Wasm host every shared-data call fails,
// and the adapter reports the failure instead of a missing key or a lost
// CAS race (the real host is exercised by the filters' wazero and Envoy tests).
func TestNativeHostErrors(t *testing.T) {
	v, cas, found, err := Store{}.Get("k")
	assert.Error(t, err)
	assert.False(t, found)
	assert.Nil(t, v)
	assert.Zero(t, cas)
	ok, err := Store{}.Set("k", []byte("v"), 0)
	assert.Error(t, err)
	assert.False(t, ok)
}
