// Package shipped tests the shipped gateway configuration
// (examples/envoy/gateway.yaml, as `make run` renders it) in real Envoy for
// what Envoy itself does there: path normalisation, header limits, OpenAI-shaped
// local replies, identity headers removed before the upstream, the keystore's
// data-plane token, and VMs that heal after a trap (FAIL_RELOAD).
package shipped

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/internal/tree"
	"github.com/tollgate/tollgate/mockllm"
	"github.com/tollgate/tollgate/scripts/run-demo/demo"
)

func TestMain(m *testing.M) { os.Exit(keystoretest.Main(m)) }

// dataToken is the keystore's data-plane token in these tests.
const dataToken = "shipped-data-plane-token-0123456789"

// seen is one request as the model server received it.
type seen struct {
	Method, Path string
	Header       http.Header
}

// upstream is the demo model server behind the chain, recording every
// request it receives.
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func startUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{}
	mock := mockllm.New(mockllm.Options{Models: mockllm.DefaultModels()})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{r.Method, r.URL.RequestURI(), r.Header.Clone()})
		u.mu.Unlock()
		mock.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// since returns the requests received after the first n.
func (u *upstream) since(n int) []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.reqs[n:]...)
}

// count is how many requests the upstream received so far.
func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// gateway is the running shipped chain.
type gateway struct {
	envoy    *envoytest.Envoy
	keystore *keystoretest.Server
	up       *upstream
	key      string
}

// startGateway renders examples/envoy/gateway.yaml as `make run` does (with
// the data-plane token in the filters' VM environment) and puts the
// conformance plugin in front of the chain, configured with the failure
// policy the shipped filters use, so a test can make a VM trap.
func startGateway(t *testing.T) *gateway {
	t.Helper()
	ks := keystoretest.Start(t, keystoretest.Options{DataToken: dataToken})
	up := startUpstream(t)
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	src, err := os.ReadFile(filepath.Join(root, "examples", "envoy", "gateway.yaml"))
	require.NoError(t, err)
	buildDir, err := envoytest.BuildDir()
	require.NoError(t, err)
	buildDir, err = filepath.Abs(buildDir)
	require.NoError(t, err)
	for _, f := range []string{"tollgate", "conformance"} {
		envoytest.WasmPath(t, f)
	}
	host, port := hostPort(t, up.srv.Listener.Addr().String())
	out, err := demo.Render(src, demo.RenderOptions{
		Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Keystore: ks.DataAddr(),
		Upstream: demo.Upstream{Host: host, Port: port}, BuildDir: buildDir,
		AccessLog: "{{.AccessLog}}", DataToken: dataToken,
	})
	require.NoError(t, err)
	yml := withTrapPlugin(t, out, buildDir)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	products := filepath.Join(root, "examples", "demo-products.yaml")
	raw, err := os.ReadFile(products)
	require.NoError(t, err)
	admin := ks.Client(t)
	require.NoError(t, demo.ApplyProducts(ctx, admin, products, raw))
	key, err := demo.IssueKey(ctx, admin, demo.Account{Developer: "ada@example.com", App: "shipped", Products: []string{"demo"}})
	require.NoError(t, err)
	e := envoytest.Start(t, envoytest.Config{YAML: yml, ListenerName: "gateway", StartTimeout: 3 * time.Minute})
	return &gateway{envoy: e, keystore: ks, up: up, key: key.Secret}
}

// withTrapPlugin inserts the conformance plugin as the first HTTP filter,
// with the first shipped filter's failure policy and reload backoff.
func withTrapPlugin(t *testing.T, rendered []byte, buildDir string) string {
	t.Helper()
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(rendered, &doc))
	hcm := tree.Dig(t, doc, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config").(map[string]any)
	filters := hcm["http_filters"].([]any)
	policy := tree.Dig(t, filters[0], "typed_config", "config", "failure_policy")
	reload := tree.Dig(t, filters[0], "typed_config", "config", "reload_config")
	trap := map[string]any{
		"name": "conformance",
		"typed_config": map[string]any{
			"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
			"config": map[string]any{
				"name": "conformance", "root_id": "conformance", "failure_policy": policy, "reload_config": reload,
				"vm_config": map[string]any{
					"vm_id": "conformance", "runtime": "envoy.wasm.runtime.v8",
					"code": map[string]any{"local": map[string]any{"filename": filepath.Join(buildDir, "conformance.wasm")}},
				},
				"configuration": map[string]any{"@type": "type.googleapis.com/google.protobuf.StringValue", "value": `{"tick_ms": 0}`},
			},
		},
	}
	hcm["http_filters"] = append([]any{trap}, filters...)
	out, err := yaml.Marshal(doc)
	require.NoError(t, err)
	return string(out)
}

func hostPort(t testing.TB, addr string) (string, int) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	p, err := strconv.Atoi(addr[i+1:])
	require.NoError(t, err)
	return addr[:i], p
}

// openAIError is the error body every refusal must have.
type openAIError struct {
	Error *struct {
		Message *string `json:"message"`
		Type    *string `json:"type"`
		Param   any     `json:"param"`
		Code    any     `json:"code"`
	} `json:"error"`
}

// requireOpenAIError checks an OpenAI-shaped error body and returns it.
func requireOpenAIError(t *testing.T, status int, hdr http.Header, body []byte, want int) openAIError {
	t.Helper()
	require.Equal(t, want, status, "%s", body)
	require.Contains(t, hdr.Get("Content-Type"), "application/json", "%s", body)
	var e openAIError
	require.NoError(t, json.Unmarshal(body, &e), "%s", body)
	require.NotNil(t, e.Error, "%s", body)
	require.NotNil(t, e.Error.Message, "%s", body)
	require.NotNil(t, e.Error.Type, "%s", body)
	require.NotEmpty(t, *e.Error.Type, "%s", body)
	require.False(t, strings.HasPrefix(strings.TrimSpace(*e.Error.Message), "{"), "a JSON error wrapped in another: %s", body)
	return e
}
