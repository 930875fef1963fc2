package quota

import (
	"context"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/internal/redistest"
)

// BenchmarkAddedLatency measures the latency the quota filter adds to bare
// Envoy in the same run, per mode: each iteration sends one request through
// a bare Envoy and one through an Envoy with the filter (same upstream),
// and the medians are reported as bare-p50-us, filter-p50-us and
// added-p50-us. Limits are out of reach, so every request is counted and
// passed. "strict" includes the keystore callout (tollgate serve --redis on
// loopback); "unlimited" matches a rule that limits nothing.
//
//	make build && go test -run '^$' -bench AddedLatency ./e2e/quota/
func BenchmarkAddedLatency(b *testing.B) {
	redis := redistest.Start(b)
	ks := startKeystore(b, b.TempDir(), redis.URL(), "127.0.0.1:0", "127.0.0.1:0")
	up := envoytest.NewUpstream(b, envoytest.WithRecordLimit(1), envoytest.WithHandler(
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("content-type", "application/json")
			_, _ = io.WriteString(w, `{"ok":true}`)
		})))
	bare := envoytest.Start(b, envoytest.Config{Clusters: []envoytest.Cluster{up.Cluster("upstream")}})
	filtered := startGateway(b, up, ks.dataAddr)

	for _, mode := range []string{"unlimited", "local", "spike", "async", "strict"} {
		b.Run(mode, func(b *testing.B) {
			path := "/bench/" + mode
			send := func(e *envoytest.Envoy) time.Duration {
				req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, e.URL(path), nil)
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("x-user", "bench")
				start := time.Now()
				resp, err := e.Client().Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(start)
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d, err %v", resp.StatusCode, err)
				}
				return d
			}
			for range 50 { // warm connections, both workers' VMs and the callout pool
				send(bare)
				send(filtered)
			}
			var tb, tf []time.Duration
			for b.Loop() {
				tb = append(tb, send(bare))
				tf = append(tf, send(filtered))
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
