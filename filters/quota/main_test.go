package quota

// These tests run the built Wasm module in shared/wasmhost (wazero with
// Envoy's callback semantics) with two VMs standing for two Envoy workers.
// Keystore callouts are answered in-process by the counter engine's real
// HTTP handler over a memory backend.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/httpapi"
	"github.com/tollgate/tollgate/counter/memstore"
	"github.com/tollgate/tollgate/filters/quota/policy"
	"github.com/tollgate/tollgate/shared/wasmhost"
	"github.com/tollgate/tollgate/shared/wasmhost/wasmtest"
	"github.com/tollgate/tollgate/window"
)

// wasmModule is quota.wasm built by TestMain from this package, so the
// tests never run a stale artefact; compiled is shared by every host so the
// module is compiled once.
var (
	wasmModule []byte
	compiled   = wasmhost.NewCompilationCache()
)

func TestMain(m *testing.M) {
	os.Exit(wasmtest.Main(m, "./wasm", &wasmModule))
}

// keystore is the counter engine's data-plane handler over memory, with a
// switch that makes it answer 503 like a keystore whose Redis is down.
type keystore struct {
	eng   *counter.Engine
	h     http.Handler
	down  atomic.Bool
	slow  atomic.Bool
	calls atomic.Int64
}

func newKeystore(t *testing.T) *keystore {
	t.Helper()
	ms, err := memstore.Open(memstore.Options{})
	require.NoError(t, err)
	eng := counter.New(ms)
	t.Cleanup(func() { _ = eng.Close() })
	return &keystore{eng: eng, h: httpapi.New(eng, httpapi.Options{})}
}

func (k *keystore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.calls.Add(1)
	if k.slow.Load() {
		<-r.Context().Done() // the callout times out
		return
	}
	if k.down.Load() {
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(503)
		_, _ = w.Write([]byte(`{"error":{"message":"backend unavailable","type":"server_error","code":"backend_unavailable"}}`))
		return
	}
	k.h.ServeHTTP(w, r)
}

func (k *keystore) used(t *testing.T, app string, spec window.Spec) int64 {
	t.Helper()
	d, err := k.eng.Consume(context.Background(), counter.Key{App: app, Product: "rule:default", Kind: counter.Requests}, spec, 0)
	require.NoError(t, err)
	return d.Used
}

// gateway is one "Envoy": a host with two worker VMs.
type gateway struct {
	host *wasmhost.Host
	vms  []*wasmhost.VM
	up   *atomic.Int64
}

func start(t *testing.T, config string, ks http.Handler, manualTicks bool) *gateway {
	t.Helper()
	g := &gateway{up: &atomic.Int64{}}
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.up.Add(1)
		w.Header().Set("content-type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	clusters := map[string]http.Handler{}
	if ks != nil {
		clusters["keystore"] = ks
	}
	g.host = wasmtest.NewHost(t, wasmhost.Config{
		Module: wasmModule, PluginName: "quota", RootID: "quota", VMID: "tollgate",
		PluginConfig: []byte(config), Clusters: clusters, Upstream: upstream,
		ManualTicks: manualTicks, SourceAddress: "10.1.2.3:4567", Logger: t, CompilationCache: compiled,
	})
	for range 2 {
		g.vms = append(g.vms, wasmtest.NewVM(t, g.host))
	}
	return g
}

func (g *gateway) do(t *testing.T, w int, path string, headers map[string]string) *wasmhost.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, path, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := g.vms[w].Do(ctx, req)
	require.NoError(t, err)
	return resp
}

func (g *gateway) counter(name string) uint64 {
	v, _ := g.host.Counter(name)
	return v
}

type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

func decodeError(t *testing.T, b []byte) errorBody {
	t.Helper()
	var e errorBody
	require.NoError(t, json.Unmarshal(b, &e), string(b))
	return e
}

var minute5 = window.Spec{Limit: 5, Interval: 1, Unit: window.Minute, Kind: window.Calendar}

func config(mode, extra string) string {
	return `{"mode": "` + mode + `", "key_sources": [{"identity": true}, {"header": "x-user"}, {"client_ip": true}],
	  "quotas": [{"limit": 5, "timeUnit": "minute"}], "async": {"sync_period": "50ms"}` + extra + `}`
}

func TestWasmRejectsBadConfig(t *testing.T) {
	h, err := wasmhost.NewHost(context.Background(), wasmhost.Config{Module: wasmModule, RootID: "quota", VMID: "q", CompilationCache: compiled,
		PluginConfig: []byte(`{"quotas": [{"limit": 1, "timeUnit": "minute"}]}`)})
	require.NoError(t, err)
	defer h.Close(context.Background())
	vm, err := h.NewVM(context.Background())
	if err == nil {
		vm.Close(context.Background())
	}
	require.Error(t, err, "a configuration without key_sources is refused")
}

