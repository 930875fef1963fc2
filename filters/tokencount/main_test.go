package tokencount

// These tests run the built Wasm module in shared/wasmhost (wazero with
// Envoy's callback semantics) in front of the real counter engine
// (counter/httpapi over an in-memory store) and an OpenAI-style upstream
// replaying the usage package's recorded streams, so the wiring in filter.go
// is exercised without Envoy: JSON and streamed responses in any split,
// usage-chunk removal, refusals, keystore failures and releases on abort.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tollgate/tollgate/internal/jsontest"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/httpapi"
	"github.com/tollgate/tollgate/counter/memstore"
	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/shared/sse"
	"github.com/tollgate/tollgate/shared/wasmhost"
	"github.com/tollgate/tollgate/shared/wasmhost/wasmtest"
	"github.com/tollgate/tollgate/window"
)

// wasmModule is the filter built by TestMain from this package, so the
// tests never run a stale artefact; compiled is shared by every host.
var (
	wasmModule []byte
	compiled   = wasmhost.NewCompilationCache()
)

func TestMain(m *testing.M) {
	os.Exit(wasmtest.Main(m, "./wasm", &wasmModule))
}

const fixtures = "usage/testdata"

func fixture(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, path))
	require.NoError(t, err)
	return b
}

// keystore is the counter engine behind the "keystore" cluster; fail (for
// reservations) and gate let tests break or stall it.
type keystore struct {
	eng *counter.Engine
	h   http.Handler

	mu    sync.Mutex
	fail  bool
	gate  chan struct{} // when set, reserve calls wait for it to close
	calls map[string]int
}

func newKeystore(t testing.TB) *keystore {
	t.Helper()
	st, err := memstore.Open(memstore.Options{})
	require.NoError(t, err)
	eng := counter.New(st)
	t.Cleanup(func() { _ = eng.Close() })
	return &keystore{eng: eng, h: httpapi.New(eng, httpapi.Options{}), calls: map[string]int{}}
}

func (k *keystore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	k.calls[r.URL.Path]++
	fail, gate := k.fail, k.gate
	k.mu.Unlock()
	if fail && r.URL.Path == meter.PathReserve {
		http.Error(w, `{"error":{"message":"backend down","code":"backend_unavailable"}}`, http.StatusServiceUnavailable)
		return
	}
	if gate != nil && r.URL.Path == meter.PathReserve {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	k.h.ServeHTTP(w, r)
}

func (k *keystore) count(path string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[path]
}

// used queries a counter without counting.
func (k *keystore) used(t testing.TB, key counter.Key, spec window.Spec) int64 {
	t.Helper()
	d, err := k.eng.Consume(context.Background(), key, spec, 0)
	require.NoError(t, err)
	return d.Used
}

// backend is an OpenAI-compatible upstream replaying recorded answers: a
// stream with or without the usage chunk (as the request asks), cut into
// pieces of split bytes (0: one piece per event); a JSON completion
// otherwise. hold, when set, stalls a stream after holdAfter pieces until
// the client goes away.
type backend struct {
	t         testing.TB
	json      []byte
	usage     []byte
	noUsage   []byte
	split     int
	status    int
	holdAfter int
	held      chan struct{}
	// gate, when set, holds every response until it is closed, so admitted
	// requests keep their reservations while others are decided.
	gate chan struct{}

	mu   sync.Mutex
	reqs [][]byte
}

func newBackend(t testing.TB) *backend {
	return &backend{
		t:       t,
		json:    fixture(t, "responses/chat_completion.json"),
		usage:   fixture(t, "streams/openai_chat_usage.sse"),
		noUsage: fixture(t, "streams/openai_chat_no_usage.sse"),
		status:  200,
	}
}

// count is how many requests reached the backend.
func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.reqs)
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.reqs = append(b.reqs, body)
	b.mu.Unlock()
	if b.gate != nil {
		select {
		case <-b.gate:
		case <-r.Context().Done():
			return
		}
	}
	if b.status != 200 {
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(b.status)
		_, _ = io.WriteString(w, `{"error":{"message":"model overloaded","type":"server_error"}}`)
		return
	}
	if !jsontest.Get(body, "stream").Bool() {
		w.Header().Set("content-type", "application/json")
		w.Header().Set("content-length", strconv.Itoa(len(b.json)))
		_, _ = w.Write(b.json)
		return
	}
	stream := b.noUsage
	if jsontest.Get(body, "stream_options.include_usage").Bool() {
		stream = b.usage
	}
	w.Header().Set("content-type", "text/event-stream")
	w.WriteHeader(200)
	for i, piece := range pieces(stream, b.split) {
		if b.held != nil && i == b.holdAfter {
			close(b.held)
			<-r.Context().Done()
			return
		}
		_, _ = w.Write(piece)
		w.(http.Flusher).Flush()
	}
}

