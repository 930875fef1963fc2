package envoytest

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/internal/tree"
)

func readFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return string(b)
}

func TestParsePrometheus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Sample
		wantErr string
	}{
		{name: "empty", in: "", want: nil},
		{name: "comments only", in: "# TYPE x counter\n# HELP x y\n\n", want: nil},
		{name: "no labels", in: "up 1\n", want: []Sample{{Name: "up", Labels: map[string]string{}, Value: 1}}},
		{name: "labels and timestamp", in: `rq_total{cluster="a",code="200"} 7 1700000000` + "\n",
			want: []Sample{{Name: "rq_total", Labels: map[string]string{"cluster": "a", "code": "200"}, Value: 7}}},
		{name: "escaped label value", in: `m{v="a\"b\\c\nd"} 2.5`,
			want: []Sample{{Name: "m", Labels: map[string]string{"v": "a\"b\\c\nd"}, Value: 2.5}}},
		{name: "braces and commas in value", in: `m{v="x,}y",w="z"} 3`,
			want: []Sample{{Name: "m", Labels: map[string]string{"v": "x,}y", "w": "z"}, Value: 3}}},
		{name: "trailing comma", in: `m{a="1",} 4`, want: []Sample{{Name: "m", Labels: map[string]string{"a": "1"}, Value: 4}}},
		{name: "infinity bucket", in: `h_bucket{le="+Inf"} +Inf`,
			want: []Sample{{Name: "h_bucket", Labels: map[string]string{"le": "+Inf"}, Value: math.Inf(1)}}},
		{name: "no value", in: "m{a=\"1\"}", wantErr: "want a value"},
		{name: "bad value", in: "m abc", wantErr: "value \"abc\""},
		{name: "unterminated label", in: `m{a="1} 2`, wantErr: "unterminated"},
		{name: "label without quotes", in: `m{a=1} 2`, wantErr: `want ="`},
		{name: "no name", in: `{a="1"} 2`, wantErr: "no metric name"},
		{name: "junk after label", in: `m{a="1" b="2"} 2`, wantErr: "want , or }"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePrometheus(tc.in)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParsePrometheusEnvoyFixture(t *testing.T) {
	samples, err := ParsePrometheus(readFixture(t, "prometheus.txt"))
	require.NoError(t, err)
	rq := FindSamples(samples, "envoy_cluster_upstream_rq_total", map[string]string{"envoy_cluster_name": "backend"})
	require.Len(t, rq, 1)
	assert.Equal(t, 5.0, rq[0].Value)
	buckets := FindSamples(samples, "envoy_http_downstream_rq_time_bucket", map[string]string{"envoy_http_conn_manager_prefix": "ingress"})
	assert.Len(t, buckets, 3)
	custom := FindSamples(samples, "tollgate_requests_total", nil)
	require.Len(t, custom, 2, "both label sets")
	assert.Empty(t, FindSamples(samples, "tollgate_requests_total", map[string]string{"model": "nope"}))
}

func TestParseStats(t *testing.T) {
	got, err := ParseStats(readFixture(t, "stats.txt"))
	require.NoError(t, err)
	assert.Equal(t, uint64(5), got["cluster.backend.upstream_rq_total"])
	assert.Equal(t, uint64(1), got["listener.tollgate.worker_1.downstream_cx_active"])
	_, isHistogram := got["http.ingress.downstream_rq_time"]
	assert.False(t, isHistogram)

	_, err = ParseStats("no separator here\n")
	assert.Error(t, err)
}

func TestDecodeStatsJSON(t *testing.T) {
	got, err := decodeStatsJSON([]byte(readFixture(t, "stats.json")))
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{
		"cluster.backend.upstream_rq_total": 5,
		"server.live":                       1,
	}, got)
	_, err = decodeStatsJSON([]byte(`{"stats":[{"name":"x","value":-1}]}`))
	assert.Error(t, err)
	_, err = decodeStatsJSON([]byte(`not json`))
	assert.Error(t, err)
}

func TestLogEntriesReassemblesAGoCrash(t *testing.T) {
	entries := LogEntries(readFixture(t, "crash.log"))
	require.Len(t, entries, 5, "two config lines, the stderr crash, Envoy's failure with its backtrace, the admin line")
	crash := entries[2]
	assert.Len(t, crash.Lines, 24)
	assert.True(t, strings.HasSuffix(crash.Text,
		"wasm log mini mini mini: panic: miniplugin: deliberate trap\n\ngoroutine 1 [running]:main.onRequestHeaders(0x2, 0x7, 0x1)\t"+
			"github.com/tollgate/tollgate/e2e/envoytest/testdata/miniplugin/main.go:92 +0xd\n"), crash.Text)
	failure := entries[3]
	assert.Contains(t, failure.Text, "Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable\nProxy-Wasm plugin in-VM backtrace:")
	assert.Contains(t, failure.Text, "4:  0x11b42e - proxy_on_request_headers")

	got := MatchLines(readFixture(t, "crash.log"), crashPatterns)
	assert.Equal(t, []string{crash.Text, failure.Text}, got)
}

func TestMatchLinesFindsCrashes(t *testing.T) {
	const wasmLog = "[2026-01-01 00:00:00.000][7][error][wasm] [source/extensions/common/wasm/context.cc:1157] wasm log r v: "
	const envoyLog = "[2026-01-01 00:00:00.000][7][%s][%s] [source/x.cc:1] "
	tests := []struct {
		name  string
		log   string
		crash bool
	}{
		{name: "plugin info", log: strings.Replace(wasmLog, "error", "info", 1) + "configured", crash: false},
		{name: "recovered panic", log: wasmLog + "recovered panic in on_request_headers: boom", crash: false},
		{name: "warning", log: fmt.Sprintf(envoyLog, "warning", "main") + "There is no configured limit", crash: false},
		{name: "failed callback", log: fmt.Sprintf(envoyLog, "error", "wasm") + "Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable", crash: true},
		{name: "failed initialize", log: fmt.Sprintf(envoyLog, "error", "wasm") + "Function: _initialize failed", crash: true},
		{name: "load failure", log: fmt.Sprintf(envoyLog, "critical", "wasm") + "Plugin w failed to load", crash: true},
		{name: "go panic", log: wasmLog + "panic: \n" + wasmLog + "runtime error: index out of range", crash: true},
		{name: "go fatal error", log: wasmLog + "fatal error: \n" + wasmLog + "out of memory", crash: true},
		{name: "poll_oneoff", log: wasmLog + "poll_oneoff failed", crash: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := MatchLines(tc.log+"\n", crashPatterns)
			if tc.crash {
				assert.Len(t, got, 1)
			} else {
				assert.Empty(t, got)
			}
		})
	}
	assert.Len(t, MatchLines("a\nb x\nc x\n", []*regexp.Regexp{regexp.MustCompile(`x$`)}), 1,
		"continuation lines belong to one entry")
}

