// Package picker tests the endpoint picker (build/picker.wasm) in real
// Envoy in front of simulated vLLM servers (mockllm's simulator): the EPP
// header contract with ORIGINAL_DST and with override_host fallbacks,
// subset hints, shedding under saturation, fail-open on stale metrics,
// LoRA affinity and an endpoint killed mid-run.
package picker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/filters/picker/pick"
	"github.com/tollgate/tollgate/mockllm"
)

const destHeader = "x-gateway-destination-endpoint"

// sim is one simulated model server, with what it received.
type sim struct {
	addr     string
	srv      *mockllm.Server
	hs       *httptest.Server
	posts    atomic.Int64
	scrapes  atomic.Int64 // GET /metrics
	mu       sync.Mutex
	lastDest string // the destination header of the last POST
	lastSeq  int64  // when it arrived, in arrival order over all sims
}

// arrivals orders POSTs over all simulators.
var arrivals atomic.Int64

// startSims serves n simulators on loopback; opts gives each one's options.
func startSims(t testing.TB, n int, opts func(i int) mockllm.SimOptions) []*sim {
	t.Helper()
	out := make([]*sim, n)
	for i := range out {
		o := opts(i)
		s := &sim{srv: mockllm.New(mockllm.Options{Models: []string{"m"}, Sim: &o})}
		s.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/metrics" {
				s.scrapes.Add(1)
			}
			if r.Method == http.MethodPost {
				s.posts.Add(1)
				s.mu.Lock()
				s.lastDest = r.Header.Get(destHeader)
				s.lastSeq = arrivals.Add(1)
				s.mu.Unlock()
			}
			s.srv.ServeHTTP(w, r)
		}))
		t.Cleanup(s.hs.Close)
		s.addr = strings.TrimPrefix(s.hs.URL, "http://")
		out[i] = s
	}
	return out
}

func (s *sim) dest() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastDest
}

func (s *sim) seq() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSeq
}

// same gives every simulator the same options.
func same(o mockllm.SimOptions) func(int) mockllm.SimOptions {
	return func(int) mockllm.SimOptions { return o }
}

// kill stops a simulator abruptly: open connections are dropped.
func (s *sim) kill() {
	s.hs.CloseClientConnections()
	s.hs.Close()
}

// pickerConfig is the filter configuration for sims with extra fields.
func pickerConfig(sims []*sim, extra string) string {
	var eps []string
	for _, s := range sims {
		eps = append(eps, fmt.Sprintf(`{"address":%q}`, s.addr))
	}
	return `{"scrape_cluster":"sim","scrape_interval":"50ms","pools":[{"name":"pool","models":["m"],"adapters":["ad-x","ad-y"],"endpoints":[` +
		strings.Join(eps, ",") + `]}]` + extra + `}`
}

// Envoy modes: one address (ORIGINAL_DST) or a list (override_host).
const (
	modeOriginalDst  = "original_dst"
	modeOverrideHost = "override_host"
)

// startEnvoy runs Envoy with the picker in front of sims.
func startEnvoy(t testing.TB, sims []*sim, mode, filterConfig string, extra ...envoytest.Cluster) *envoytest.Envoy {
	t.Helper()
	return startEnvoyWith(t, sims, mode, nil, filterConfig, extra...)
}

// startEnvoyChain runs Envoy with before ahead of the picker (single pick).
func startEnvoyChain(t testing.TB, sims []*sim, before envoytest.WasmFilter, filterConfig string) *envoytest.Envoy {
	t.Helper()
	return startEnvoyWith(t, sims, modeOriginalDst, []envoytest.WasmFilter{before}, filterConfig)
}