func (b *backend) requests() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]byte(nil), b.reqs...)
}

// pieces cuts a stream into pieces of n bytes, or per event when n is 0.
func pieces(s []byte, n int) [][]byte {
	var out [][]byte
	if n <= 0 {
		for len(s) > 0 {
			i := bytes.Index(s, []byte("\n\n"))
			if i < 0 {
				out = append(out, s)
				break
			}
			out = append(out, s[:i+2])
			s = s[i+2:]
		}
		return out
	}
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

// gateway is one host and VM running the filter.
type gateway struct {
	host *wasmhost.Host
	vm   *wasmhost.VM
	ks   *keystore
	up   *backend
}

func start(t testing.TB, config string, ks *keystore, up *backend) *gateway {
	t.Helper()
	h := wasmtest.NewHost(t, wasmhost.Config{
		Module:                      wasmModule,
		PluginName:                  "tokencount",
		RootID:                      "tokencount",
		VMID:                        "tokencount",
		PluginConfig:                []byte(config),
		AllowOnHeadersStopIteration: true,
		Clusters:                    map[string]http.Handler{"keystore": ks},
		Upstream:                    up,
		ManualTicks:                 true,
		CompilationCache:            compiled,
	})
	return &gateway{host: h, vm: wasmtest.NewVM(t, h), ks: ks, up: up}
}

// staticConfig meters every request with x-team against limit tokens per hour.
func staticConfig(limit int64, extra string) string {
	return fmt.Sprintf(`{"static_quota": {"header": "x-team", "limit": %d, "time_unit": "hour"}%s}`, limit, extra)
}

func teamKey(team string) counter.Key {
	return counter.Key{App: team, Product: meter.DefaultStaticProduct, Kind: counter.Tokens}
}

func hourly(limit int64) window.Spec {
	return window.Spec{Limit: limit, Interval: 1, Unit: window.Hour, Kind: window.Calendar}
}

const chatJSON = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a concise assistant for an online bookshop. Answer in at most three sentences."},{"role":"user","content":"Do you ship to Canada, and how long does delivery usually take?"}],"max_tokens":256`

func chatRequest(t testing.TB, ctx context.Context, body string, headers map[string]string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://gateway.local/v1/chat/completions", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("content-type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return req
}

func (g *gateway) do(t testing.TB, body string, headers map[string]string) *wasmhost.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := g.vm.Do(ctx, chatRequest(t, ctx, body, headers))
	require.NoError(t, err)
	return resp
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, 5*time.Second, 2*time.Millisecond, append([]any{msg}, args...)...)
}

func (g *gateway) waitUsed(t testing.TB, key counter.Key, spec window.Spec, want int64) {
	t.Helper()
	var got int64
	eventually(t, func() bool { got = g.ks.used(t, key, spec); return got == want }, "counter used: want %d", want)
}

func (g *gateway) counter(t testing.TB, name string) uint64 {
	t.Helper()
	v, _ := g.host.Counter(name)
	return v
}

