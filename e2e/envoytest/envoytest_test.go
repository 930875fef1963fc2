package envoytest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// get sends a GET with optional headers and returns status, headers and body.
func get(t *testing.T, c *http.Client, url string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	return do(t, c, http.MethodGet, url, hdr, "")
}

func do(t *testing.T, c *http.Client, method, url string, hdr map[string]string, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

func decodeEcho(t *testing.T, body string) Echo {
	t.Helper()
	var e Echo
	require.NoError(t, json.Unmarshal([]byte(body), &e), "body: %s", body)
	return e
}

func TestBareEnvoyForwardsToUpstream(t *testing.T) {
	h1 := NewUpstream(t, WithName("h1"))
	h2 := NewUpstream(t, WithName("h2"), WithHTTP2())
	env := Start(t, Config{
		Clusters: []Cluster{h1.Cluster("h1"), h2.Cluster("h2")},
		Routes: []Route{
			{Prefix: "/h2/", Cluster: "h2"},
			{Prefix: "/", Cluster: "h1"},
		},
	})

	tests := []struct {
		name      string
		method    string
		path      string
		body      string
		upstream  *Upstream
		wantProto string
	}{
		{name: "http1 get", method: http.MethodGet, path: "/v1/models?x=1", upstream: h1, wantProto: "HTTP/1.1"},
		{name: "http1 post body", method: http.MethodPost, path: "/v1/chat/completions", body: `{"model":"m"}`, upstream: h1, wantProto: "HTTP/1.1"},
		{name: "h2c post body", method: http.MethodPost, path: "/h2/chat", body: strings.Repeat("x", 100_000), upstream: h2, wantProto: "HTTP/2.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.upstream.Count()
			status, hdr, body := do(t, env.Client(), tc.method, env.URL(tc.path), map[string]string{"x-test": tc.name}, tc.body)
			require.Equal(t, http.StatusOK, status, body)
			assert.Equal(t, tc.upstream.Name(), hdr.Get("x-upstream"))

			echo := decodeEcho(t, body)
			assert.Equal(t, tc.method, echo.Method)
			assert.Equal(t, tc.path, echo.Path)
			assert.Equal(t, tc.wantProto, echo.Proto)
			assert.Equal(t, tc.name, echo.Headers["x-test"])
			assert.NotEmpty(t, echo.Headers["x-request-id"], "Envoy adds a request id")
			assert.Equal(t, tc.body, echo.Body)

			reqs := tc.upstream.WaitRequests(t, before+1, 5*time.Second)
			last := reqs[len(reqs)-1]
			assert.Equal(t, tc.path, last.Path)
			assert.Equal(t, tc.name, last.Header.Get("x-test"))
			assert.Equal(t, tc.body, string(last.Body))
		})
	}
	env.RequireNoCrash(t)
}

func TestRoutesHeaderMatchAndDirectResponse(t *testing.T) {
	a := NewUpstream(t, WithName("a"))
	b := NewUpstream(t, WithName("b"))
	env := Start(t, Config{
		Clusters: []Cluster{a.Cluster("a"), b.Cluster("b")},
		Routes: []Route{
			{Path: "/teapot", Direct: &DirectResponse{Status: http.StatusTeapot, Body: "short and stout"}},
			{Prefix: "/", Headers: []HeaderMatch{{Name: "x-model", Exact: "big"}}, Cluster: "b"},
			{Prefix: "/", Headers: []HeaderMatch{{Name: "x-any", Present: true}}, Cluster: "b"},
			{Prefix: "/", Cluster: "a", Timeout: 5 * time.Second},
		},
	})
	tests := []struct {
		name       string
		path       string
		hdr        map[string]string
		wantStatus int
		wantBody   string
		want       string // upstream name; "" for a direct response
	}{
		{name: "default route", path: "/x", want: "a", wantStatus: 200},
		{name: "header exact", path: "/x", hdr: map[string]string{"x-model": "big"}, want: "b", wantStatus: 200},
		{name: "header exact mismatch", path: "/x", hdr: map[string]string{"x-model": "small"}, want: "a", wantStatus: 200},
		{name: "header present", path: "/x", hdr: map[string]string{"x-any": "1"}, want: "b", wantStatus: 200},
		{name: "direct response", path: "/teapot", wantStatus: http.StatusTeapot, wantBody: "short and stout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, body := get(t, env.Client(), env.URL(tc.path), tc.hdr)
			require.Equal(t, tc.wantStatus, status, body)
			assert.Equal(t, tc.want, hdr.Get("x-upstream"))
			if tc.wantBody != "" {
				assert.Equal(t, tc.wantBody, body)
			}
		})
	}
}

