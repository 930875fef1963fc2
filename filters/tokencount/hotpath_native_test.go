//go:build !wasip1

package tokencount

import (
	"maps"
	"slices"
	"testing"

	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

// BenchmarkNativeHotPath is one metered chat request (shipped
// configuration: strict, a reservation and a settle callout to the counter
// engine's real handler) through the filter's glue on the in-memory host,
// with allocations; "host-only" is the same request through a plugin that
// does nothing, i.e. what the test host and the dispatch cost by themselves.
func BenchmarkNativeHotPath(b *testing.B) {
	ks := newKeystore(b)
	answer := &hosttest.Response{Headers: [][2]string{{"content-type", "application/json"}}, Body: newBackend(b).json}
	headers := [][2]string{{"content-type", "application/json"}}
	for _, k := range slices.Sorted(maps.Keys(identityHeaders)) {
		headers = append(headers, [2]string{k, identityHeaders[k]})
	}
	req := hosttest.Request{Method: "POST", Path: "/v1/chat/completions", Body: []byte(chatJSON + "}"), Headers: headers}
	for _, c := range []struct {
		name   string
		plugin func(uint32) proxywasm.PluginContext
	}{
		{"host-only", func(uint32) proxywasm.PluginContext { return proxywasm.DefaultPluginContext{} }},
		{"strict", New},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := hosttest.New(b, hosttest.Config{Plugin: c.plugin, PluginConfig: []byte(shippedConfig), AllowOnHeadersStopIteration: true,
				Clusters: []string{"keystore"}, Callouts: hosttest.ServeCallouts(ks),
				Upstream: func(*hosttest.Upstream) *hosttest.Response { return answer }})
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