func TestJSONSettlesExactUsageBeforeHeaders(t *testing.T) {
	g := start(t, staticConfig(10000, ""), newKeystore(t), newBackend(t))
	resp := g.do(t, chatJSON+`}`, map[string]string{"x-team": "blue", "accept-encoding": "gzip"})
	require.Equal(t, 200, resp.StatusCode, "%s", resp.Body)
	assert.Equal(t, g.up.json, resp.Body, "a JSON answer passes unchanged")
	// The headers waited for the settlement: remaining is the limit minus the real usage.
	assert.Equal(t, "10000", resp.Header.Get("x-ratelimit-limit-tokens"))
	assert.Equal(t, "9929", resp.Header.Get("x-ratelimit-remaining-tokens"))
	reset, err := time.ParseDuration(resp.Header.Get("x-ratelimit-reset-tokens"))
	require.NoError(t, err)
	assert.Greater(t, reset, time.Duration(0))
	assert.LessOrEqual(t, reset, time.Hour)
	assert.Equal(t, int64(71), g.ks.used(t, teamKey("blue"), hourly(10000)))
	reqs := g.up.requests()
	require.Len(t, reqs, 1)
	assert.JSONEq(t, chatJSON+`}`, string(reqs[0]), "a non-streamed body goes upstream unchanged")

	l := meter.Labels{Model: "gpt-4o-mini", App: "blue"}
	tm := meter.TokenMetrics(l)
	assert.Equal(t, uint64(43), g.counter(t, tm[0]))
	assert.Equal(t, uint64(28), g.counter(t, tm[1]))
	assert.Equal(t, uint64(1), g.counter(t, meter.RequestsMetric(l, meter.OutcomeSettled)))
	h, ok := g.host.Histogram(meter.EstimateErrorMetric("gpt-4o-mini"))
	require.True(t, ok)
	require.Len(t, h, 1)
	assert.Less(t, h[0], uint64(25), "prompt estimate error %d%%", h[0])

	// The next request sees the settled usage of the first.
	resp = g.do(t, chatJSON+`}`, map[string]string{"x-team": "blue"})
	assert.Equal(t, "9858", resp.Header.Get("x-ratelimit-remaining-tokens"))
}

func TestStreamRemovesTheInjectedUsageChunk(t *testing.T) {
	for _, split := range []int{0, 1, 7, 64, 333, 4096} {
		t.Run("split="+strconv.Itoa(split), func(t *testing.T) {
			up := newBackend(t)
			up.split = split
			g := start(t, staticConfig(10000, ""), newKeystore(t), up)
			resp := g.do(t, chatJSON+`,"stream":true}`, map[string]string{"x-team": "blue"})
			require.Equal(t, 200, resp.StatusCode, "%s", resp.Body)
			// The upstream was asked for usage; the client, who did not ask, never sees it.
			reqs := up.requests()
			require.Len(t, reqs, 1)
			assert.True(t, jsontest.Get(reqs[0], "stream_options.include_usage").Bool())
			assert.Equal(t, jsontest.Get([]byte(chatJSON+`}`), "messages").Raw(), jsontest.Get(reqs[0], "messages").Raw())
			assert.Equal(t, withoutUsageChunk(t, up.usage), resp.Body)
			assert.True(t, bytes.HasSuffix(resp.Body, []byte("data: [DONE]\n\n")))
			// Headers went out with the stream: remaining counts the reservation.
			assert.Equal(t, "10000", resp.Header.Get("x-ratelimit-limit-tokens"))
			remaining, err := strconv.ParseInt(resp.Header.Get("x-ratelimit-remaining-tokens"), 10, 64)
			require.NoError(t, err)
			assert.Less(t, remaining, int64(10000-256), "the reservation covers max_tokens")
			// The settlement follows the stream's end.
			g.waitUsed(t, teamKey("blue"), hourly(10000), 71)
		})
	}
}

// withoutUsageChunk removes the usage-only event blocks of an LF stream.
func withoutUsageChunk(t testing.TB, s []byte) []byte {
	t.Helper()
	var out []byte
	for _, block := range pieces(s, 0) {
		if bytes.Contains(block, []byte(`"choices":[],`)) {
			continue
		}
		out = append(out, block...)
	}
	require.Less(t, len(out), len(s))
	return out
}

func TestStreamClientAskedForUsage(t *testing.T) {
	up := newBackend(t)
	up.split = 13
	g := start(t, staticConfig(10000, ""), newKeystore(t), up)
	body := chatJSON + `,"stream":true,"stream_options":{"include_usage":true}}`
	resp := g.do(t, body, map[string]string{"x-team": "blue"})
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, up.usage, resp.Body, "the client asked: the stream passes byte for byte")
	assert.Equal(t, body, string(up.requests()[0]), "the request was not rewritten")
	g.waitUsed(t, teamKey("blue"), hourly(10000), 71)
}

func TestStreamWithoutUsageIsEstimated(t *testing.T) {
	up := newBackend(t)
	g := start(t, staticConfig(10000, `, "inject_include_usage": false`), newKeystore(t), up)
	resp := g.do(t, chatJSON+`,"stream":true}`, map[string]string{"x-team": "blue"})
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, up.noUsage, resp.Body)
	assert.False(t, jsontest.Get(up.requests()[0], "stream_options").Exists())
	// Prompt estimate plus the streamed text: near the real 71.
	var got int64
	eventually(t, func() bool {
		got = g.ks.used(t, teamKey("blue"), hourly(10000))
		return got > 0 && got < 256
	}, "settled estimate")
	assert.InDelta(t, 71, got, 15)
}

