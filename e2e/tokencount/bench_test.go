package tokencount

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/tokencount/tokentest"
)

// BenchmarkAddedLatency measures what the filter adds to bare Envoy in the
// same run. Each iteration sends one request through bare Envoy, one
// through Envoy with the filter but no quota (parse, rewrite, count; no
// callout) and one metered (plus the reserve callout, and for JSON the
// settle callout before the headers go out); the medians are reported as
// bare-p50-us, unmetered-p50-us, metered-p50-us and added-p50-us (metered
// minus bare).
//
//	json:        a non-streamed chat completion, whole answer;
//	stream-ttft: a streamed one, time to the first event (the backend
//	             sends it at once);
//	stream-all:  the same stream read to its end (31 events, 1 ms apart).
//
//	go test -run '^$' -bench AddedLatency ./e2e/tokencount/
func BenchmarkAddedLatency(b *testing.B) {
	ks := tokentest.StartKeystore(b)
	be := newBackend(b)
	up := envoytest.NewUpstream(b, envoytest.WithHandler(be), envoytest.WithRecordLimit(8))
	bare := startGateway(b, up, ks, false)
	metered := startGateway(b, up, ks, true)
	unmetered := startGatewayConfig(b, up, ks, `{"keystore": {"cluster": "keystore"}}`)
	targets := []struct {
		name string
		url  string
		c    *http.Client
	}{
		{"bare", "http://" + bare.ListenerAddr(), tokentest.NewClient(1)},
		{"unmetered", "http://" + unmetered.ListenerAddr(), tokentest.NewClient(1)},
		{"metered", "http://" + metered.ListenerAddr(), tokentest.NewClient(1)},
	}
	headers := map[string]string{"x-team": "bench", "x-test-first-ms": "0", "x-test-pace-ms": "1"}
	cases := []struct {
		name   string
		stream bool
		first  bool // stop the clock at the first event
	}{
		{"json", false, false},
		{"stream-ttft", true, true},
		{"stream-all", true, false},
	}
	for _, cs := range cases {
		b.Run(cs.name, func(b *testing.B) {
			ctx := context.Background()
			times := make([][]time.Duration, len(targets))
			one := func(i int) time.Duration {
				tg := targets[i]
				req := chatRequest(b, ctx, tg.url, cs.stream, headers)
				start := time.Now()
				resp, err := tg.c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("%s: status %d", tg.name, resp.StatusCode)
				}
				rd := bufio.NewReader(resp.Body)
				if cs.first {
					for {
						line, err := rd.ReadBytes('\n')
						if err != nil {
							b.Fatal(err)
						}
						if bytes.HasPrefix(line, []byte("data: ")) {
							break
						}
					}
					d := time.Since(start)
					_, _ = io.Copy(io.Discard, rd)
					return d
				}
				if _, err := io.Copy(io.Discard, rd); err != nil {
					b.Fatal(err)
				}
				return time.Since(start)
			}
			for i := range targets { // warm connections and code paths
				one(i)
			}
			for b.Loop() {
				for i := range targets {
					times[i] = append(times[i], one(i))
				}
			}
			p50 := make([]float64, len(targets))
			for i := range targets {
				slices.Sort(times[i])
				p50[i] = float64(times[i][len(times[i])/2].Microseconds())
				b.ReportMetric(p50[i], targets[i].name+"-p50-us")
			}
			b.ReportMetric(p50[2]-p50[0], "added-p50-us")
		})
	}
}

// startGatewayConfig starts Envoy with the filter under another configuration.
func startGatewayConfig(t testing.TB, up *envoytest.Upstream, ks *tokentest.Keystore, config string) *envoytest.Envoy {
	t.Helper()
	return envoytest.Start(t, envoytest.Config{
		Filters: []envoytest.WasmFilter{{
			Name:                        "tokencount",
			RootID:                      "tokencount",
			VMID:                        "tokencount",
			WasmPath:                    envoytest.WasmPath(t, "tokencount"),
			Configuration:               config,
			AllowOnHeadersStopIteration: true,
		}},
		Clusters: []envoytest.Cluster{up.Cluster("backend"), {Name: "keystore", Addr: ks.DataAddr()}},
		Routes:   []envoytest.Route{{Prefix: "/", Cluster: "backend", Timeout: 30 * time.Second}},
	})
}
