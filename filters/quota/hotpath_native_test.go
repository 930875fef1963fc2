//go:build !wasip1

package quota

import (
	"maps"
	"slices"
	"testing"

	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

// BenchmarkNativeHotPath is one admitted request (shipped configuration:
// async, the caller's identity) through the filter's glue on the in-memory
// host, with allocations; "host-only" is the same request through a plugin
// that does nothing, i.e. what the test host and the dispatch cost by
// themselves.
func BenchmarkNativeHotPath(b *testing.B) {
	var headers [][2]string
	for _, k := range slices.Sorted(maps.Keys(identityHeaders)) {
		headers = append(headers, [2]string{k, identityHeaders[k]})
	}
	req := hosttest.Request{Method: "POST", Path: "/v1/chat/completions", Headers: headers}
	for _, c := range []struct {
		name   string
		plugin func(uint32) proxywasm.PluginContext
	}{
		{"host-only", func(uint32) proxywasm.PluginContext { return proxywasm.DefaultPluginContext{} }},
		{"async", New},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := hosttest.New(b, hosttest.Config{Plugin: c.plugin, PluginConfig: []byte(shippedConfig), RootID: "quota",
				VMID: "tollgate", Clusters: []string{"keystore"}})
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