func TestRefusedBeforeTheUpstream(t *testing.T) {
	t.Run("request larger than the limit", func(t *testing.T) {
		g := start(t, staticConfig(200, ""), newKeystore(t), newBackend(t))
		resp := g.do(t, chatJSON+`}`, map[string]string{"x-team": "blue"}) // 256 output tokens alone exceed 200
		assert.Equal(t, 429, resp.StatusCode)
		assert.Equal(t, meter.CodeRequestOverLimit, jsontest.Get(resp.Body, "error.code").Str())
		assert.Equal(t, "rate_limit_error", jsontest.Get(resp.Body, "error.type").Str())
		assert.Empty(t, g.up.requests())
		assert.Zero(t, g.ks.count(meter.PathReserve), "no callout for what can never fit")
		assert.Equal(t, uint64(1), g.counter(t, meter.RefusedMetric(meter.Labels{Model: "gpt-4o-mini", App: "blue"})))
	})
	t.Run("budget used up", func(t *testing.T) {
		ks := newKeystore(t)
		_, err := ks.eng.Consume(context.Background(), teamKey("blue"), hourly(1000), 900)
		require.NoError(t, err)
		g := start(t, staticConfig(1000, ""), ks, newBackend(t))
		resp := g.do(t, chatJSON+`}`, map[string]string{"x-team": "blue"})
		assert.Equal(t, 429, resp.StatusCode)
		assert.Equal(t, meter.CodeQuotaExceeded, jsontest.Get(resp.Body, "error.code").Str())
		assert.Equal(t, "1000", resp.Header.Get("x-ratelimit-limit-tokens"))
		assert.Equal(t, "100", resp.Header.Get("x-ratelimit-remaining-tokens"))
		ra, err := strconv.Atoi(resp.Header.Get("retry-after"))
		require.NoError(t, err)
		assert.Positive(t, ra)
		assert.Empty(t, g.up.requests())
		assert.Equal(t, int64(900), ks.used(t, teamKey("blue"), hourly(1000)), "a denial counts nothing")
		// Another team has its own budget.
		resp = g.do(t, chatJSON+`}`, map[string]string{"x-team": "green"})
		assert.Equal(t, 200, resp.StatusCode)
	})
}

func TestAbortSettlesOnlyWhatWasStreamed(t *testing.T) {
	for _, tt := range []struct {
		name   string
		extra  string
		expect func(t *testing.T, used int64)
	}{
		{"charge_streamed", "", func(t *testing.T, used int64) {
			assert.Positive(t, used)
			assert.Less(t, used, int64(71), "less than the whole answer")
		}},
		{"release", `, "on_abort": "release"`, func(t *testing.T, used int64) { assert.Zero(t, used) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := newBackend(t)
			up.holdAfter, up.held = 10, make(chan struct{})
			g := start(t, staticConfig(10000, tt.extra), newKeystore(t), up)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := g.vm.Do(ctx, chatRequest(t, ctx, chatJSON+`,"stream":true}`, map[string]string{"x-team": "blue"}))
				done <- err
			}()
			select {
			case <-up.held:
			case <-time.After(5 * time.Second):
				t.Fatal("the upstream never streamed")
			}
			// While streaming, the whole reservation is counted.
			assert.Greater(t, g.ks.used(t, teamKey("blue"), hourly(10000)), int64(256))
			cancel()
			require.Error(t, <-done)
			var used int64
			eventually(t, func() bool { used = g.ks.used(t, teamKey("blue"), hourly(10000)); return used < 256 }, "reservation released")
			tt.expect(t, used)
			outcome := meter.OutcomeAborted
			if tt.extra != "" {
				outcome = meter.OutcomeReleased
			}
			assert.Equal(t, uint64(1), g.counter(t, meter.RequestsMetric(meter.Labels{Model: "gpt-4o-mini", App: "blue"}, outcome)))
		})
	}
}