func FuzzLogEntries(f *testing.F) {
	f.Add(readFixture(f, "crash.log"))
	f.Add("[a][1][error][wasm] [s] wasm log x: \n[a][1][error][wasm] [s] wasm log x: y\ncontinued\n")
	f.Fuzz(func(t *testing.T, in string) {
		lines := 0
		for _, e := range LogEntries(in) {
			require.NotEmpty(t, e.Lines)
			lines += len(e.Lines)
		}
		sc := bufio.NewScanner(strings.NewReader(in))
		sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
		want := 0
		for sc.Scan() {
			want++
		}
		require.Equal(t, want, lines, "every physical line lands in exactly one entry")
	})
}

func TestBootstrapRendering(t *testing.T) {
	cfg := Config{
		Filters: []WasmFilter{{
			Name: "apikey", RootID: "root", VMID: "tollgate", WasmPath: "/b/apikey.wasm",
			Configuration: `{"header":"x-api-key","quote":"\""}`, AllowOnHeadersStopIteration: true,
			FailurePolicy: "FAIL_OPEN",
		}},
		Routes: []Route{
			{Prefix: "/v1/", Headers: []HeaderMatch{{Name: "x-model", Exact: "m"}}, Cluster: "b", RequestBodyBufferLimit: 4096, Timeout: 1500 * time.Millisecond},
			{Path: "/health", Direct: &DirectResponse{Status: 200, Body: "ok"}},
		},
		Clusters:            []Cluster{{Name: "b", Addr: "127.0.0.1:9000", HTTP2: true}},
		StatsTags:           []StatsTag{{Name: "model", Regex: `^tollgate\.(model\.([^.]+)\.)`}},
		ListenerBufferLimit: 65536,
	}
	out, err := cfg.render(TemplateData{AccessLog: "/tmp/a.log"}, 0)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(out, &doc))

	listener := tree.Dig(t, doc, "static_resources", "listeners", 0).(map[string]any)
	assert.Equal(t, map[string]any{"exact_balance": map[string]any{}}, listener["connection_balance_config"])
	assert.Equal(t, 65536, listener["per_connection_buffer_limit_bytes"])
	assert.Equal(t, "127.0.0.1", tree.Dig(t, listener, "address", "socket_address", "address"))
	hcm := tree.Dig(t, listener, "filter_chains", 0, "filters", 0, "typed_config")
	plugin := tree.Dig(t, hcm, "http_filters", 0, "typed_config", "config")
	assert.Equal(t, cfg.Filters[0].Configuration, tree.Dig(t, plugin, "configuration", "value"), "plugin configuration survives YAML quoting")
	assert.Equal(t, true, tree.Dig(t, plugin, "allow_on_headers_stop_iteration"))
	assert.Equal(t, "FAIL_OPEN", tree.Dig(t, plugin, "failure_policy"))
	assert.Equal(t, "tollgate", tree.Dig(t, plugin, "vm_config", "vm_id"))
	assert.Equal(t, "/b/apikey.wasm", tree.Dig(t, plugin, "vm_config", "code", "local", "filename"))
	assert.Equal(t, "envoy.filters.http.router", tree.Dig(t, hcm, "http_filters", 1, "name"), "router is last")
	route := tree.Dig(t, hcm, "route_config", "virtual_hosts", 0, "routes", 0)
	assert.Equal(t, 4096, tree.Dig(t, route, "request_body_buffer_limit"))
	assert.Equal(t, "1.5s", tree.Dig(t, route, "route", "timeout"))
	assert.Equal(t, "m", tree.Dig(t, route, "match", "headers", 0, "string_match", "exact"))
	assert.Equal(t, "/health", tree.Dig(t, hcm, "route_config", "virtual_hosts", 0, "routes", 1, "match", "path"))
	cluster := tree.Dig(t, doc, "static_resources", "clusters", 0)
	assert.NotNil(t, tree.Dig(t, cluster, "typed_extension_protocol_options",
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions", "explicit_http_config", "http2_protocol_options"))
	assert.Equal(t, "model", tree.Dig(t, doc, "stats_config", "stats_tags", 0, "tag_name"))
	assert.Equal(t, "127.0.0.1", tree.Dig(t, doc, "admin", "address", "socket_address", "address"))
}

func TestBootstrapRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "filter without path", cfg: Config{Filters: []WasmFilter{{Name: "x"}}}, wantErr: "WasmPath"},
		{name: "route without target", cfg: Config{Routes: []Route{{Prefix: "/"}}}, wantErr: "Cluster or a Direct"},
		{name: "route with both targets", cfg: Config{Routes: []Route{{Cluster: "a", Direct: &DirectResponse{Status: 200}}}}, wantErr: "not both"},
		{name: "path and prefix", cfg: Config{Routes: []Route{{Path: "/a", Prefix: "/", Cluster: "a"}}}, wantErr: "not both"},
		{name: "cluster without address", cfg: Config{Clusters: []Cluster{{Name: "a"}}}, wantErr: "Addr"},
		{name: "cluster bad address", cfg: Config{Clusters: []Cluster{{Name: "a", Addr: "nope"}}}, wantErr: "address"},
		{name: "header match without name", cfg: Config{Routes: []Route{{Cluster: "a", Headers: []HeaderMatch{{Exact: "x"}}}}}, wantErr: "Name"},
		{name: "stats tag without regex", cfg: Config{StatsTags: []StatsTag{{Name: "a"}}}, wantErr: "Regex"},
		{name: "bad custom template", cfg: Config{YAML: "{{.Nope}}"}, wantErr: "custom YAML"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.render(TemplateData{}, 0)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func FuzzParsePrometheus(f *testing.F) {
	f.Add(readFixture(f, "prometheus.txt"))
	f.Add(`m{a="x\"y",b="\\"} 1e3`)
	f.Add("m{a=\"1\"")
	f.Fuzz(func(t *testing.T, in string) {
		samples, err := ParsePrometheus(in)
		if err != nil {
			return
		}
		for _, s := range samples {
			require.NotEmpty(t, s.Name)
			require.NotContains(t, s.Name, " ")
			require.NotNil(t, s.Labels)
		}
	})
}

func FuzzParseStats(f *testing.F) {
	f.Add(readFixture(f, "stats.txt"))
	f.Add("a: 1\nb: P0(nan,0)\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseStats(in)
		if err != nil {
			return
		}
		for name := range got {
			require.NotEmpty(t, name)
			require.False(t, strings.Contains(name, "\n"))
		}
	})
}

func TestDiagnosticsDropStartupListings(t *testing.T) {
	log := strings.Join([]string{
		"[t][1][info][main] [source/server/server.cc:465] statically linked extensions:",
		"[t][1][info][main] [source/server/server.cc:467]   envoy.filters.http: envoy.buffer",
		"[t][1][info][main] [source/server/server.cc:547]   request header map: 648 bytes",
		"[t][1][error][wasm] [source/x.cc:1] kept",
	}, "\n")
	assert.Equal(t, "[t][1][info][main] [source/server/server.cc:465] statically linked extensions:\n[t][1][error][wasm] [source/x.cc:1] kept",
		withoutListings(log))
}
