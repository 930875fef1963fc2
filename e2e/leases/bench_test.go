package leases

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
)

// BenchmarkLeases measures what leases save on the request path: tokencount
// alone (strict, suite module) in two Envoys of the same run, one reserving
// and settling at the keystore per request, one from leases, beside bare
// Envoy, in front of the same upstream and keystore. It reports the p50 latency, req/s and the
// keystore's data-plane calls per request (from its own /metrics):
//
//	go test -run '^$' -bench Leases -benchtime 3000x ./e2e/leases/
func BenchmarkLeases(b *testing.B) {
	up := &upstream{received: map[string]int64{}, served: map[string]int64{}}
	srv := envoytest.NewUpstream(b, envoytest.WithRecordLimit(1), envoytest.WithHandler(up))
	ks := keystoretest.Start(b, keystoretest.Options{Args: []string{"--log-level", "warn"}})
	w := &world{ks: []*keystoretest.Server{ks}}
	suite := envoytest.WasmPath(b, "tollgate")
	start := func(cfg string) *envoytest.Envoy {
		var filters []envoytest.WasmFilter
		if cfg != "" {
			filters = []envoytest.WasmFilter{{Name: "tokencount", RootID: "tokencount", VMID: "tollgate", WasmPath: suite,
				Configuration: cfg, AllowOnHeadersStopIteration: true}}
		}
		return envoytest.Start(b, envoytest.Config{
			Filters:  filters,
			Clusters: []envoytest.Cluster{srv.Cluster("upstream"), {Name: "keystore", Addr: ks.DataAddr()}},
			Routes:   []envoytest.Route{{Prefix: "/", Cluster: "upstream", Timeout: 30 * time.Second}},
		})
	}
	targets := []struct {
		name string
		gw   *envoytest.Envoy
	}{
		{"bare", start("")},
		{"keystore", start(`{"keystore": {"cluster": "keystore", "timeout": "500ms"}, "strict": {"enabled": true}}`)},
		{"leased", start(tokenConfig)},
	}
	who := caller{app: "bench", requests: 1 << 40, token: 1 << 50}
	for _, c := range []int{1, 8} {
		for _, tg := range targets {
			clients := tg.gw.WorkerClients(b, c)
			load(b, clients, tg.gw, who, 200) // warm: connections, VMs, the lease
			b.Run(fmt.Sprintf("c%d/%s", c, tg.name), func(b *testing.B) {
				before := total(w.keystoreCalls(b))
				t0 := time.Now()
				lat := load(b, clients, tg.gw, who, b.N)
				elapsed := time.Since(t0)
				calls := total(w.keystoreCalls(b)) - before
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
				b.ReportMetric(calls/float64(len(lat)), "keystore-calls/req")
			})
		}
	}
}

// load sends n requests over the clients at once and returns each latency.
func load(b *testing.B, clients []*http.Client, gw *envoytest.Envoy, who caller, n int) []time.Duration {
	b.Helper()
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for _, c := range clients {
		wg.Go(func() {
			for range next {
				t0 := time.Now()
				r, err := post(context.Background(), c, gw, who, false)
				d := time.Since(t0)
				if err != nil || r.status != 200 {
					b.Errorf("status %d: %v", r.status, err)
					return
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return lat
}
