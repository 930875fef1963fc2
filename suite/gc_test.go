//go:build !wasip1

package main

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/httpapi"
	"github.com/tollgate/tollgate/counter/memstore"
	"github.com/tollgate/tollgate/filters/apikey/policy"
	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
	"github.com/tollgate/tollgate/shared/wasmhost"
	"github.com/tollgate/tollgate/shared/wasmhost/wasmtest"
)

// gcProbeModule is the suite built with -tags gcprobe (gcprobe_wasm.go),
// once per test binary and only by the tests that need it.
var gcProbeModule = sync.OnceValues(func() ([]byte, error) { return wasmtest.Build(".", "-tags=gcprobe") })

// shippedFusedConfig is examples/envoy/gateway.yaml's fused configuration
// with apikey's keys local (a 1e9 token quota for the product) instead of
// at the keystore, plus the probe link.
func shippedFusedConfig() string {
	return `{
 "apikey": {"key_sources": [{"header": "x-api-key"}, {"bearer": true}],
            "local": {"keys": [{"hash": "` + policy.HashKey(fusedKey) + `", "app": "bench", "products": ["p"]}],
                      "products": [{"name": "p", "operations": [{"path": "/v1/**"}],
                                    "requestQuota": {"limit": 100000000, "timeUnit": "hour"},
                                    "tokenQuota": {"limit": 1000000000, "timeUnit": "hour"}}]}},
 "quota": {"mode": "async", "key_sources": [{"identity": true}], "async": {"sync_period": "1s"},
           "keystore": {"cluster": "keystore", "timeout": "250ms"}, "usage": {"enabled": true}},
 "modelroute": {"models": [{"name": "gemma-3-1b-it", "aliases": ["gemma"], "backend_model": "/gcs/google/gemma-3-1b-it",
                            "route": "pool-a", "map_response_model": true},
                           {"name": "llama-3.1-8b", "targets": [{"route": "pool-a", "weight": 90}, {"route": "pool-b", "weight": 10}]}]},
 "tokencount": {"keystore": {"cluster": "keystore", "timeout": "500ms"}, "default_max_output_tokens": 1024,
                "strict": {"enabled": true}, "lease": {"enabled": true, "renew": "250ms", "max": 10000000},
                "usage": {"enabled": true}},
 "gcprobe": {}}`
}

const (
	gcChatBody = `{"model":"llama-3.1-8b","messages":[{"role":"system","content":"You are a concise assistant for an online bookshop. Answer in at most three sentences."},{"role":"user","content":"Do you ship to Canada, and how long does delivery usually take?"}],"max_tokens":256}`
	gcAnswer   = `{"id":"chatcmpl-1","object":"chat.completion","created":1743419001,"model":"llama-3.1-8b","choices":[{"index":0,"message":{"role":"assistant","content":"Yes, we ship to Canada. Standard delivery takes 5-8 business days."},"finish_reason":"stop"}],"usage":{"prompt_tokens":43,"completion_tokens":28,"total_tokens":71}}`
)

// gcStats are the probe's runtime/metrics samples, by name.
type gcStats map[string]uint64

// gcVM is one worker VM of the probe build with the shipped fused chain in
// front of the real counter engine and a fixed chat answer.
type gcVM struct {
	vm *wasmhost.VM
	n  int
}

func startGCVM(tb testing.TB, env []string) *gcVM {
	tb.Helper()
	mod, err := gcProbeModule()
	require.NoError(tb, err)
	st, err := memstore.Open(memstore.Options{})
	require.NoError(tb, err)
	eng := counter.New(st)
	tb.Cleanup(func() { _ = eng.Close() })
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		_, _ = w.Write([]byte(gcAnswer))
	})
	h := wasmtest.NewHost(tb, wasmhost.Config{Module: mod, PluginName: "tollgate", RootID: "tollgate-gcprobe", VMID: "tollgate",
		PluginConfig: []byte(shippedFusedConfig()), AllowOnHeadersStopIteration: true, Env: env,
		Clusters: map[string]http.Handler{"keystore": httpapi.New(eng, httpapi.Options{})}, Upstream: up, ManualTicks: true})
	g := &gcVM{vm: wasmtest.NewVM(tb, h)}
	for range 3 { // demand, then ticks size the lease, as in Envoy
		for range 50 {
			g.do(tb, false)
		}
	}
	return g
}

