package quota

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tollgate/tollgate/shared/wasmhost/wasmtest"
)

// shippedConfig is the quota filter of examples/envoy/gateway.yaml.
const shippedConfig = `{"mode": "async", "key_sources": [{"identity": true}], "async": {"sync_period": "1s"},
  "keystore": {"cluster": "keystore", "timeout": "250ms"}, "usage": {"enabled": true}}`

// identityHeaders are what apikey sets for a verified caller.
var identityHeaders = map[string]string{
	"x-tollgate-app": "bench", "x-tollgate-product": "gw-bench", "x-tollgate-key-id": "key_bench",
	"x-tollgate-request-quota": "100000000/1hour/rolling;scope=hotpath",
}

// TestWasmHotPathCrossings counts what one admitted request costs in
// crossings between host and guest with the shipped configuration, the
// fixed per-request cost of the filter in Envoy (docs/benchmarks.md, "Hot
// path"), and holds it to a budget.
func TestWasmHotPathCrossings(t *testing.T) {
	g := start(t, shippedConfig, newKeystore(t), true)
	request := func() {
		if resp := g.do(t, 0, "/v1/chat/completions", identityHeaders); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, resp.Body)
		}
	}
	request()
	c := wasmtest.CountCrossings(t, g.vms[0], 50, request)
	t.Logf("quota, async, identity: %v", c)
	// The budget: 13 host calls and 10 callbacks before the hot-path work (docs/benchmarks.md).
	assert.LessOrEqual(t, c.HostCalls, 11.5, "host calls per request (the half: the Go runtime reads the clock now and then)")
	assert.LessOrEqual(t, c.Callbacks, 10.0, "callbacks per request")
}
