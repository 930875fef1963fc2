package apikey

import (
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// BenchmarkAddedLatency measures the latency the apikey filter adds to the
// same Envoy without it, in one run against one upstream and one keystore:
// every iteration sends one request through a bare Envoy and one through the
// filter, and the medians are reported as bare-p50-us, filter-p50-us and
// added-p50-us. Cases:
//
//   - warm: the key's answer is cached (memo hit: no callout, no shared-data read);
//   - miss: positive caching is off ("ttl": "0s"), so every request makes a
//     keystore callout (POST /v1/verify on loopback) before going upstream;
//   - wasm-floor: the same module in strip mode, i.e. the cost of running a
//     Go proxy-wasm filter at all (callbacks plus one header snapshot).
//
// Run it with:
//
//	go test -run '^$' -bench AddedLatency ./e2e/apikey/
func BenchmarkAddedLatency(b *testing.B) {
	ks := provision(b)
	key := ks.createKey(b, "demo")
	up := envoytest.NewUpstream(b, envoytest.WithRecordLimit(1))
	bare := envoytest.Start(b, envoytest.Config{
		Clusters: []envoytest.Cluster{up.Cluster("upstream")},
		Routes:   []envoytest.Route{{Prefix: "/", Cluster: "upstream"}},
	})
	gw := startGateway(b, up, []envoytest.Cluster{{Name: "keystore", Addr: ks.dataAddr}},
		`{"keystore": {"cluster": "keystore"}}`,
		listener{name: "miss", configs: []string{`{"keystore": {"cluster": "keystore"}, "cache": {"ttl": "0s"}}`}},
		listener{name: "noop", configs: []string{`{"mode": "strip"}`}},
	)
	missClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
	b.Cleanup(missClient.CloseIdleConnections)

	cases := []struct {
		name   string
		client *http.Client
		url    string
	}{
		{"warm", gw.Client(), gw.url("main", "/v1/models")},
		{"miss", missClient, gw.url("miss", "/v1/models")},
		{"wasm-floor", missClient, gw.url("noop", "/v1/models")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			send := func(client *http.Client, url string, withKey bool) time.Duration {
				req, err := http.NewRequestWithContext(b.Context(), http.MethodGet, url, nil)
				if err != nil {
					b.Fatal(err)
				}
				if withKey {
					req.Header.Set("x-api-key", key.Key)
				}
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(start)
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: status %d, err %v", url, resp.StatusCode, err)
				}
				return d
			}
			for range 50 { // warm connections, both VMs and the cache
				send(bare.Client(), bare.URL("/v1/models"), false)
				send(c.client, c.url, true)
			}
			var tb, tf []time.Duration
			for b.Loop() {
				tb = append(tb, send(bare.Client(), bare.URL("/v1/models"), false))
				tf = append(tf, send(c.client, c.url, true))
			}
			mb, mf := median(tb), median(tf)
			b.ReportMetric(float64(mb.Microseconds()), "bare-p50-us")
			b.ReportMetric(float64(mf.Microseconds()), "filter-p50-us")
			b.ReportMetric(float64((mf - mb).Microseconds()), "added-p50-us")
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
