// Package hotpath counts what one request costs the suite's fused filter
// (root_id "tollgate") in crossings between Envoy and the Go runtime, with
// the configuration shipped in examples/envoy/gateway.yaml, and holds those
// counts to a budget (docs/benchmarks.md, "Issue #11 before and after").
package hotpath

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/httpapi"
	"github.com/tollgate/tollgate/counter/memstore"
	"github.com/tollgate/tollgate/filters/apikey/policy"
	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/shared/wasmhost"
	"github.com/tollgate/tollgate/shared/wasmhost/wasmtest"
)

// suiteModule is build/tollgate.wasm, built by TestMain from ../ so the
// counts are never those of a stale artefact.
var suiteModule []byte

func TestMain(m *testing.M) {
	os.Exit(wasmtest.Main(m, "..", &suiteModule, "-ldflags=-s -w"))
}

// apiKey is a well-formed key (prefix and checksum), so apikey asks the
// keystore about it.
var apiKey = func() string {
	k, err := model.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	return k
}()

// shippedConfig is the fused filter's configuration in
// examples/envoy/gateway.yaml, read from the file itself.
func shippedConfig(t testing.TB) []byte {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "envoy", "gateway.yaml"))
	require.NoError(t, err)
	var doc any
	require.NoError(t, yaml.Unmarshal(src, &doc))
	var found []byte
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["root_id"] == "tollgate" {
				if c, ok := x["configuration"].(map[string]any); ok {
					found = []byte(c["value"].(string))
				}
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(doc)
	require.NotEmpty(t, found, "gateway.yaml has no filter with root_id tollgate")
	return found
}

// keystore answers apikey's verify callouts with one grant (chat, every
// model, request and token quotas) and everything else with the counter
// engine's HTTP API, as `tollgate serve` does; it counts calls by path.
type keystore struct {
	counters http.Handler
	mu       sync.Mutex
	calls    map[string]int
}

func newKeystore(t testing.TB) *keystore {
	t.Helper()
	st, err := memstore.Open(memstore.Options{})
	require.NoError(t, err)
	eng := counter.New(st)
	t.Cleanup(func() { _ = eng.Close() })
	return &keystore{counters: httpapi.New(eng, httpapi.Options{}), calls: map[string]int{}}
}