func TestStatsAndPrometheus(t *testing.T) {
	up := NewUpstream(t)
	env := Start(t, Config{
		Clusters: []Cluster{up.Cluster("backend")},
		// Pull the listener's stat prefix out as a label, the way Wasm
		// metrics carry their labels in the name.
		StatsTags: []StatsTag{{Name: "gate", Regex: `^listener\.((tollgate)\.)`}},
	})
	const n = 5
	for range n {
		status, _, body := get(t, env.Client(), env.URL("/count"), nil)
		require.Equal(t, http.StatusOK, status, body)
	}

	v, ok := env.StatsValue("cluster.backend.upstream_rq_total")
	require.True(t, ok)
	assert.Equal(t, uint64(n), v)
	_, ok = env.StatsValue("cluster.backend.no_such_stat")
	assert.False(t, ok)

	all, err := env.Stats()
	require.NoError(t, err)
	assert.Equal(t, uint64(n), all["http.ingress.downstream_rq_2xx"])

	m, err := env.StatsMatching(`^cluster\.backend\.upstream_rq_`)
	require.NoError(t, err)
	assert.Equal(t, uint64(n), m["cluster.backend.upstream_rq_200"])
	for k := range m {
		assert.True(t, strings.HasPrefix(k, "cluster.backend.upstream_rq_"), k)
	}

	got, ok := env.PromMetric("envoy_cluster_upstream_rq_total", map[string]string{"envoy_cluster_name": "backend"})
	require.True(t, ok)
	assert.Equal(t, float64(n), got)
	_, ok = env.PromMetric("envoy_cluster_upstream_rq_total", map[string]string{"envoy_cluster_name": "nope"})
	assert.False(t, ok)

	// The custom tag turned listener.tollgate.* into a label.
	cx, ok := env.PromMetric("envoy_listener_downstream_cx_total", map[string]string{"gate": "tollgate"})
	require.True(t, ok, "stats tag not applied")
	assert.GreaterOrEqual(t, cx, 1.0)

	// Histograms are merged on admin reads; poll until all requests show.
	env.WaitPromMetric(t, "envoy_http_downstream_rq_time_count",
		map[string]string{"envoy_http_conn_manager_prefix": HCMStatPrefix}, 10*time.Second,
		func(v float64) bool { return v == n })

	entries := env.WaitAccessLog(t, n, 5*time.Second)
	for _, e := range entries {
		assert.Equal(t, "/count", e.Path)
		assert.Equal(t, http.StatusOK, e.Status)
		assert.Equal(t, "backend", e.Upstream)
		assert.Equal(t, http.MethodGet, e.Method)
	}
}

func TestWorkerClientsReachDistinctWorkers(t *testing.T) {
	up := NewUpstream(t)
	env := Start(t, Config{Clusters: []Cluster{up.Cluster("backend")}})
	clients := env.WorkerClients(t, 2)
	require.Len(t, clients, 2)

	for w := range DefaultConcurrency {
		active, err := env.WorkerStat(w, "downstream_cx_active")
		require.NoError(t, err)
		assert.GreaterOrEqual(t, active, uint64(1), "worker %d holds no connection", w)
	}

	// Each worker has its own upstream connection pool, so sequential
	// requests from one pinned client reach the upstream over that worker's
	// connection: one remote address per client, different between clients.
	const perClient = 4
	remote := make([]map[string]bool, len(clients))
	for i, c := range clients {
		remote[i] = map[string]bool{}
		for range perClient {
			status, _, body := get(t, c, env.URL("/w"), nil)
			require.Equal(t, http.StatusOK, status, body)
			last, ok := up.Last()
			require.True(t, ok)
			remote[i][last.RemoteAddr] = true
		}
	}
	require.Len(t, remote[0], 1, "client 0 was served over several upstream connections")
	require.Len(t, remote[1], 1, "client 1 was served over several upstream connections")
	for addr := range remote[0] {
		assert.False(t, remote[1][addr], "both clients were served by the same worker")
	}

	// And each client kept its single downstream connection.
	entries := env.WaitAccessLog(t, 2*perClient, 5*time.Second)
	conns := map[int64]int{}
	for _, e := range entries {
		conns[e.ConnectionID]++
	}
	assert.Len(t, conns, 2)
	for id, n := range conns {
		assert.Equal(t, perClient, n, "connection %d", id)
	}
}

func TestStreamingUpstreamThroughEnvoy(t *testing.T) {
	release := make(chan struct{})
	gated := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "text/event-stream")
		rc := http.NewResponseController(w)
		_, _ = io.WriteString(w, "data: one\n\n")
		_ = rc.Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: two\n\n")
	})
	gate := NewUpstream(t, WithName("gate"), WithHandler(gated))
	paced := NewUpstream(t, WithName("paced"), WithHTTP2(),
		WithHandler(StreamHandler(http.Header{"content-type": {"text/event-stream"}},
			[]string{"data: a\n\n", "data: b\n\n", "data: [DONE]\n\n"}, 5*time.Millisecond)))
	env := Start(t, Config{
		Clusters: []Cluster{gate.Cluster("gate"), paced.Cluster("paced")},
		Routes:   []Route{{Prefix: "/gate", Cluster: "gate"}, {Prefix: "/", Cluster: "paced"}},
	})

	t.Run("first chunk arrives before the upstream finishes", func(t *testing.T) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, env.URL("/gate"), nil)
		require.NoError(t, err)
		resp, err := env.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		buf := make([]byte, len("data: one\n\n"))
		_, err = io.ReadFull(resp.Body, buf)
		require.NoError(t, err)
		assert.Equal(t, "data: one\n\n", string(buf))
		close(release)
		rest, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, "data: two\n\n", string(rest))
	})
	t.Run("paced chunks over h2c", func(t *testing.T) {
		status, hdr, body := get(t, env.Client(), env.URL("/sse"), nil)
		require.Equal(t, http.StatusOK, status)
		assert.Equal(t, "text/event-stream", hdr.Get("content-type"))
		assert.Equal(t, "data: a\n\ndata: b\n\ndata: [DONE]\n\n", body)
	})
}