func TestAbortWhileReserving(t *testing.T) {
	ks := newKeystore(t)
	gate := make(chan struct{})
	ks.gate = gate
	g := start(t, staticConfig(10000, ""), ks, newBackend(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := g.vm.Do(ctx, chatRequest(t, ctx, chatJSON+`}`, map[string]string{"x-team": "blue"}))
		done <- err
	}()
	eventually(t, func() bool { return ks.count(meter.PathReserve) == 1 }, "reserve sent")
	cancel()
	require.Error(t, <-done)
	close(gate) // the reservation is granted after the client left
	eventually(t, func() bool { return ks.count(meter.PathRelease) == 1 }, "released")
	g.waitUsed(t, teamKey("blue"), hourly(10000), 0)
	assert.Empty(t, g.up.requests())
}

func TestUpstreamErrorReleases(t *testing.T) {
	up := newBackend(t)
	up.status = 503
	g := start(t, staticConfig(10000, ""), newKeystore(t), up)
	resp := g.do(t, chatJSON+`}`, map[string]string{"x-team": "blue"})
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "10000", resp.Header.Get("x-ratelimit-remaining-tokens"), "the released reservation is not shown as used")
	g.waitUsed(t, teamKey("blue"), hourly(10000), 0)
	assert.Equal(t, uint64(1), g.counter(t, meter.RequestsMetric(meter.Labels{Model: "gpt-4o-mini", App: "blue"}, meter.OutcomeReleased)))
}

func TestKeystoreDown(t *testing.T) {
	t.Run("fail closed", func(t *testing.T) {
		ks := newKeystore(t)
		ks.fail = true
		g := start(t, staticConfig(10000, ""), ks, newBackend(t))
		resp := g.do(t, chatJSON+`}`, map[string]string{"x-team": "blue"})
		assert.Equal(t, 503, resp.StatusCode)
		assert.Equal(t, meter.CodeKeystoreError, jsontest.Get(resp.Body, "error.code").Str())
		assert.Empty(t, g.up.requests())
		assert.Equal(t, uint64(1), g.counter(t, meter.KeystoreErrorsMetric(meter.OpReserve)))
	})
	t.Run("fail open records the usage afterwards", func(t *testing.T) {
		ks := newKeystore(t)
		ks.fail = true
		g := start(t, staticConfig(10000, `, "failure_mode": "open"`), ks, newBackend(t))
		resp := g.do(t, chatJSON+`}`, map[string]string{"x-team": "blue"})
		require.Equal(t, 200, resp.StatusCode)
		assert.Empty(t, resp.Header.Get("x-ratelimit-limit-tokens"), "no reservation, no budget to show")
		g.waitUsed(t, teamKey("blue"), hourly(10000), 71)
		assert.Equal(t, 1, ks.count(meter.PathConsume))
		assert.Equal(t, uint64(1), g.counter(t, meter.RequestsMetric(meter.Labels{Model: "gpt-4o-mini", App: "blue"}, meter.OutcomeFailOpen)))
	})
	t.Run("unknown cluster", func(t *testing.T) {
		g := start(t, staticConfig(10000, `, "keystore": {"cluster": "nowhere"}`), newKeystore(t), newBackend(t))
		resp := g.do(t, chatJSON+`}`, map[string]string{"x-team": "blue"})
		assert.Equal(t, 503, resp.StatusCode)
	})
}

func TestBadRequests(t *testing.T) {
	g := start(t, staticConfig(10000, `, "max_request_bytes": 2048`), newKeystore(t), newBackend(t))
	tests := []struct {
		name, body string
		status     int
		code       string
		param      string
	}{
		{"not JSON", `{"model":`, 400, "invalid_json", ""},
		{"case variant of max_tokens", `{"model":"m","max_tokens":1,"Max_tokens":40,"messages":[{"role":"user","content":"x"}]}`, 400, "ambiguous_json", ""},
		{"no messages", `{"model":"m"}`, 400, "invalid_request_body", "messages"},
		{"bad image part", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, 400, "invalid_request_body", "messages[0].content[0].image_url.url"},
		{"empty body", ``, 400, meter.CodeBodyRequired, ""},
		{"too large", `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("x", 3000) + `"}]}`, 413, meter.CodeTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := g.do(t, tt.body, map[string]string{"x-team": "blue"})
			assert.Equal(t, tt.status, resp.StatusCode, "%s", resp.Body)
			assert.Equal(t, tt.code, jsontest.Get(resp.Body, "error.code").Str())
			assert.Equal(t, tt.param, jsontest.Get(resp.Body, "error.param").Str())
			assert.Equal(t, "application/json", resp.Header.Get("content-type"))
		})
	}
	assert.Empty(t, g.up.requests())
	assert.Zero(t, g.ks.count(meter.PathReserve))
}