func (k *keystore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	k.calls[r.URL.Path]++
	k.mu.Unlock()
	switch r.URL.Path {
	case "/v1/verify":
		var req struct {
			KeyHash string `json:"key_hash"`
		}
		b, _ := io.ReadAll(r.Body)
		if json.Unmarshal(b, &req) != nil || req.KeyHash != policy.HashKey(apiKey) {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"valid":false,"status":401,"reason":"unknown_key","cache_ttl_seconds":5}`)
			return
		}
		w.Header().Set("content-type", "application/json")
		_, _ = io.WriteString(w, `{"valid":true,"status":200,"key_id":"key_bench","app":"bench","developer":"ada@example.com",
			"products":["chat"],"cache_ttl_seconds":300,"entitlements":[{"product":"chat","allowed_models":["*"],
			"operations":[{"path":"/v1/**","methods":["GET","POST"],
			"request_quota":{"limit":1000000000,"interval":1,"time_unit":"hour","window":"rolling","scope":"hotpath"},
			"token_quota":{"limit":1000000000,"interval":1,"time_unit":"hour","window":"rolling","counted":"total","scope":"hotpath"}}]}]}`)
	case "/v1/usage":
		w.WriteHeader(http.StatusAccepted)
	default:
		k.counters.ServeHTTP(w, r)
	}
}

func (k *keystore) count(path string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[path]
}

// upstream answers like an OpenAI model server, with the usage package's
// recorded JSON completion or usage stream.
type upstream struct{ json, stream []byte }

func newUpstream(t testing.TB) *upstream {
	t.Helper()
	dir := filepath.Join("..", "..", "filters", "tokencount", "usage", "testdata")
	j, err := os.ReadFile(filepath.Join(dir, "responses", "chat_completion.json"))
	require.NoError(t, err)
	s, err := os.ReadFile(filepath.Join(dir, "streams", "openai_chat_usage.sse"))
	require.NoError(t, err)
	return &upstream{json: j, stream: s}
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if !bytes.Contains(b, []byte(`"stream":true`)) {
		w.Header().Set("content-type", "application/json")
		_, _ = w.Write(u.json)
		return
	}
	w.Header().Set("content-type", "text/event-stream")
	for rest := u.stream; len(rest) > 0; { // one write per event, as a model server streams
		n := bytes.Index(rest, []byte("\n\n")) + 2
		if n < 2 {
			n = len(rest)
		}
		_, _ = w.Write(rest[:n])
		w.(http.Flusher).Flush()
		rest = rest[n:]
	}
}

// chatBody is a chat request without its closing brace; modelroute routes
// llama-3.1-8b (the benchmarks' model) as it is, and rewrites gemma to its
// backend name in the request and back in the answer.
func chatBody(model string) string {
	return `{"model":"` + model + `","messages":[{"role":"system","content":"You are a concise assistant for an online bookshop. Answer in at most three sentences."},{"role":"user","content":"Do you ship to Canada, and how long does delivery usually take?"}],"max_tokens":256`
}

// gateway is one Envoy (host) with one worker VM running the fused filter.
type gateway struct {
	vm *wasmhost.VM
	ks *keystore
}

func start(t testing.TB) *gateway {
	t.Helper()
	ks := newKeystore(t)
	h := wasmtest.NewHost(t, wasmhost.Config{
		Module:                      suiteModule,
		PluginName:                  "tollgate",
		RootID:                      "tollgate",
		VMID:                        "tollgate",
		PluginConfig:                shippedConfig(t),
		Env:                         []string{"TOLLGATE_DATA_TOKEN=hotpath-data-token-0123456789"}, // token_env of the shipped file
		AllowOnHeadersStopIteration: true,
		Clusters:                    map[string]http.Handler{"keystore": ks},
		Upstream:                    newUpstream(t),
		ManualTicks:                 true,
		Logger:                      t,
	})
	return &gateway{vm: wasmtest.NewVM(t, h), ks: ks}
}

func (g *gateway) request(t testing.TB, body string) *wasmhost.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://gateway.local/v1/chat/completions", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("content-type", "application/json")
	req.Header.Set("authorization", "Bearer "+apiKey)
	resp, err := g.vm.Do(ctx, req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", resp.Body)
	require.Contains(t, string(resp.Body), "Canada", "the model's answer reached the client")
	return resp
}

// warm fills apikey's cache, then gives tokencount's lease and quota's
// counter the demand of 60 requests a tick, as a loaded Envoy has them.
func (g *gateway) warm(t testing.TB, body string) {
	t.Helper()
	for range 2 {
		for range 60 {
			g.request(t, body)
		}
		g.vm.Tick()
	}
}

// TestWasmHotPathCrossingsFused counts the fused filter's callbacks and host
// calls per request with the shipped configuration, warm: a cached key, a
// budget lease that covers the request, no keystore call on the request
// path. `go test ./suite/hotpath/ -v` lists them by kind.
func TestWasmHotPathCrossingsFused(t *testing.T) {
	for _, tc := range []struct {
		name                string
		body                string
		hostCalls, callback float64
	}{
		// Budgets: measured 2026-12-07 (docs/benchmarks.md, "Host calls
		// per request"), before → after: json 60.1 → 52.1 host calls,
		// 24.1 → 23.1 callbacks; json-mapped 70.1 → 59.1, 27.1 → 25.1;
		// stream (33 events) 99.6 → 88.6, 86.1 → 85.1; stream-mapped
		// 169.0 → 94.0, 118.1 → 86.1. The margin is the Go runtime's own
		// clock reads.
		{"json", chatBody("llama-3.1-8b") + "}", 53.5, 23.5},
		{"json-mapped", chatBody("gemma") + "}", 60.5, 25.5},
		{"stream", chatBody("llama-3.1-8b") + `,"stream":true}`, 90.5, 85.5},
		{"stream-mapped", chatBody("gemma") + `,"stream":true}`, 95.5, 86.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := start(t)
			g.warm(t, tc.body)
			verifies, reserves := g.ks.count("/v1/verify"), g.ks.count("/v1/tokens/reserve")
			c := wasmtest.CountCrossings(t, g.vm, 50, func() { g.request(t, tc.body) })
			t.Logf("fused filter, shipped config, chat %s: %v", tc.name, c)
			assert.Equal(t, verifies, g.ks.count("/v1/verify"), "apikey answered from its cache")
			assert.Equal(t, reserves, g.ks.count("/v1/tokens/reserve"), "tokencount reserved from its lease")
			assert.Zero(t, c.ByName["env.proxy_http_call"], "no callout per request")
			assert.Zero(t, c.ByName["guest.proxy_on_queue_ready"], "no shared-queue wake-up per request")
			assert.LessOrEqual(t, c.HostCalls, tc.hostCalls, "host calls per request")
			assert.LessOrEqual(t, c.Callbacks, tc.callback, "callbacks per request")
		})
	}
}
