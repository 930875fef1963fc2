package picker

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/mockllm"
)

// modelrouteConfig maps the public "gemma" to the servers' "m" in route
// "pool" (the picker's pool), with a sheddable and a critical product.
const modelrouteConfig = `{
  "models": [{"name": "gemma", "backend_model": "m", "route": "pool"}],
  "products": {"batch": {"priority": "sheddable"}, "gold": {"priority": "critical"}}
}`

// TestAfterModelroute runs modelroute → picker: the picker takes its pool
// from modelroute's routing header and sheds by the priority modelroute
// resolved from the caller's product. No metrics ever arrive (every scrape
// gets 404), so every endpoint counts as saturated.
func TestAfterModelroute(t *testing.T) {
	sims := startSims(t, 2, same(mockllm.SimOptions{TimeScale: 0.1}))
	route := envoytest.WasmFilter{
		Name: "modelroute", RootID: "modelroute", VMID: "modelroute",
		WasmPath:                    envoytest.WasmPath(t, "modelroute"),
		Configuration:               modelrouteConfig,
		AllowOnHeadersStopIteration: true,
	}
	e := startEnvoyChain(t, sims, route, pickerConfig(sims, `,"fallbacks":0,"metrics_path":"/none"`))

	r := chat(t, e, "gemma", "sys", "hello", 2, map[string]string{"x-tollgate-product": "gold"})
	require.NoError(t, r.err)
	assert.Equal(t, 200, r.status, "critical requests are served, fail open: %s", r.body)
	assert.Equal(t, int64(1), total(sims), "the server got the backend model through the picked endpoint")

	for _, hdr := range []map[string]string{
		{"x-tollgate-product": "batch"},
		{"x-tollgate-product": "batch", "x-tollgate-priority": "critical"}, // a client's own priority is dropped
	} {
		r = chat(t, e, "gemma", "sys", "batch job", 2, hdr)
		assert.Equal(t, 429, r.status, "%s", r.body)
		assert.Equal(t, "pool_saturated", errorCode(t, r.body))
		assert.NotEmpty(t, r.header.Get("retry-after"))
	}
	assert.Equal(t, int64(1), total(sims))
	e.RequireNoCrash(t)
}
