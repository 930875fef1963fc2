package apikey

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tollgate/tollgate/shared/wasmhost/wasmtest"
)

// TestWasmHotPathCrossings counts what one warm request (cached key, the
// shipped configuration's shape) costs in crossings between host and guest,
// the fixed per-request cost of a filter in Envoy (docs/benchmarks.md, "Hot
// path").
func TestWasmHotPathCrossings(t *testing.T) {
	ks := newKeystore()
	key := newKey(t)
	ks.grant(key)
	vm := worker(t, newHost(t, remoteConfig, ks, &upstream{}, true))
	request := func() {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
		req.Header.Set("authorization", "Bearer "+key)
		req.Header.Set("content-type", "application/json")
		resp, err := vm.Do(context.Background(), req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("warm request: %v %+v", err, resp)
		}
	}
	request() // the miss that fills the cache
	c := wasmtest.CountCrossings(t, vm, 50, request)
	t.Logf("apikey, warm key: %v", c)
	// The budget: 8 host calls and 9 callbacks before the hot-path work (docs/benchmarks.md).
	assert.LessOrEqual(t, c.HostCalls, 6.5, "host calls per request (the half: the Go runtime reads the clock now and then)")
	assert.LessOrEqual(t, c.Callbacks, 9.0, "callbacks per request")
}
