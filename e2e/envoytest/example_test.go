package envoytest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// A filter's end-to-end test: a recording upstream, Envoy with the filter
// built by `make build`, two clients on two workers, and the checks a filter
// test usually makes. Compiled, not run: it needs build/apikey.wasm, and the
// configuration, status and metric names are illustrative.
func Example() {
	var t *testing.T // the test's *testing.T

	up := envoytest.NewUpstream(t, envoytest.WithName("llm"))
	env := envoytest.Start(t, envoytest.Config{
		Filters: []envoytest.WasmFilter{{
			Name:          "apikey",
			RootID:        "apikey",
			VMID:          "tollgate",
			WasmPath:      envoytest.WasmPath(t, "apikey"),
			Configuration: `{}`, // the plugin's JSON configuration, handed over raw
		}},
		Clusters:  []envoytest.Cluster{up.Cluster("llm")},
		StatsTags: []envoytest.StatsTag{{Name: "outcome", Regex: `^tollgate_apikey\.(outcome\.([^.]+)\.)`}},
	})

	clients := env.WorkerClients(t, 2) // one per Envoy worker, hence per Wasm VM
	for _, c := range clients {
		resp, err := c.Get(env.URL("/v1/models"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("status %d", resp.StatusCode)
		}
	}
	if up.Count() != 0 {
		t.Error("a request without a key reached the upstream")
	}
	env.WaitPromMetric(t, "tollgate_apikey_total", map[string]string{"outcome": "denied"}, 5*time.Second,
		func(v float64) bool { return v == 2 })
	env.RequireNoCrash(t)
}
