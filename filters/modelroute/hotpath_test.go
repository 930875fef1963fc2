package modelroute

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tollgate/tollgate/shared/wasmhost/wasmtest"
)

// shippedConfig is the modelroute filter of examples/envoy/gateway.yaml.
const shippedConfig = `{"models": [
  {"name": "gemma-3-1b-it", "aliases": ["gemma"], "backend_model": "/gcs/google/gemma-3-1b-it", "route": "pool-a",
   "map_response_model": true},
  {"name": "llama-3.1-8b", "targets": [{"route": "pool-a", "weight": 90}, {"route": "pool-b", "weight": 10}]},
  {"name": "text-embedding-3-small", "route": "pool-a"}]}`

// benchChat is the chat request of the e2e benchmarks (a model the shipped
// configuration routes without rewriting the body).
const benchChat = `{"model":"llama-3.1-8b","messages":[{"role":"system","content":"You are terse."},` +
	`{"role":"user","content":"Summarise the gateway in one line."}],"max_tokens":16}`

// TestWasmHotPathCrossings counts what one routed request costs in
// crossings between host and guest with the shipped configuration, the
// fixed per-request cost of the filter in Envoy (docs/benchmarks.md, "Hot
// path"), and holds it to a budget.
func TestWasmHotPathCrossings(t *testing.T) {
	_, vm := startVM(t, shippedConfig, &recorder{})
	request := func() {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(benchChat))
		req.Header.Set("content-type", "application/json")
		req.Header.Set("x-tollgate-app", "bench")
		req.Header.Set("x-tollgate-allowed-models", "*")
		if resp := send(t, vm, req); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, resp.Body)
		}
	}
	request()
	c := wasmtest.CountCrossings(t, vm, 50, request)
	t.Logf("modelroute, chat JSON: %v", c)
	// The budget: 14 host calls and 16 callbacks before the hot-path work (docs/benchmarks.md).
	assert.LessOrEqual(t, c.HostCalls, 9.5, "host calls per request (the half: the Go runtime reads the clock now and then)")
	assert.LessOrEqual(t, c.Callbacks, 13.0, "callbacks per request")
}