func TestApikeyIdentityQuota(t *testing.T) {
	ks := newKeystore(t)
	g := start(t, `{}`, ks, newBackend(t))
	resp := g.do(t, chatJSON+`}`, map[string]string{
		"x-tollgate-app":         "demo",
		"x-tollgate-product":     "chat",
		"x-tollgate-token-quota": "5000/1day/calendar;counted=completion;scope=chat:set:openai",
	})
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "5000", resp.Header.Get("x-ratelimit-limit-tokens"))
	assert.Equal(t, "4972", resp.Header.Get("x-ratelimit-remaining-tokens"), "completion tokens counted")
	key := counter.Key{App: "demo", Product: "chat", Operation: "set:openai", Kind: "completion_tokens"}
	assert.Equal(t, int64(28), ks.used(t, key, window.Spec{Limit: 5000, Interval: 1, Unit: window.Day, Kind: window.Calendar}))

	resp = g.do(t, chatJSON+`}`, map[string]string{"x-tollgate-app": "demo", "x-tollgate-token-quota": "garbage"})
	assert.Equal(t, 500, resp.StatusCode)
	assert.Equal(t, meter.CodeInvalidIdentity, jsontest.Get(resp.Body, "error.code").Str())
}

func TestUnmeteredAndUntouched(t *testing.T) {
	up := newBackend(t)
	g := start(t, `{}`, newKeystore(t), up)
	// No quota: metered for metrics only, no headers, no callouts.
	resp := g.do(t, chatJSON+`,"stream":true}`, nil)
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, withoutUsageChunk(t, up.usage), resp.Body)
	assert.Empty(t, resp.Header.Get("x-ratelimit-limit-tokens"))
	assert.Zero(t, g.ks.count(meter.PathReserve))
	l := meter.Labels{Model: "gpt-4o-mini", App: "_"}
	assert.Equal(t, uint64(43), g.counter(t, meter.TokenMetrics(l)[0]))
	assert.Equal(t, uint64(1), g.counter(t, meter.RequestsMetric(l, meter.OutcomeUnmetered)))

	// Other methods and paths pass untouched, body unread.
	ctx := context.Background()
	for _, r := range []struct{ method, path string }{{"GET", "/v1/models"}, {"POST", "/v1/other"}, {"GET", "/v1/chat/completions"}} {
		req, err := http.NewRequestWithContext(ctx, r.method, "http://gateway.local"+r.path, strings.NewReader("not json"))
		require.NoError(t, err)
		resp, err := g.vm.Do(ctx, req)
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode, r.path)
	}
}

func TestConcurrentStreamsNeverOvershoot(t *testing.T) {
	// 16 streams, each reserving prompt + 256 against 2000 tokens: at most
	// ⌊2000 / reservation⌋ are admitted; the rest get 429. The upstream holds
	// every admitted stream until all 16 are decided, so the reservations
	// truly overlap whatever the machine's scheduling.
	ks := newKeystore(t)
	up := newBackend(t)
	up.split = 50
	up.gate = make(chan struct{})
	g := start(t, staticConfig(2000, ""), ks, up)
	var wg sync.WaitGroup
	var refused atomic.Int64
	codes := make(chan int, 16)
	for range 16 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			resp, err := g.vm.Do(ctx, chatRequest(t, ctx, chatJSON+`,"stream":true}`, map[string]string{"x-team": "blue"}))
			if err != nil {
				codes <- 0
				return
			}
			if resp.StatusCode == 429 {
				refused.Add(1)
			}
			codes <- resp.StatusCode
		})
	}
	eventually(t, func() bool { return int64(up.count())+refused.Load() == 16 }, "all 16 streams decided")
	close(up.gate)
	wg.Wait()
	close(codes)
	n := map[int]int{}
	for c := range codes {
		n[c]++
	}
	assert.Equal(t, 16, n[200]+n[429], "%v", n)
	assert.Positive(t, n[429])
	eventually(t, func() bool { return g.vm.PendingCallouts() == 0 }, "callouts done")
	used := ks.used(t, teamKey("blue"), hourly(2000))
	assert.LessOrEqual(t, used, int64(2000))
	assert.Equal(t, int64(71*n[200]), used)
}