func TestRestartKeepsListenerAddress(t *testing.T) {
	up := NewUpstream(t)
	env := Start(t, Config{Clusters: []Cluster{up.Cluster("backend")}})
	addr := env.ListenerAddr()
	status, _, _ := get(t, env.Client(), env.URL("/before"), nil)
	require.Equal(t, http.StatusOK, status)

	env.Restart(t)
	assert.Equal(t, addr, env.ListenerAddr())
	assert.True(t, env.Running())
	status, _, _ = get(t, env.Client(), env.URL("/after"), nil)
	require.Equal(t, http.StatusOK, status)
	v, ok := env.StatsValue("cluster.backend.upstream_rq_total")
	require.True(t, ok)
	assert.Equal(t, uint64(1), v, "stats start afresh after a restart")
}

func TestCustomYAML(t *testing.T) {
	env := Start(t, Config{
		YAML: `
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
static_resources:
  listeners:
  - name: custom
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: custom
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                direct_response: {status: 200, body: {inline_string: "dir={{.Dir}}"}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
`,
		ListenerName: "custom",
	})
	status, _, body := get(t, env.Client(), env.URL("/"), nil)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "dir="+env.Dir, body)
}

func TestAdminInterfaceIsLoopbackOnly(t *testing.T) {
	env := Start(t, Config{})
	assert.True(t, strings.HasPrefix(env.AdminAddr(), "127.0.0.1:"), env.AdminAddr())
	assert.True(t, strings.HasPrefix(env.ListenerAddr(), "127.0.0.1:"), env.ListenerAddr())
	body, err := env.AdminGet("/server_info")
	require.NoError(t, err)
	assert.Contains(t, body, `"concurrency": 2`)
	_, err = env.AdminGet("/no-such-admin-path")
	assert.Error(t, err)
	_, err = env.AdminPost("/logging?wasm=debug")
	require.NoError(t, err)
	assert.Empty(t, env.CrashLines())
	status, _, _ := get(t, env.Client(), env.URL("/"), nil)
	assert.Equal(t, http.StatusNotFound, status, "no routes: Envoy answers 404")
}

func TestFindEnvoy(t *testing.T) {
	t.Run("override must exist", func(t *testing.T) {
		t.Setenv(EnvEnvoy, filepath.Join(t.TempDir(), "nope"))
		_, err := FindEnvoy()
		require.Error(t, err)
		assert.Contains(t, err.Error(), EnvEnvoy)
	})
	t.Run("missing venv says make envoy", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n"), 0o644))
		sub := filepath.Join(dir, "a", "b")
		require.NoError(t, os.MkdirAll(sub, 0o755))
		t.Chdir(sub)
		t.Setenv(EnvEnvoy, "")
		root, err := RepoRoot()
		require.NoError(t, err)
		assert.Equal(t, dir, root)
		_, err = FindEnvoy()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "make envoy")
	})
	t.Run("build dir override", func(t *testing.T) {
		t.Setenv(EnvBuildDir, "/somewhere")
		d, err := BuildDir()
		require.NoError(t, err)
		assert.Equal(t, "/somewhere", d)
	})
}

func TestMeasureLatency(t *testing.T) {
	up := NewUpstream(t)
	env := Start(t, Config{Clusters: []Cluster{up.Cluster("backend")}})
	l, err := MeasureLatency(t.Context(), env.Client(), 20, GetRequest(env.URL("/lat")))
	require.NoError(t, err)
	assert.Equal(t, 20, l.N)
	assert.Equal(t, map[int]int{200: 20}, l.Status)
	assert.LessOrEqual(t, l.Min, l.Median)
	assert.LessOrEqual(t, l.Median, l.P99)
	assert.LessOrEqual(t, l.P99, l.Max)
	_, err = MeasureLatency(context.Background(), env.Client(), 0, GetRequest(env.URL("/")))
	assert.Error(t, err)
}

// BenchmarkBareEnvoy compares a request straight to the upstream with one
// through a bare Envoy in the same run; filter benchmarks add their filter as
// a third case.
func BenchmarkBareEnvoy(b *testing.B) {
	up := NewUpstream(b, WithRecordLimit(1))
	env := Start(b, Config{Clusters: []Cluster{up.Cluster("backend")}})
	b.Run("direct", func(b *testing.B) {
		BenchRequests(b, env.Client(), GetRequest(up.URL()+"/bench"))
	})
	b.Run("envoy", func(b *testing.B) {
		BenchRequests(b, env.Client(), GetRequest(env.URL("/bench")))
	})
}
