package conformance

import (
	"context"
	"testing"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// BenchmarkEnvoyCallout compares, in one Envoy and one run, a request the
// plugin passes straight through with one that first makes an HTTP callout to
// a loopback cluster: the difference is what a keystore round trip costs a
// filter. Medians are reported as custom metrics.
func BenchmarkEnvoyCallout(b *testing.B) {
	up := envoytest.NewUpstream(b, envoytest.WithName("echo"), envoytest.WithRecordLimit(16))
	env := envoytest.Start(b, envoytest.Config{
		Filters: []envoytest.WasmFilter{{
			Name: "conformance", RootID: "conformance", VMID: "conformance",
			WasmPath: envoytest.WasmPath(b, "conformance"), Configuration: `{"callout_cluster":"callout","tick_ms":0}`,
		}},
		Clusters: []envoytest.Cluster{up.Cluster("echo"), up.Cluster("callout")},
	})
	client := env.Client()
	ctx := context.Background()
	n := b.N
	if n < 200 {
		n = 200
	}
	b.ResetTimer()
	var plain, callout envoytest.Latency
	var err error
	for i := 0; i < 3; i++ { // interleave to share the machine's noise
		if plain, err = envoytest.MeasureLatency(ctx, client, n, envoytest.GetRequest(env.URL("/headers"))); err != nil {
			b.Fatal(err)
		}
		if callout, err = envoytest.MeasureLatency(ctx, client, n, envoytest.GetRequest(env.URL("/callout"))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(plain.Median.Microseconds()), "plain-p50-µs")
	b.ReportMetric(float64(callout.Median.Microseconds()), "callout-p50-µs")
	b.ReportMetric(float64((callout.Median - plain.Median).Microseconds()), "added-p50-µs")
}