// do sends one chat request; every 50th is followed by a tick, as Envoy
// ticks every 250 ms at a few hundred requests per second per worker.
func (g *gcVM) do(tb testing.TB, probe bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://gateway.local/v1/chat/completions", strings.NewReader(gcChatBody))
	require.NoError(tb, err)
	req.Header.Set("content-type", "application/json")
	req.Header.Set("x-api-key", fusedKey)
	if probe {
		req.Header.Set("x-gcprobe", "1")
	}
	resp, err := g.vm.Do(ctx, req)
	require.NoError(tb, err)
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("status %d: %s", resp.StatusCode, resp.Body)
	}
	if g.n++; g.n%50 == 0 {
		g.vm.Tick()
	}
}

// stats sends a probe request and returns what the runtime reported.
func (g *gcVM) stats(tb testing.TB) gcStats {
	tb.Helper()
	before := len(g.vm.LogMessages(wasmhost.LogInfo))
	g.do(tb, true)
	for _, m := range g.vm.LogMessages(wasmhost.LogInfo)[before:] {
		rest, ok := strings.CutPrefix(m, "gcprobe ")
		if !ok {
			continue
		}
		s := gcStats{}
		for _, f := range strings.Fields(rest) {
			name, v, _ := strings.Cut(f, "=")
			n, err := strconv.ParseUint(v, 10, 64)
			require.NoError(tb, err, f)
			s[name] = n
		}
		return s
	}
	tb.Fatal("the probe logged nothing")
	return nil
}

// writeAllocs asks the probe for the VM's allocation profile (every
// allocation since start-up: GCPROBE_ALLOCS=1) and writes it to path, for
// go tool pprof -sample_index=alloc_objects.
func (g *gcVM) writeAllocs(tb testing.TB, path string) {
	tb.Helper()
	before := len(g.vm.LogMessages(wasmhost.LogInfo))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://gateway.local/v1/models", nil)
	require.NoError(tb, err)
	req.Header.Set("x-api-key", fusedKey)
	req.Header.Set("x-gcprobe", "allocs")
	_, err = g.vm.Do(ctx, req)
	require.NoError(tb, err)
	for _, m := range g.vm.LogMessages(wasmhost.LogInfo)[before:] {
		if enc, ok := strings.CutPrefix(m, "gcprobe-allocs "); ok {
			raw, err := base64.StdEncoding.DecodeString(enc)
			require.NoError(tb, err)
			require.NoError(tb, os.WriteFile(path, raw, 0o644))
			return
		}
	}
	tb.Fatal("the probe logged no profile")
}

// BenchmarkWasmFusedGC runs the shipped fused chain (leased, async quota)
// in a wazero worker VM and reports, per request, what the Go runtime
// inside the VM allocated and how often it collected, read from
// runtime/metrics by a probe build; the variants set the collector's pacing
// through the VM's environment (vm_config.environment_variables in Envoy).
//
//	go test ./suite/ -run '^$' -bench WasmFusedGC -benchtime 3000x
//
// TOLLGATE_BENCH_ALLOCPROFILE=<file> also writes the VM's allocation
// profile of the "default" run (every allocation, in the Wasm build) there.
func BenchmarkWasmFusedGC(b *testing.B) {
	for _, c := range []struct {
		name string
		env  []string
	}{
		{"default", nil},
		{"gogc200", []string{"GOGC=200"}},
		{"gogc400", []string{"GOGC=400"}},
		{"gogcoff-limit12m", []string{"GOGC=off", "GOMEMLIMIT=12MiB"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			profile := os.Getenv("TOLLGATE_BENCH_ALLOCPROFILE")
			if c.env == nil && profile != "" {
				c.env = []string{"GCPROBE_ALLOCS=1"}
			}
			g := startGCVM(b, c.env)
			s0 := g.stats(b)
			n := 0
			for b.Loop() {
				g.do(b, false)
				n++
			}
			s1 := g.stats(b)
			if c.name == "default" && profile != "" {
				g.writeAllocs(b, profile)
			}
			n++ // the probe request itself
			per := func(name string) float64 { return float64(s1[name]-s0[name]) / float64(n) }
			b.ReportMetric(per("/gc/heap/allocs:bytes"), "vm-B/req")
			b.ReportMetric(per("/gc/heap/allocs:objects"), "vm-allocs/req")
			b.ReportMetric(1000*per("/gc/cycles/total:gc-cycles"), "gc/1k-req")
			b.ReportMetric(float64(s1["/gc/heap/live:bytes"])/(1<<20), "live-MiB")
			b.ReportMetric(float64(s1["/gc/heap/goal:bytes"])/(1<<20), "goal-MiB")
			b.ReportMetric(float64(s1["/memory/classes/total:bytes"])/(1<<20), "runtime-MiB")
		})
	}
}