// TestWasmModes: in every mode, 8 requests of one key spread over both
// workers admit exactly 5, with x-ratelimit-* headers on allowed responses
// and a 429 OpenAI error with Retry-After on denied ones.
func TestWasmModes(t *testing.T) {
	for _, mode := range []string{"strict", "local", "async"} {
		t.Run(mode, func(t *testing.T) {
			ks := newKeystore(t)
			g := start(t, config(mode, ""), ks, true)
			allowed := 0
			for i := range 8 {
				resp := g.do(t, i%2, "/v1/chat/completions", map[string]string{"x-user": "alice"})
				switch resp.StatusCode {
				case 200:
					allowed++
					assert.Equal(t, "5", resp.Header.Get("x-ratelimit-limit-requests"))
					assert.Equal(t, fmt.Sprint(5-allowed), resp.Header.Get("x-ratelimit-remaining-requests"))
					reset, err := time.ParseDuration(resp.Header.Get("x-ratelimit-reset-requests"))
					require.NoError(t, err)
					assert.Greater(t, reset, time.Duration(0))
					assert.LessOrEqual(t, reset, time.Minute)
					assert.Empty(t, resp.Header.Get("retry-after"))
				case 429:
					assert.True(t, resp.LocalReply)
					e := decodeError(t, resp.Body)
					assert.Equal(t, "rate_limit_error", e.Error.Type)
					assert.Equal(t, "rate_limit_exceeded", e.Error.Code)
					assert.Nil(t, e.Error.Param)
					assert.Equal(t, "application/json", resp.Header.Get("content-type"))
					assert.Equal(t, "5", resp.Header.Get("x-ratelimit-limit-requests"))
					assert.Equal(t, "0", resp.Header.Get("x-ratelimit-remaining-requests"))
					assert.NotEmpty(t, resp.Header.Get("x-ratelimit-reset-requests"))
					assert.NotEmpty(t, resp.Header.Get("retry-after"))
				default:
					t.Fatalf("status %d: %s", resp.StatusCode, resp.Body)
				}
			}
			assert.Equal(t, 5, allowed)
			assert.EqualValues(t, 5, g.up.Load(), "denied requests never reach the upstream")
			m := map[string]policy.Mode{"strict": policy.Strict, "local": policy.Local, "async": policy.Async}[mode]
			assert.EqualValues(t, 5, g.counter(policy.RequestsMetric(m, policy.Allowed)))
			assert.EqualValues(t, 3, g.counter(policy.RequestsMetric(m, policy.Denied)))
			switch mode {
			case "strict":
				assert.EqualValues(t, 8, ks.calls.Load())
				assert.EqualValues(t, 5, ks.used(t, "hdr:x-user:alice", minute5))
			case "local":
				assert.Zero(t, ks.calls.Load())
			case "async":
				assert.Zero(t, ks.calls.Load(), "no request waits for the keystore")
				for _, vm := range g.vms {
					vm.Tick()
				}
				require.Eventually(t, func() bool { return ks.used(t, "hdr:x-user:alice", minute5) == 5 }, 5*time.Second, 5*time.Millisecond)
				assert.EqualValues(t, 1, ks.calls.Load(), "one worker pushed, the other saw its lease")
			}
			for _, vm := range g.vms {
				st, msg := vm.Failed()
				assert.Equal(t, wasmhost.FailNone, st, msg)
			}
		})
	}
}

func TestWasmKeySources(t *testing.T) {
	ks := newKeystore(t)
	g := start(t, config("strict", ""), ks, true)
	identity := map[string]string{"x-tollgate-app": "demo", "x-tollgate-product": "gold",
		"x-tollgate-request-quota": "2/1minute/calendar;scope=gold", "x-user": "ignored"}
	for i := range 3 {
		resp := g.do(t, 0, "/", identity)
		if i < 2 {
			require.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "2", resp.Header.Get("x-ratelimit-limit-requests"), "the tighter identity quota binds")
			assert.Equal(t, fmt.Sprint(1-i), resp.Header.Get("x-ratelimit-remaining-requests"))
		} else {
			require.Equal(t, 429, resp.StatusCode)
		}
	}
	d, err := ks.eng.Consume(context.Background(), counter.Key{App: "demo", Product: "gold", Kind: counter.Requests},
		window.Spec{Limit: 2, Interval: 1, Unit: window.Minute, Kind: window.Calendar}, 0)
	require.NoError(t, err)
	assert.EqualValues(t, 2, d.Used)
	assert.EqualValues(t, 2, ks.used(t, "demo", minute5), "the route quota counts the same app")

	resp := g.do(t, 1, "/", nil)
	require.Equal(t, 200, resp.StatusCode)
	assert.EqualValues(t, 1, ks.used(t, "ip:10.1.2.3", minute5), "without identity or header: the client IP")
}

