package conformance

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/shared/proxywasm/conformance/plugin"
)

// envoyGateway runs the conformance plugin in real Envoy with two workers.
type envoyGateway struct {
	env     *envoytest.Envoy
	clients []*http.Client
}

func startEnvoy(t *testing.T) *envoyGateway { return startEnvoyAs(t, "conformance", pluginConfig) }

// startEnvoyAs loads the conformance module under a root_id with a configuration.
func startEnvoyAs(t *testing.T, rootID, config string) *envoyGateway {
	t.Helper()
	up := envoytest.NewUpstream(t, envoytest.WithName("echo"))
	env := envoytest.Start(t, envoytest.Config{
		Filters: []envoytest.WasmFilter{{
			Name: "conformance", RootID: rootID, VMID: "conformance",
			WasmPath:                    envoytest.WasmPath(t, "conformance"),
			Configuration:               config,
			AllowOnHeadersStopIteration: true,
		}},
		Routes: []envoytest.Route{
			{Prefix: "/", Headers: []envoytest.HeaderMatch{{Name: "x-conf-target", Exact: "b"}}, Cluster: "echo",
				Extra: map[string]any{"request_headers_to_add": []any{map[string]any{"header": map[string]any{"key": "x-routed-to", "value": "b"}}}}},
			{Prefix: "/", Cluster: "echo"},
		},
		Clusters: []envoytest.Cluster{up.Cluster("echo"), up.Cluster("callout")},
	})
	return &envoyGateway{env: env, clients: env.WorkerClients(t, 2)}
}

func (g *envoyGateway) Do(t *testing.T, w int, r request) response {
	t.Helper()
	resp, err := g.do(w, r)
	require.NoError(t, err)
	return resp
}

// do is Do without a *testing.T, for load goroutines.
func (g *envoyGateway) do(w int, r request) (response, error) {
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	req, err := http.NewRequest(r.Method, g.env.URL(r.Path), body)
	if err != nil {
		return response{}, err
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	resp, err := g.clients[w].Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

func (g *envoyGateway) Metric(t *testing.T, name string) (float64, bool) {
	t.Helper()
	return g.env.PromMetric(name, nil)
}

func (g *envoyGateway) Logs(t *testing.T) string {
	t.Helper()
	g.env.SyncLog(t)
	return g.env.Log()
}

func (g *envoyGateway) Routes() bool { return true }

func TestConformanceEnvoy(t *testing.T) {
	g := startEnvoy(t)
	runCases(t, g)
	g.env.RequireNoCrash(t)
}

// TestConformanceEnvoyChained runs the table on the conformance plugin as
// the only link of a chain (the fused filter's machinery): a chain must be
// invisible to its filters. The plugin is not in build/tollgate.wasm on
// purpose: it panics, echoes and calls out on request, which no production
// module may offer.
func TestConformanceEnvoyChained(t *testing.T) {
	g := startEnvoyAs(t, plugin.ChainRootID, plugin.ChainConfig(pluginConfig))
	runCases(t, g)
	g.env.RequireNoCrash(t)
}

// TestSoakEnvoy sends 20,000 requests through real Envoy with the conformance
// plugin and requires zero VM crashes and zero unexpected 5xx.
func TestSoakEnvoy(t *testing.T) {
	if testing.Short() {
		t.Skip("soak runs in the full suite")
	}
	g := startEnvoy(t)
	memBefore := [2]map[string]any{}
	for w := 0; w < 2; w++ {
		memBefore[w] = local(t, g.Do(t, w, get("/memstats")), 200)
	}
	const total = 20000
	paths := []request{get("/headers"), {Method: "POST", Path: "/body/rewrite", Body: "soak body"}, get("/shared/set?key=soak&value=1"), get("/callout"), get("/panic"), get("/local")}
	deadline := time.Now().Add(3 * time.Minute)
	done := make(chan [3]int, 2)
	for w := 0; w < 2; w++ {
		go func(w int) {
			var fiveXX, deliberate, failed int
			for i := w; i < total; i += 2 {
				if time.Now().After(deadline) {
					break
				}
				r := paths[i%len(paths)]
				resp, err := g.do(w, r)
				if err != nil {
					failed++
					continue
				}
				if resp.Status >= 500 {
					if r.Path == "/panic" && resp.Status == 500 {
						deliberate++
					} else {
						fiveXX++
					}
				}
			}
			done <- [3]int{fiveXX, deliberate, failed}
		}(w)
	}
	var unexpected, deliberate, failed int
	for w := 0; w < 2; w++ {
		r := <-done
		unexpected += r[0]
		deliberate += r[1]
		failed += r[2]
	}
	require.Zero(t, failed, "requests that got no response")
	require.Zero(t, unexpected, "unexpected 5xx responses")
	require.Equal(t, total/len(paths), deliberate, "every /panic must answer 500, no more, no less")
	for w := 0; w < 2; w++ {
		after := local(t, g.Do(t, w, get("/memstats")), 200)
		t.Logf("worker %d VM %v: heap_alloc %v -> %v bytes, sys %v -> %v bytes, gc cycles %v",
			w, after["vm"], memBefore[w]["heap_alloc"], after["heap_alloc"], memBefore[w]["sys"], after["sys"], after["num_gc"])
	}
	rss, err := g.env.RSS()
	if err == nil {
		t.Logf("envoy RSS after soak: %d KiB", rss/1024)
	}
	g.env.RequireNoCrash(t)
}
