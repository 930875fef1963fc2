//go:build !wasip1

package modelroute

import (
	"testing"

	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

// BenchmarkNativeHotPath is one routed chat request (shipped configuration)
// through the filter's glue on the in-memory host, with allocations;
// "host-only" is the same request through a plugin that does nothing, i.e.
// what the test host and the dispatch cost by themselves.
func BenchmarkNativeHotPath(b *testing.B) {
	req := hosttest.Request{Method: "POST", Path: "/v1/chat/completions", Body: []byte(benchChat),
		Headers: [][2]string{{"content-type", "application/json"}, {"x-tollgate-app", "bench"}, {"x-tollgate-allowed-models", "*"}}}
	answer := &hosttest.Response{Headers: [][2]string{{"content-type", "application/json"}},
		Body: []byte(`{"model":"llama-3.1-8b","choices":[]}`)}
	for _, c := range []struct {
		name   string
		plugin func(uint32) proxywasm.PluginContext
	}{
		{"host-only", func(uint32) proxywasm.PluginContext { return proxywasm.DefaultPluginContext{} }},
		{"chat", New},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := hosttest.New(b, hosttest.Config{Plugin: c.plugin, PluginConfig: []byte(shippedConfig),
				AllowOnHeadersStopIteration: true, Upstream: func(*hosttest.Upstream) *hosttest.Response { return answer }})
			if res := h.Do(req); res.Status != 200 {
				b.Fatalf("status %d: %s", res.Status, res.Body)
			}
			b.ReportAllocs()
			for b.Loop() {
				if res := h.Do(req); res.Status != 200 {
					b.Fatalf("status %d: %s", res.Status, res.Body)
				}
			}
		})
	}
}