// BenchmarkFusedNativeHotPath is one chat request through the shipped fused
// chain (shippedFusedConfig without the probe: leased tokencount, async
// quota, local keys) on the in-memory host, with allocations: the same
// code the VM runs, profiled natively (-memprofile). "host-only" is the same
// request through a plugin that does nothing, i.e. what the test host and
// the dispatch cost by themselves. A tick every 50 requests keeps the lease
// topped up and quota synced, as Envoy's timer does.
func BenchmarkFusedNativeHotPath(b *testing.B) {
	st, err := memstore.Open(memstore.Options{})
	require.NoError(b, err)
	eng := counter.New(st)
	b.Cleanup(func() { _ = eng.Close() })
	cfg := strings.Replace(shippedFusedConfig(), `,
 "gcprobe": {}}`, "}", 1)
	answer := &hosttest.Response{Headers: [][2]string{{"content-type", "application/json"}}, Body: []byte(gcAnswer)}
	req := hosttest.Request{Method: "POST", Path: "/v1/chat/completions", Body: []byte(gcChatBody),
		Headers: [][2]string{{"content-type", "application/json"}, {"x-api-key", fusedKey}}}
	for _, c := range []struct {
		name   string
		plugin func(uint32) proxywasm.PluginContext
		config string
	}{
		{"host-only", func(uint32) proxywasm.PluginContext { return proxywasm.DefaultPluginContext{} }, ""},
		{"fused", proxywasm.NewChain(FusedLinks()), cfg},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := hosttest.New(b, hosttest.Config{Plugin: c.plugin, RootID: FusedRootID, VMID: "tollgate", PluginConfig: []byte(c.config),
				AllowOnHeadersStopIteration: true, Clusters: []string{"keystore"},
				Callouts: hosttest.ServeCallouts(httpapi.New(eng, httpapi.Options{})),
				Upstream: func(*hosttest.Upstream) *hosttest.Response { return answer }})
			n := 0
			do := func() {
				if res := h.Do(req); res.Status != 200 {
					b.Fatalf("status %d: %s", res.Status, res.Body)
				}
				if n++; n%50 == 0 {
					h.Tick()
				}
			}
			for range 150 {
				do()
			}
			b.ReportAllocs()
			for b.Loop() {
				do()
			}
		})
	}
}

// TestWasmFusedAllocationBudget holds what one request of the shipped fused
// chain allocates inside the Go runtime of a worker VM to a budget: every
// allocation is work for the collector, which runs stop-the-world inside
// whatever callback allocates (docs/benchmarks.md, "The Go collector
// inside the VM").
func TestWasmFusedAllocationBudget(t *testing.T) {
	g := startGCVM(t, nil)
	s0 := g.stats(t)
	const n = 300
	for range n {
		g.do(t, false)
	}
	s1 := g.stats(t)
	per := func(name string) float64 { return float64(s1[name]-s0[name]) / (n + 1) }
	allocs, bytes := per("/gc/heap/allocs:objects"), per("/gc/heap/allocs:bytes")
	t.Logf("fused chain, shipped config, per request in the VM: %.1f allocations, %.0f bytes", allocs, bytes)
	// Measured 2026-12-07: 144 allocations and 21.4 KB before the
	// allocation work of issue #11, 93-95 and 18.5 KB after; the budget
	// leaves room for run-to-run variation (ticks, clocks), not for a
	// per-request regression.
	assert.LessOrEqual(t, allocs, 105.0, "allocations per request")
	assert.LessOrEqual(t, bytes, 20000.0, "bytes allocated per request")
}
