package apikey

// These tests run the built module (rebuilt by TestMain exactly as `make
// build` does) in shared/wasmhost — wazero with Envoy's callback semantics —
// with keystore callouts answered by a test handler: key extraction and
// stripping, identity headers, cache hits across workers, negative caching,
// coalescing of concurrent misses, keystore failures, local and strip modes.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/apikey/policy"
	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/shared/identity"
	"github.com/tollgate/tollgate/shared/wasmhost"
	"github.com/tollgate/tollgate/shared/wasmhost/wasmtest"
)

// wasmModule is the filter built from this package; compiled is wazero's
// compilation cache, so every host after the first skips compiling it.
var (
	wasmModule []byte
	compiled   = wasmhost.NewCompilationCache()
)

func TestMain(m *testing.M) {
	os.Exit(wasmtest.Main(m, "./wasm", &wasmModule, "-ldflags=-s -w"))
}

// keystore answers verify callouts from a table and counts them per hash;
// hold, when set, delays every answer until it is closed.
type keystore struct {
	mu     sync.Mutex
	grants map[string]string
	calls  map[string]int
	status int // when non-zero, answer every call with this status
	hold   chan struct{}
}

func newKeystore() *keystore { return &keystore{grants: map[string]string{}, calls: map[string]int{}} }