func TestWasmSpikeArrest(t *testing.T) {
	g := start(t, `{"mode": "local", "key_sources": [{"header": "x-user"}], "spike_arrest": {"rate": "1ps"}}`, nil, true)
	resp := g.do(t, 0, "/", map[string]string{"x-user": "a"})
	require.Equal(t, 200, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("x-ratelimit-limit-requests"), "spike arrest alone sets no quota headers")
	resp = g.do(t, 1, "/", map[string]string{"x-user": "a"})
	require.Equal(t, 429, resp.StatusCode, "the other worker shares the arrest")
	e := decodeError(t, resp.Body)
	assert.Equal(t, "spike_arrest_violation", e.Error.Code)
	assert.Equal(t, "1", resp.Header.Get("retry-after"))
	assert.NotEmpty(t, resp.Header.Get("x-ratelimit-reset-requests"))
	assert.EqualValues(t, 1, g.counter(policy.RequestsMetric(policy.Local, policy.SpikeDenied)))
}

func TestWasmFailureModes(t *testing.T) {
	tests := []struct {
		name   string
		extra  string
		status int
		break_ func(k *keystore)
	}{
		{"503 fail open", ``, 200, func(k *keystore) { k.down.Store(true) }},
		{"503 fail closed", `, "failure_mode": "closed"`, 503, func(k *keystore) { k.down.Store(true) }},
		{"timeout fail open", `, "keystore": {"timeout": "50ms"}`, 200, func(k *keystore) { k.slow.Store(true) }},
		{"timeout fail closed", `, "keystore": {"timeout": "50ms"}, "failure_mode": "closed"`, 503, func(k *keystore) { k.slow.Store(true) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks := newKeystore(t)
			tt.break_(ks)
			g := start(t, config("strict", tt.extra), ks, true)
			for i := range 3 {
				resp := g.do(t, i%2, "/", map[string]string{"x-user": "a"})
				require.Equal(t, tt.status, resp.StatusCode, string(resp.Body))
				if tt.status == 503 {
					e := decodeError(t, resp.Body)
					assert.Equal(t, "quota_unavailable", e.Error.Code)
					assert.Equal(t, "server_error", e.Error.Type)
					assert.Equal(t, "1", resp.Header.Get("retry-after"))
				} else {
					assert.Empty(t, resp.Header.Get("x-ratelimit-remaining-requests"))
				}
			}
			assert.EqualValues(t, 3, g.counter(policy.KeystoreErrorsMetric("consume")))
			want := "failing open"
			if tt.status == 503 {
				want = "failing closed (503)"
			}
			var warned bool
			for _, vm := range g.vms {
				for _, e := range vm.Logs() {
					warned = warned || e.Level == wasmhost.LogWarn &&
						strings.Contains(e.Message, "quota: keystore consume failed") && strings.Contains(e.Message, want)
				}
			}
			assert.True(t, warned, "a failure is logged")
		})
	}
}

func TestWasmUnknownClusterFailsOpen(t *testing.T) {
	g := start(t, config("strict", `, "keystore": {"cluster": "nowhere"}`), nil, true)
	resp := g.do(t, 0, "/", map[string]string{"x-user": "a"})
	assert.Equal(t, 200, resp.StatusCode)
	assert.EqualValues(t, 1, g.counter(policy.RequestsMetric(policy.Strict, policy.FailedOpen)))
}

// TestWasmAsyncTick: with the real tick timer, two gateways ("Envoys")
// sharing one keystore converge on the global count.
func TestWasmAsyncTick(t *testing.T) {
	ks := newKeystore(t)
	a := start(t, config("async", ""), ks, false)
	b := start(t, config("async", ""), ks, false)
	var wg sync.WaitGroup
	var allowed atomic.Int64
	for _, g := range []*gateway{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 3 {
				if g.do(t, j%2, "/", map[string]string{"x-user": "bob"}).StatusCode == 200 {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	require.Eventually(t, func() bool { return ks.used(t, "hdr:x-user:bob", minute5) == allowed.Load() }, 5*time.Second, 10*time.Millisecond,
		"every admitted request reaches the keystore")
	// Each gateway may admit its 3 before seeing the other's: an overshoot of
	// at most one over the limit of 5.
	assert.GreaterOrEqual(t, allowed.Load(), int64(5))
	assert.LessOrEqual(t, allowed.Load(), int64(6))
	// Once synced, both gateways know the global count is over the limit.
	for _, g := range []*gateway{a, b} {
		require.Eventually(t, func() bool {
			return g.do(t, 0, "/", map[string]string{"x-user": "bob"}).StatusCode == 429
		}, 5*time.Second, 60*time.Millisecond)
	}
	assert.Positive(t, a.counter(policy.SyncsMetric("ok")))
	assert.Positive(t, a.counter(policy.MetricSyncItems))
}