func startEnvoyWith(t testing.TB, sims []*sim, mode string, filters []envoytest.WasmFilter, filterConfig string, extra ...envoytest.Cluster) *envoytest.Envoy {
	t.Helper()
	cluster := map[string]any{
		"name":            "sim",
		"connect_timeout": "0.5s",
	}
	route := map[string]any{"timeout": "30s"}
	switch mode {
	case modeOriginalDst:
		cluster["type"] = "ORIGINAL_DST"
		cluster["lb_policy"] = "CLUSTER_PROVIDED"
		cluster["original_dst_lb_config"] = map[string]any{"use_http_header": true, "http_header_name": destHeader}
	case modeOverrideHost:
		var lbs []any
		for _, s := range sims {
			host, port, _ := strings.Cut(s.addr, ":")
			var p int
			fmt.Sscan(port, &p)
			lbs = append(lbs, map[string]any{"endpoint": map[string]any{"address": map[string]any{
				"socket_address": map[string]any{"address": host, "port_value": p}}}})
		}
		cluster["type"] = "STATIC"
		cluster["load_assignment"] = map[string]any{"cluster_name": "sim", "endpoints": []any{map[string]any{"lb_endpoints": lbs}}}
		cluster["load_balancing_policy"] = map[string]any{"policies": []any{map[string]any{"typed_extension_config": map[string]any{
			"name": "envoy.load_balancing_policies.override_host",
			"typed_config": map[string]any{
				"@type":                 "type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost",
				"override_host_sources": []any{map[string]any{"header": destHeader}},
				"fallback_policy": map[string]any{"policies": []any{map[string]any{"typed_extension_config": map[string]any{
					"name":         "envoy.load_balancing_policies.least_request",
					"typed_config": map[string]any{"@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest"},
				}}}},
			},
		}}}}
		route["retry_policy"] = map[string]any{"retry_on": "reset,connect-failure,refused-stream", "num_retries": 2}
	}
	if filterConfig != "" { // "" is the same Envoy without the picker
		filters = append(filters, envoytest.WasmFilter{
			Name: "picker", RootID: "picker", VMID: "picker",
			WasmPath:                    envoytest.WasmPath(t, "picker"),
			Configuration:               filterConfig,
			AllowOnHeadersStopIteration: true,
		})
	}
	var tags []envoytest.StatsTag
	for _, st := range pick.StatsTags() {
		tags = append(tags, envoytest.StatsTag{Name: st.Name, Regex: st.Regex})
	}
	return envoytest.Start(t, envoytest.Config{
		Filters:   filters,
		StatsTags: tags,
		Clusters:  extra,
		Routes:    []envoytest.Route{{Prefix: "/", Cluster: "sim", Extra: map[string]any{}}},
		Customize: func(b map[string]any) {
			sr := b["static_resources"].(map[string]any)
			sr["clusters"] = append(sr["clusters"].([]any), cluster)
			setRoute(b, route)
			logPick(b)
		},
	})
}

// hcm returns the generated HTTP connection manager's config.
func hcm(b map[string]any) map[string]any {
	l := b["static_resources"].(map[string]any)["listeners"].([]any)[0].(map[string]any)
	fc := l["filter_chains"].([]any)[0].(map[string]any)
	return fc["filters"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)
}

// logPick adds the picker's filter state to the access log as "pick".
func logPick(b map[string]any) {
	al := hcm(b)["access_log"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)
	al["log_format"].(map[string]any)["json_format"].(map[string]any)["pick"] = "%FILTER_STATE(wasm.tollgate.picker.pick:PLAIN)%"
}

// setRoute merges fields into the single route's "route" action.
func setRoute(b map[string]any, fields map[string]any) {
	vh := hcm(b)["route_config"].(map[string]any)["virtual_hosts"].([]any)[0].(map[string]any)
	r := vh["routes"].([]any)[0].(map[string]any)["route"].(map[string]any)
	for k, v := range fields {
		r[k] = v
	}
}

// result is one response as a test sees it.
type result struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// chat posts a chat completion.
func chat(t testing.TB, e *envoytest.Envoy, model, system, user string, maxTokens int, hdr map[string]string) result {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"model": model, "max_tokens": maxTokens,
		"messages": []any{map[string]any{"role": "system", "content": system}, map[string]any{"role": "user", "content": user}},
	})
	req, err := http.NewRequest(http.MethodPost, e.URL("/v1/chat/completions"), bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("content-type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.Client().Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// errorCode decodes an OpenAI-shaped error body's code.
func errorCode(t testing.TB, body []byte) string {
	t.Helper()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &e), "%s", body)
	require.NotEmpty(t, e.Error.Message)
	require.NotEmpty(t, e.Error.Type)
	return e.Error.Code
}

// waitScraped waits until the picker has stored metrics of every sim.
func waitScraped(t testing.TB, e *envoytest.Envoy, sims []*sim) {
	t.Helper()
	envoytest.Eventually(t, 20*time.Second, func() bool {
		stats, err := e.StatsMatching(`tollgate_picker\.kv_cache_permille`)
		return err == nil && len(stats) >= len(sims)
	}, "the picker never scraped every simulator")
}

// words is a prompt of n words, distinct per seed.
func words(seed string, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%s%d ", seed, i%10)
	}
	return b.String()
}