func (k *keystore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var req model.VerifyRequest
	if r.Method != http.MethodPost || r.URL.Path != "/v1/verify" || json.Unmarshal(b, &req) != nil || req.Key != "" {
		http.Error(w, "bad verify request", http.StatusBadRequest)
		return
	}
	k.mu.Lock()
	k.calls[req.KeyHash]++
	body, known := k.grants[req.KeyHash]
	status, hold := k.status, k.hold
	k.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("content-type", "application/json")
	if !known {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"valid":false,"status":401,"reason":"unknown_key","cache_ttl_seconds":5}`)
		return
	}
	_, _ = io.WriteString(w, body)
}

func (k *keystore) grant(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.grants[policy.HashKey(key)] = `{"valid":true,"status":200,"key_id":"key_test","app":"demo","developer":"ada@example.com",
		"products":["chat"],"cache_ttl_seconds":30,"entitlements":[{"product":"chat","allowed_models":["gemma-*"],
		"operations":[{"path":"/v1/**","methods":["GET","POST"],
		"request_quota":{"limit":60,"interval":1,"time_unit":"minute","window":"calendar","scope":"chat"}}]}]}`
}

func (k *keystore) callsFor(key string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[policy.HashKey(key)]
}

// upstream records what reached the route's cluster.
type upstream struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.reqs = append(u.reqs, r)
	u.mu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

func (u *upstream) last(t testing.TB) *http.Request {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	require.NotEmpty(t, u.reqs)
	return u.reqs[len(u.reqs)-1]
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// newHost starts a host (one Envoy) for config; add workers with h.NewVM.
func newHost(t testing.TB, config string, ks http.Handler, up http.Handler, manualTicks bool) *wasmhost.Host {
	t.Helper()
	clusters := map[string]http.Handler{}
	if ks != nil {
		clusters["keystore"] = ks
	}
	return wasmtest.NewHost(t, wasmhost.Config{
		Module:       wasmModule,
		PluginName:   "apikey",
		RootID:       "apikey",
		VMID:         "apikey",
		PluginConfig: []byte(config),
		Clusters:     clusters,
		Upstream:     up,
		ManualTicks:  manualTicks,
		Logger:       t,

		CompilationCache: compiled,
	})
}

func worker(t testing.TB, h *wasmhost.Host) *wasmhost.VM {
	t.Helper()
	return wasmtest.NewVM(t, h)
}

func get(t testing.TB, vm *wasmhost.VM, path string, headers map[string]string) *wasmhost.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := vm.Do(ctx, req)
	require.NoError(t, err)
	return resp
}

func errorCode(t testing.TB, body []byte) string {
	t.Helper()
	var b struct {
		Error struct{ Code string } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &b), string(body))
	return b.Error.Code
}

func counter(t testing.TB, h *wasmhost.Host, name string) uint64 {
	t.Helper()
	v, _ := h.Counter(name)
	return v
}

func newKey(t testing.TB) string {
	t.Helper()
	k, err := model.GenerateKey(nil)
	require.NoError(t, err)
	return k
}

const remoteConfig = `{"key_sources":[{"header":"x-api-key"},{"bearer":true},{"query":"key"}],
	"keystore":{"cluster":"keystore","timeout":"2s"},"cache":{"negative_ttl":"30s"}}`

func TestWasmRejectsBadConfig(t *testing.T) {
	for _, cfg := range []string{`{"mode":"nope"}`, `{"cache":{"ttl":5}}`, `not json`} {
		h, err := wasmhost.NewHost(context.Background(), wasmhost.Config{
			Module: wasmModule, RootID: "apikey", VMID: "apikey", PluginConfig: []byte(cfg), CompilationCache: compiled,
		})
		require.NoError(t, err)
		vm, err := h.NewVM(context.Background())
		if err == nil {
			vm.Close(context.Background())
		}
		require.Error(t, err, cfg)
		_ = h.Close(context.Background())
	}
}

func TestWasmVerify(t *testing.T) {
	ks, up := newKeystore(), &upstream{}
	h := newHost(t, remoteConfig, ks, up, true)
	w1, w2 := worker(t, h), worker(t, h)
	good := newKey(t)
	ks.grant(good)

	t.Run("missing key", func(t *testing.T) {
		resp := get(t, w1, "/v1/models", nil)
		assert.Equal(t, 401, resp.StatusCode)
		assert.True(t, resp.LocalReply)
		assert.Equal(t, "missing_api_key", errorCode(t, resp.Body))
		assert.Equal(t, `ApiKey realm="tollgate", header="x-api-key"`, resp.Header.Get("www-authenticate"))
	})

	t.Run("malformed key needs no callout", func(t *testing.T) {
		resp := get(t, w1, "/v1/models", map[string]string{"x-api-key": "tg_short"})
		assert.Equal(t, 401, resp.StatusCode)
		assert.Equal(t, "invalid_api_key", errorCode(t, resp.Body))
		assert.Equal(t, 0, ks.callsFor("tg_short"))
	})

	t.Run("good key: stripped, identity set, then cached for every worker", func(t *testing.T) {
		resp := get(t, w1, "/v1/models", map[string]string{"x-api-key": good, identity.HeaderApp: "spoof"})
		require.Equal(t, 200, resp.StatusCode, string(resp.Body))
		r := up.last(t)
		assert.Empty(t, r.Header.Get("x-api-key"))
		assert.Equal(t, []string{"demo"}, r.Header.Values(identity.HeaderApp))
		assert.Equal(t, "chat", r.Header.Get(identity.HeaderProduct))
		assert.Equal(t, "key_test", r.Header.Get(identity.HeaderKeyID))
		assert.Equal(t, "gemma-*", r.Header.Get(identity.HeaderAllowedModels))
		assert.Equal(t, "60/1minute/calendar;scope=chat", r.Header.Get(identity.HeaderRequestQuota))
		assert.Equal(t, 1, ks.callsFor(good))

		for _, vm := range []*wasmhost.VM{w1, w2, w1} {
			resp = get(t, vm, "/v1/chat/completions", map[string]string{"authorization": "Bearer " + good})
			require.Equal(t, 200, resp.StatusCode)
			assert.Empty(t, up.last(t).Header.Get("authorization"))
		}
		assert.Equal(t, 1, ks.callsFor(good), "cache hits avoid the callout, in both workers")
		assert.Equal(t, uint64(3), counter(t, h, policy.CacheMetric("hit")))
		assert.Equal(t, uint64(1), counter(t, h, policy.CacheMetric("miss")))
	})

	t.Run("query key is cut from the path", func(t *testing.T) {
		resp := get(t, w2, "/v1/models?a=1&key="+good+"&b=2", nil)
		require.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "/v1/models?a=1&b=2", up.last(t).URL.RequestURI())
	})

	t.Run("path outside the product is 403 from the cached grant", func(t *testing.T) {
		resp := get(t, w2, "/admin", map[string]string{"x-api-key": good})
		assert.Equal(t, 403, resp.StatusCode)
		assert.Equal(t, "operation_not_allowed", errorCode(t, resp.Body))
		assert.Equal(t, 1, ks.callsFor(good))
	})

	t.Run("unknown key is cached negatively", func(t *testing.T) {
		bad := newKey(t)
		before := up.count()
		for _, vm := range []*wasmhost.VM{w1, w2, w1, w2} {
			resp := get(t, vm, "/v1/models", map[string]string{"x-api-key": bad})
			assert.Equal(t, 401, resp.StatusCode)
			assert.Equal(t, "invalid_api_key", errorCode(t, resp.Body))
		}
		assert.Equal(t, 1, ks.callsFor(bad))
		assert.Equal(t, before, up.count())
	})

	t.Run("metrics by outcome", func(t *testing.T) {
		for o, want := range map[policy.Outcome]uint64{policy.Allowed: 5, policy.Missing: 1, policy.Invalid: 5, policy.Forbidden: 1} {
			assert.Equal(t, want, counter(t, h, policy.RequestsMetric(o)), o.String())
		}
		assert.Equal(t, uint64(2), counter(t, h, policy.CalloutsMetric("ok")))
	})
}

// TestWasmCoalescing sends concurrent requests for one unknown key through
// two workers while the keystore holds its answer: one callout in all.
func TestWasmCoalescing(t *testing.T) {
	ks, up := newKeystore(), &upstream{}
	h := newHost(t, remoteConfig, ks, up, false) // real tick timers: waiting workers poll
	workers := []*wasmhost.VM{worker(t, h), worker(t, h)}
	bad := newKey(t)
	hold := make(chan struct{})
	ks.mu.Lock()
	ks.hold = hold
	ks.mu.Unlock()

	const perWorker = 6
	var wg sync.WaitGroup
	codes := make(chan int, 2*perWorker)
	for _, vm := range workers {
		for range perWorker {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				req := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
				req.Header.Set("x-api-key", bad)
				resp, err := vm.Do(ctx, req)
				if assert.NoError(t, err) {
					codes <- resp.StatusCode
				}
			}()
		}
	}
	deadline := time.After(10 * time.Second)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for counter(t, h, policy.MetricCoalesced) < 2*perWorker-1 {
		select {
		case <-deadline:
			t.Fatalf("requests never all paused: coalesced=%d", counter(t, h, policy.MetricCoalesced))
		case <-poll.C:
		}
	}
	assert.Equal(t, 1, ks.callsFor(bad))
	close(hold)
	wg.Wait()
	close(codes)
	n := 0
	for c := range codes {
		assert.Equal(t, 401, c)
		n++
	}
	assert.Equal(t, 2*perWorker, n)
	assert.Equal(t, 1, ks.callsFor(bad), "N concurrent misses → 1 callout")
	assert.Equal(t, 0, up.count())
	for _, vm := range workers {
		assert.Zero(t, vm.TickPeriod(), "ticks stop once nobody waits")
	}
}

func TestWasmKeystoreFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config string
		status int
	}{
		{"fail closed", `{"keystore":{"cluster":"keystore"}}`, 503},
		{"fail open", `{"keystore":{"cluster":"keystore"},"failure_mode":"open"}`, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks, up := newKeystore(), &upstream{}
			ks.status = http.StatusInternalServerError
			h := newHost(t, tc.config, ks, up, true)
			vm := worker(t, h)
			key := newKey(t)
			resp := get(t, vm, "/v1/models", map[string]string{"x-api-key": key, identity.HeaderApp: "spoof"})
			assert.Equal(t, tc.status, resp.StatusCode, string(resp.Body))
			if tc.status == 503 {
				assert.Equal(t, "keystore_unavailable", errorCode(t, resp.Body))
				assert.Equal(t, "1", resp.Header.Get("retry-after"))
			} else {
				r := up.last(t)
				assert.Empty(t, r.Header.Get(identity.HeaderApp), "no identity when failing open")
				assert.Empty(t, r.Header.Get("x-api-key"))
			}
			get(t, vm, "/v1/models", map[string]string{"x-api-key": key})
			assert.Equal(t, 1, ks.callsFor(key), "the failure is shared for error_ttl")
			assert.Equal(t, uint64(2), counter(t, h, policy.RequestsMetric(policy.KeystoreError)))
			assert.Equal(t, uint64(1), counter(t, h, policy.CalloutsMetric("error")))
		})
	}

	t.Run("unknown cluster", func(t *testing.T) {
		up := &upstream{}
		h := newHost(t, `{"keystore":{"cluster":"missing"}}`, nil, up, true)
		resp := get(t, worker(t, h), "/v1/models", map[string]string{"x-api-key": newKey(t)})
		assert.Equal(t, 503, resp.StatusCode)
	})
}

func TestWasmLocalAndStripModes(t *testing.T) {
	key := "local-secret-key"
	cfg := `{"local":{"keys":[{"hash":"` + policy.HashKey(key) + `","app":"demo","products":["p"]}],
		"products":[{"name":"p","operations":[{"path":"/v1/**"}],"requestQuota":{"limit":5,"timeUnit":"minute"}}]}}`
	up := &upstream{}
	vm := worker(t, newHost(t, cfg, nil, up, true))
	resp := get(t, vm, "/v1/models", map[string]string{"x-api-key": key})
	require.Equal(t, 200, resp.StatusCode, string(resp.Body))
	assert.Equal(t, "5/1minute/calendar;scope=p", up.last(t).Header.Get(identity.HeaderRequestQuota))
	assert.Equal(t, 401, get(t, vm, "/v1/models", map[string]string{"x-api-key": "other"}).StatusCode)
	assert.Equal(t, 403, get(t, vm, "/v2/x", map[string]string{"x-api-key": key}).StatusCode)

	// Hosts without custom metrics (Service Extensions) still run local mode.
	h := wasmtest.NewHost(t, wasmhost.Config{
		Module: wasmModule, PluginName: "apikey", RootID: "apikey", VMID: "apikey",
		PluginConfig: []byte(cfg), Upstream: up, ManualTicks: true, NoCustomMetrics: true,
		Logger: t, CompilationCache: compiled,
	})
	noMetrics := worker(t, h)
	assert.Equal(t, 200, get(t, noMetrics, "/v1/models", map[string]string{"x-api-key": key}).StatusCode)
	assert.Equal(t, 401, get(t, noMetrics, "/v1/models", map[string]string{"x-api-key": "other"}).StatusCode)

	strip := worker(t, newHost(t, `{"mode":"strip"}`, nil, up, true))
	resp = get(t, strip, "/anything", map[string]string{identity.HeaderApp: "x", identity.HeaderTokenQuota: "y", "x-other": "kept"})
	require.Equal(t, 200, resp.StatusCode)
	r := up.last(t)
	assert.Empty(t, r.Header.Get(identity.HeaderApp))
	assert.Empty(t, r.Header.Get(identity.HeaderTokenQuota))
	assert.Equal(t, "kept", r.Header.Get("x-other"))
}

// BenchmarkWasmRequest is one request through the built filter in wazero
// (no network): warm cache versus the same module in strip mode (the cost
// of the proxy-wasm round trips alone).
func BenchmarkWasmRequest(b *testing.B) {
	ks, up := newKeystore(), &upstream{}
	key := newKey(b)
	ks.grant(key)
	for _, c := range []struct{ name, config string }{
		{"warm", remoteConfig},
		{"strip-floor", `{"mode":"strip"}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			vm := worker(b, newHost(b, c.config, ks, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}), true))
			get(b, vm, "/v1/models", map[string]string{"x-api-key": key})
			ctx := context.Background()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
				req.Header.Set("x-api-key", key)
				resp, err := vm.Do(ctx, req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("%v %v", err, resp)
				}
			}
		})
	}
	_ = up
}
