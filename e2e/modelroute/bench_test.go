package modelroute

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// discardUpstream reads and drops every request body and answers a small
// chat completion, so the benchmark measures Envoy and the filter rather
// than an upstream that records megabytes.
func discardUpstream(b *testing.B) *httptest.Server {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("content-type", "application/json")
		_, _ = io.WriteString(w, `{"id":"c1","object":"chat.completion","model":"m","choices":[]}`)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkAddedLatency measures the latency the filter adds to bare Envoy
// in the same run: each iteration sends one request through a bare Envoy and
// one through an Envoy with the filter (same upstream, same routes), and the
// medians are reported as bare-p50-us, filter-p50-us and added-p50-us.
// GET-no-body is the fixed cost of a Go Wasm filter that does not pause;
// "route" bodies only pick the cluster; "rewrite" bodies name an alias, so
// the filter also rewrites the body (and buffers the JSON response to map
// its model back).
//
//	go test -run '^$' -bench AddedLatency ./e2e/modelroute/
func BenchmarkAddedLatency(b *testing.B) {
	up := discardUpstream(b)
	addr := up.Listener.Addr().String()
	clusters := []envoytest.Cluster{{Name: "a", Addr: addr}, {Name: "b", Addr: addr}}
	bare := envoytest.Start(b, envoytest.Config{Routes: poolRoutes(), Clusters: clusters, ListenerBufferLimit: 16 << 20})
	filtered := envoytest.Start(b, envoytest.Config{
		Filters:             []envoytest.WasmFilter{modelrouteFilter(b, filterConfig)},
		Routes:              poolRoutes(),
		Clusters:            clusters,
		ListenerBufferLimit: 16 << 20,
	})

	cases := []struct {
		name  string
		model string
		size  int
	}{
		{"GET-no-body", "", 0},
		{"1KB/route", "qwen-2.5-7b", 1 << 10},
		{"1KB/rewrite", "gemma", 1 << 10},
		{"1MB/route", "qwen-2.5-7b", 1 << 20},
		{"1MB/rewrite", "gemma", 1 << 20},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var body []byte
			if c.size > 0 {
				body = paddedBody(b, c.model, c.size)
			}
			send := func(e *envoytest.Envoy) time.Duration {
				method, path := http.MethodPost, "/v1/chat/completions"
				if body == nil {
					method, path = http.MethodGet, "/v1/models"
				}
				req, err := http.NewRequestWithContext(b.Context(), method, e.URL(path), bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				if body != nil {
					req.Header.Set("content-type", "application/json")
				}
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
			for range 20 { // warm connections and both VMs
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
