// Package guard_test runs the guard filter end to end in real Envoy: the
// shipped chain of examples/envoy/gateway.yaml (apikey → quota → modelroute
// → tokencount, with the keystore) with guard inserted after modelroute,
// in front of the mock model server, and a moderation service speaking
// OpenAI's /v1/moderations (mockllm's, which can be switched off).
package guard_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/filters/guard/policy"
	"github.com/tollgate/tollgate/mockllm"
	"github.com/tollgate/tollgate/scripts/run-demo/demo"
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	defer keystoretest.RemoveBuilds()
	if _, err := keystoretest.Build(keystoretest.CLIPackage); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// Test hooks of the upstream.
const (
	// headerEmailStream makes the upstream stream a fixed answer that holds
	// an e-mail address, one byte per event, flushing after each ("json":
	// answer it as JSON; "ssn": stream ssnAnswer instead).
	headerEmailStream = "X-Test-Email-Stream"
	// streamedAnswer is that answer.
	streamedAnswer = "Sure, write to jane.doe@example.com and I will reply."
	// streamedUsage is the usage chunk the upstream sends after it.
	streamedPrompt, streamedCompletion = 11, 17
)

// testDataToken is the keystore's data-plane token in these tests.
const testDataToken = "e2e-guard-data-plane-token-0123456789"

// upstream is the model server behind the chain; it records the bodies it
// received.
type upstream struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies []string
}

func startUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{}
	mock := mockllm.New(mockllm.Options{Models: append(mockllm.DefaultModels(), "*")})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.bodies = append(u.bodies, string(body))
		u.mu.Unlock()
		switch r.Header.Get(headerEmailStream) {
		case "":
		case "json":
			answerJSON(w)
			return
		case "ssn":
			streamText(w, ssnAnswer)
			return
		default:
			streamText(w, streamedAnswer)
			return
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		mock.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// ssnAnswer is a streamed answer that a blocking response rule stops.
const ssnAnswer = "Your number is 536-22-1234, keep it safe."

// answerJSON writes a chat completion whose content holds an e-mail.
func answerJSON(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"id":"chatcmpl-guard","object":"chat.completion","created":1767225600,"model":"llama-3.1-8b",`+
		`"choices":[{"index":0,"message":{"role":"assistant","content":"Mail \"jane.doe@example.com\" today."},"finish_reason":"stop"}],`+
		`"usage":{"prompt_tokens":11,"completion_tokens":17,"total_tokens":28}}`)
}

// streamText writes text one byte per SSE event, then a finish chunk, a
// usage chunk and [DONE].
func streamText(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	ev := func(data string) {
		io.WriteString(w, "data: "+data+"\n\n")
		_ = rc.Flush()
	}
	const head = `{"id":"chatcmpl-guard","object":"chat.completion.chunk","created":1767225600,"model":"llama-3.1-8b","choices":`
	ev(head + `[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`)
	for i := 0; i < len(text); i++ {
		ev(head + `[{"index":0,"delta":{"content":` + strconv.Quote(text[i:i+1]) + `},"finish_reason":null}]}`)
	}
	ev(head + `[{"index":0,"delta":{},"finish_reason":"stop"}]}`)
	ev(head + fmt.Sprintf(`[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`,
		streamedPrompt, streamedCompletion, streamedPrompt+streamedCompletion))
	ev("[DONE]")
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.bodies)
}

func (u *upstream) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.bodies) == 0 {
		return ""
	}
	return u.bodies[len(u.bodies)-1]
}

// moderator is the moderation service: mockllm's /v1/moderations, or 503
// while down; it counts the checks it answered.
type moderator struct {
	srv  *httptest.Server
	down atomic.Bool
	hits atomic.Int64
}

func startModerator(t testing.TB) *moderator {
	t.Helper()
	m := &moderator{}
	mock := mockllm.New(mockllm.Options{})
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.down.Load() {
			http.Error(w, "moderation is down", http.StatusServiceUnavailable)
			return
		}
		m.hits.Add(1)
		mock.ServeHTTP(w, r)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

// stack is the running gateway.
type stack struct {
	envoy *envoytest.Envoy
	up    *upstream
	mod   *moderator
	keys  map[string]string // app → key
}

func (s *stack) url(path string) string { return "http://" + s.envoy.ListenerAddr() + path }

func hostPort(t testing.TB, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return h, n
}

// startStack starts keystore, upstream, moderator and Envoy with the
// example chain plus guard.
func startStack(t testing.TB) *stack {
	t.Helper()
	ks := keystoretest.Start(t, keystoretest.Options{DataToken: testDataToken})
	up := startUpstream(t)
	mod := startModerator(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := os.ReadFile(filepath.Join("testdata", "products.yaml"))
	require.NoError(t, err)
	kc := ks.Client(t)
	require.NoError(t, demo.ApplyProducts(ctx, kc, "testdata/products.yaml", raw))
	s := &stack{up: up, mod: mod, keys: map[string]string{}}
	for app, product := range map[string]string{"g": "guarded", "go": "guarded-open"} {
		k, err := demo.IssueKey(ctx, kc, demo.Account{Developer: "guard@tollgate.test", App: app, Products: []string{product}})
		require.NoError(t, err)
		s.keys[app] = k.Secret
	}
	host, port := hostPort(t, up.srv.Listener.Addr().String())
	yml := renderWithGuard(t, ks.DataAddr(), demo.Upstream{Host: host, Port: port}, mod.srv.Listener.Addr().String())
	s.envoy = envoytest.Start(t, envoytest.Config{YAML: yml, ListenerName: "gateway", StartTimeout: 3 * time.Minute})
	return s
}

// renderWithGuard renders examples/envoy/gateway.yaml for the test and
// inserts the guard filter after modelroute, the moderation cluster, the
// guard's stats tags and its access-log field.
func renderWithGuard(t testing.TB, ksData string, up demo.Upstream, moderation string) string {
	t.Helper()
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	src, err := os.ReadFile(filepath.Join(root, "examples", "envoy", "gateway.yaml"))
	require.NoError(t, err)
	buildDir, err := envoytest.BuildDir()
	require.NoError(t, err)
	buildDir, err = filepath.Abs(buildDir)
	require.NoError(t, err)
	for _, f := range []string{"apikey", "quota", "modelroute", "tokencount", "guard"} {
		envoytest.WasmPath(t, f)
	}
	out, err := demo.Render(src, demo.RenderOptions{
		Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Keystore: ksData, Upstream: up,
		BuildDir: buildDir, AccessLog: "{{.AccessLog}}", DataToken: testDataToken,
	})
	require.NoError(t, err)
	guardCfg, err := os.ReadFile(filepath.Join("testdata", "guard.json"))
	require.NoError(t, err)

	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(out, &doc))
	// stats tags
	sc := doc["stats_config"].(map[string]any)
	tags, _ := sc["stats_tags"].([]any)
	for _, tg := range policy.StatsTags() {
		tags = append(tags, map[string]any{"tag_name": tg[0], "regex": tg[1]})
	}
	sc["stats_tags"] = tags
	static := doc["static_resources"].(map[string]any)
	// moderation cluster
	mh, mp := hostPort(t, moderation)
	static["clusters"] = append(static["clusters"].([]any), map[string]any{
		"name": "moderation", "type": "STATIC", "connect_timeout": "1s",
		"load_assignment": map[string]any{"cluster_name": "moderation", "endpoints": []any{map[string]any{
			"lb_endpoints": []any{map[string]any{"endpoint": map[string]any{"address": map[string]any{
				"socket_address": map[string]any{"address": mh, "port_value": mp}}}}}}}},
	})
	// the guard filter after modelroute, and its access-log field
	hcm := static["listeners"].([]any)[0].(map[string]any)["filter_chains"].([]any)[0].(map[string]any)["filters"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)
	alog := hcm["access_log"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)["log_format"].(map[string]any)["json_format"].(map[string]any)
	alog["guard"] = "%FILTER_STATE(wasm.tollgate.guard.decisions:PLAIN)%"
	var filters []any
	for _, f := range hcm["http_filters"].([]any) {
		filters = append(filters, f)
		if f.(map[string]any)["name"] == "modelroute" {
			filters = append(filters, map[string]any{
				"name": "guard",
				"typed_config": map[string]any{
					"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
					"config": map[string]any{
						"name": "guard", "root_id": "guard", "allow_on_headers_stop_iteration": true,
						"vm_config": map[string]any{"vm_id": "tollgate-guard", "runtime": "envoy.wasm.runtime.v8",
							"code": map[string]any{"local": map[string]any{"filename": filepath.Join(buildDir, "guard.wasm")}}},
						"configuration": map[string]any{"@type": "type.googleapis.com/google.protobuf.StringValue", "value": string(guardCfg)},
					},
				},
			})
		}
	}
	require.Len(t, filters, len(hcm["http_filters"].([]any))+1, "modelroute is in the example chain")
	hcm["http_filters"] = filters
	b, err := yaml.Marshal(doc)
	require.NoError(t, err)
	return string(b)
}
