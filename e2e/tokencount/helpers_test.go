// Package tokencount tests the tokencount filter (build/tokencount.wasm) in
// real Envoy with two workers, in front of the real counter engine
// (`tollgate serve` with an embedded store, reached over the keystore
// cluster) and a loopback OpenAI-compatible backend that replays recorded
// streams with realistic pacing: exact usage for JSON and streamed
// answers, the rate-limit headers, 32 concurrent streams against a budget
// (no overshoot), release on client disconnect, metrics, access-log filter
// state, and time to first token against bare Envoy.
package tokencount

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/e2e/tokencount/tokentest"
	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/internal/jsontest"
)

func TestMain(m *testing.M) { os.Exit(keystoretest.Main(m)) }

// fixture reads one of the usage package's recorded answers.
func fixture(t testing.TB, path string) []byte {
	t.Helper()
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(root, "filters/tokencount/usage/testdata", path))
	require.NoError(t, err)
	return b
}

// backend is an OpenAI-compatible upstream replaying recorded answers. A
// streamed request gets the recorded stream (with the usage chunk when it
// asks for include_usage) one event at a time: the first after
// x-test-first-ms (default 20 ms, the prefill), then one every
// x-test-pace-ms (default 10 ms). Other requests get the recorded JSON
// completion.
type backend struct {
	json           []byte
	usage, noUsage [][]byte
}

func newBackend(t testing.TB) *backend {
	t.Helper()
	return &backend{
		json:    fixture(t, "responses/chat_completion.json"),
		usage:   events(fixture(t, "streams/openai_chat_usage.sse")),
		noUsage: events(fixture(t, "streams/openai_chat_no_usage.sse")),
	}
}

// events cuts an LF stream into its event blocks.
func events(s []byte) [][]byte {
	var out [][]byte
	for len(s) > 0 {
		i := bytes.Index(s, []byte("\n\n"))
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i+2])
		s = s[i+2:]
	}
	return out
}

func headerMs(r *http.Request, name string, def time.Duration) time.Duration {
	if v, err := strconv.Atoi(r.Header.Get(name)); err == nil && v >= 0 {
		return time.Duration(v) * time.Millisecond
	}
	return def
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if !jsontest.Get(body, "stream").Bool() {
		w.Header().Set("content-type", "application/json")
		w.Header().Set("content-length", strconv.Itoa(len(b.json)))
		_, _ = w.Write(b.json)
		return
	}
	evs := b.noUsage
	if jsontest.Get(body, "stream_options.include_usage").Bool() {
		evs = b.usage
	}
	first, pace := headerMs(r, "x-test-first-ms", 20*time.Millisecond), headerMs(r, "x-test-pace-ms", 10*time.Millisecond)
	w.Header().Set("content-type", "text/event-stream")
	w.Header().Set("cache-control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	timer := time.NewTimer(first)
	defer timer.Stop()
	for _, ev := range evs {
		select {
		case <-r.Context().Done():
			return
		case <-timer.C:
		}
		if _, err := w.Write(ev); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		timer.Reset(pace)
	}
}

// accessLogFields add the filter state to the harness's JSON access log.
var accessLogFields = map[string]string{
	"prompt_tokens":     meter.StatePromptTokens,
	"completion_tokens": meter.StateCompletionTokens,
	"total_tokens":      meter.StateTotalTokens,
	"reserved":          meter.StateReserved,
	"charged":           meter.StateCharged,
	"token_source":      meter.StateSource,
	"model":             meter.StateModel,
}

func addAccessLogFields(b map[string]any) {
	for _, l := range b["static_resources"].(map[string]any)["listeners"].([]any) {
		chain := l.(map[string]any)["filter_chains"].([]any)[0].(map[string]any)
		hcm := chain["filters"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)
		for _, al := range hcm["access_log"].([]any) {
			f := al.(map[string]any)["typed_config"].(map[string]any)["log_format"].(map[string]any)["json_format"].(map[string]any)
			for k, state := range accessLogFields {
				f[k] = "%FILTER_STATE(wasm." + state + ":PLAIN)%"
			}
		}
	}
}

// accessLog reads the raw JSON access log lines.
func accessLog(t testing.TB, env *envoytest.Envoy) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(env.AccessLogPath)
	require.NoError(t, err)
	var out []map[string]any
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(line, &m), "%s", line)
		out = append(out, m)
	}
	return out
}

// filterConfig meters every request by its x-team header: 1M tokens an hour
// by default, with small budgets for some teams. No apikey filter runs in
// front, so identity headers are not trusted.
const filterConfig = `{
  "keystore": {"cluster": "keystore", "timeout": "2s"},
  "trust_identity_headers": false,
  "static_quota": {
    "header": "x-team", "limit": 1000000, "time_unit": "hour",
    "overrides": {
      "burst": {"limit": 1000, "time_unit": "hour"},
      "tiny":  {"limit": 100,  "time_unit": "hour"}
    }
  }
}`

// limits mirrors filterConfig.
func limitOf(team string) int64 {
	switch team {
	case "burst":
		return 1000
	case "tiny":
		return 100
	}
	return 1000000
}

// gateways starts Envoy with the tokencount filter and, when bare is true,
// a second Envoy without it, both routing to the same backend.
func startGateway(t testing.TB, up *envoytest.Upstream, ks *tokentest.Keystore, withFilter bool) *envoytest.Envoy {
	t.Helper()
	cfg := envoytest.Config{
		Clusters:  []envoytest.Cluster{up.Cluster("backend"), {Name: "keystore", Addr: ks.DataAddr()}},
		Routes:    []envoytest.Route{{Prefix: "/", Cluster: "backend", Timeout: 30 * time.Second}},
		StatsTags: tokentest.StatsTags(),
		Customize: addAccessLogFields,
	}
	if withFilter {
		cfg.Filters = []envoytest.WasmFilter{{
			Name:                        "tokencount",
			RootID:                      "tokencount",
			VMID:                        "tokencount",
			WasmPath:                    envoytest.WasmPath(t, "tokencount"),
			Configuration:               filterConfig,
			AllowOnHeadersStopIteration: true,
		}}
	}
	return envoytest.Start(t, cfg)
}

// chatBody is the recorded request the fixtures answer (43 prompt tokens).
const chatBody = tokentest.ChatBody

func chatRequest(t testing.TB, ctx context.Context, url string, stream bool, headers map[string]string) *http.Request {
	t.Helper()
	body := chatBody + `}`
	if stream {
		body = chatBody + `,"stream":true}`
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("content-type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return req
}