// TestPassthroughUsageChunkSplitAcrossCRLF checks the CRLF fixture too:
// the injected usage chunk is removed whatever the line endings.
func TestPassthroughUsageChunkSplitAcrossCRLF(t *testing.T) {
	up := newBackend(t)
	up.usage = fixture(t, "streams/openai_chat_crlf.sse")
	up.split = 5
	g := start(t, staticConfig(10000, ""), newKeystore(t), up)
	resp := g.do(t, chatJSON+`,"stream":true}`, map[string]string{"x-team": "blue"})
	require.Equal(t, 200, resp.StatusCode)
	rd := sse.NewReader(sse.Options{})
	evs, err := rd.Feed(resp.Body)
	require.NoError(t, err)
	for _, ev := range evs {
		assert.NotContains(t, string(ev.Data), `"choices":[]`)
	}
	assert.True(t, evs[len(evs)-1].IsDone())
	g.waitUsed(t, teamKey("blue"), hourly(10000), 71)
}

// TestPublicModelHeader: behind modelroute the body names the backend
// model; the public model header (trusted only with identity headers)
// labels the metrics and picks the price instead. The usage is the same.
func TestPublicModelHeader(t *testing.T) {
	const backendModel = "/gcs/google/gemma-3-1b-it"
	const pricing = `,"counted": "cost", "pricing": {"models": {"gemma-3-1b-it": {"input": 1000, "output": 4000}}, "default": {"input": 1, "output": 1}}`
	body := strings.Replace(chatJSON, `"model":"gpt-4o-mini"`, `"model":"`+backendModel+`"`, 1) + `}`
	tests := []struct {
		name      string
		extra     string
		headers   map[string]string
		wantModel string // the metric label's source
		wantPrice usage.Price
	}{
		{name: "public model labels and prices", extra: pricing,
			headers:   map[string]string{"x-team": "blue", "x-tollgate-public-model": "gemma-3-1b-it"},
			wantModel: "gemma-3-1b-it", wantPrice: usage.Price{Input: 1000, Output: 4000}},
		{name: "custom header name", extra: pricing + `,"public_model_header": "X-Public"`,
			headers:   map[string]string{"x-team": "blue", "x-public": "gemma-3-1b-it", "x-tollgate-public-model": "other"},
			wantModel: "gemma-3-1b-it", wantPrice: usage.Price{Input: 1000, Output: 4000}},
		{name: "without the header: the body's model", extra: pricing,
			headers:   map[string]string{"x-team": "blue"},
			wantModel: backendModel, wantPrice: usage.Price{Input: 1, Output: 1}},
		{name: "untrusted: a client's header is ignored", extra: pricing + `,"trust_identity_headers": false`,
			headers:   map[string]string{"x-team": "blue", "x-tollgate-public-model": "gemma-3-1b-it"},
			wantModel: backendModel, wantPrice: usage.Price{Input: 1, Output: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := start(t, staticConfig(1_000_000_000, tt.extra), newKeystore(t), newBackend(t))
			resp := g.do(t, body, tt.headers)
			require.Equal(t, 200, resp.StatusCode, "%s", resp.Body)
			reqs := g.up.requests()
			require.Len(t, reqs, 1)
			assert.Equal(t, backendModel, jsontest.Get(reqs[0], "model").Str(), "the body goes upstream unchanged")

			l := meter.Labels{Model: meter.LabelValue(tt.wantModel), App: "blue"}
			tm := meter.TokenMetrics(l)
			assert.Equal(t, uint64(43), g.counter(t, tm[0]), "prompt tokens under model %q", l.Model)
			assert.Equal(t, uint64(28), g.counter(t, tm[1]))
			assert.Equal(t, uint64(1), g.counter(t, meter.RequestsMetric(l, meter.OutcomeSettled)))
			want := usage.Charge(usage.MetricCost, usage.Usage{PromptTokens: 43, CompletionTokens: 28, TotalTokens: 71}, tt.wantPrice)
			key := counter.Key{App: "blue", Product: meter.DefaultStaticProduct, Kind: counter.Kind(meter.KindFor(usage.MetricCost))}
			g.waitUsed(t, key, hourly(1_000_000_000), want)
		})
	}
}
