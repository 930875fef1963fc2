//go:build !wasip1

package apikey

import (
	"testing"

	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

// BenchmarkNativeHotPath is one warm request (cached key) through the
// filter's glue on the in-memory host, with allocations; "host-only" is the
// same request through a plugin that does nothing, i.e. what the test host
// and the dispatch cost by themselves.
func BenchmarkNativeHotPath(b *testing.B) {
	ks := newKeystore()
	key := newKey(b)
	ks.grant(key)
	req := hosttest.Request{Method: "POST", Path: "/v1/chat/completions",
		Headers: [][2]string{{"authorization", "Bearer " + key}, {"content-type", "application/json"}}}
	for _, c := range []struct {
		name   string
		plugin func(uint32) proxywasm.PluginContext
	}{
		{"host-only", func(uint32) proxywasm.PluginContext { return proxywasm.DefaultPluginContext{} }},
		{"warm", New},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := hosttest.New(b, hosttest.Config{Plugin: c.plugin, PluginConfig: []byte(remoteConfig), RootID: "apikey",
				VMID: "apikey", Clusters: []string{"keystore"}, Callouts: hosttest.ServeCallouts(ks)})
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
