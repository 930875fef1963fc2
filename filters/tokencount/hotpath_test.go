package tokencount

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/shared/wasmhost/wasmtest"
)

// shippedConfig is the tokencount filter of examples/envoy/gateway.yaml.
const shippedConfig = `{"keystore": {"cluster": "keystore", "timeout": "500ms"}, "default_max_output_tokens": 1024,
  "strict": {"enabled": true}, "usage": {"enabled": true}}`

// identityHeaders are what apikey sets for a verified caller.
var identityHeaders = map[string]string{
	"x-tollgate-app": "bench", "x-tollgate-product": "gw-bench", "x-tollgate-key-id": "key_bench",
	"x-tollgate-token-quota": "1000000000/1hour/rolling;counted=total;scope=hotpath",
}

// TestWasmHotPathCrossings counts what one metered JSON request costs in
// crossings between host and guest with the shipped configuration (strict:
// a reservation callout and a settle before the answer's headers), the
// fixed per-request cost of the filter in Envoy (docs/benchmarks.md, "Hot
// path"), and holds it to a budget.
func TestWasmHotPathCrossings(t *testing.T) {
	g := start(t, shippedConfig, newKeystore(t), newBackend(t))
	request := func() {
		if resp := g.do(t, chatJSON+"}", identityHeaders); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, resp.Body)
		}
	}
	request()
	c := wasmtest.CountCrossings(t, g.vm, 50, request)
	t.Logf("tokencount, strict, chat JSON: %v", c)
	// The budget: 58 host calls and 33 callbacks before the hot-path work,
	// 40 and 23 before usage records stayed in the VM (docs/benchmarks.md).
	assert.LessOrEqual(t, c.HostCalls, 39.5, "host calls per request (the half: the Go runtime reads the clock now and then)")
	assert.LessOrEqual(t, c.Callbacks, 22.0, "callbacks per request")
}

// TestWasmHotPathCrossingsLeased is the same request with the shipped
// configuration's budget lease (examples/envoy/gateway.yaml): the
// reservation and the settle before the headers are a CAS each in shared
// data instead of two callouts.
func TestWasmHotPathCrossingsLeased(t *testing.T) {
	ks := newKeystore(t)
	g := start(t, shippedConfig[:len(shippedConfig)-1]+`, "lease": {"enabled": true}}`, ks, newBackend(t))
	request := func() {
		if resp := g.do(t, chatJSON+"}", identityHeaders); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, resp.Body)
		}
	}
	for range 2 { // demand, then the tick sizes the lease for 60 requests a tick
		for range 60 {
			request()
		}
		g.vm.Tick()
	}
	reserves := ks.count(meter.PathReserve)
	c := wasmtest.CountCrossings(t, g.vm, 50, request)
	t.Logf("tokencount, strict, leased, chat JSON: %v", c.String())
	assert.Equal(t, reserves, ks.count(meter.PathReserve), "every measured request reserved from the lease")
	// Measured: 41.2 host calls (no callout, but two CAS of shared data and
	// more clock reads) and 19.1–19.5 callbacks (the allocator and the
	// usage queue vary), against 40 and 23 with callouts; 38.2 and 18.1
	// since usage records stay in the VM (no shared-queue enqueue and no
	// proxy_on_queue_ready per request) and the clock is read once per
	// callback.
	assert.Zero(t, c.ByName["env.proxy_http_call"], "no callout per request")
	assert.Zero(t, c.ByName["env.proxy_enqueue_shared_queue"], "no shared-queue write per request")
	assert.LessOrEqual(t, c.HostCalls, 39.0, "host calls per request")
	assert.LessOrEqual(t, c.Callbacks, 19.0, "callbacks per request, fewer than with callouts")
}
