// Package gateway_test runs the whole product end to end: the keystore
// (`tollgate serve`), the mock model server, and real Envoy loading the
// shipped chain (apikey → quota → modelroute → tokencount) both ways:
// examples/envoy/gateway.yaml, the suite's one fused filter, and
// gateway-filters.yaml, four filters sharing one VM (TestExamplesAgree keeps
// the two the same product). The official OpenAI Go SDK is the client:
// chat (JSON and streaming), completions, embeddings and models succeed;
// 401/403/404/429 surface as the SDK's typed errors with the gateway's
// message; streamed deltas arrive while the upstream is still generating;
// labelled metrics appear in /stats/prometheus. It also runs `make run`'s
// program (scripts/run-demo), follows its printed curl and stops it with
// Ctrl-C. The full-chain benchmark lives in bench_test.go.
package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
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

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/keystore/client"
	"github.com/tollgate/tollgate/mockllm"
	"github.com/tollgate/tollgate/scripts/run-demo/demo"
)

// bins are the programs TestMain builds once.
type bins struct {
	tollgate, runDemo string
}

// built is set by TestMain before any test runs and only read afterwards.
var built bins

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	defer keystoretest.RemoveBuilds()
	for out, pkg := range map[*string]string{&built.tollgate: keystoretest.CLIPackage, &built.runDemo: "./scripts/run-demo"} {
		p, err := keystoretest.Build(pkg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		*out = p
	}
	return m.Run()
}

// testDataToken is the keystore's data-plane token in these tests: the
// keystore requires it and the rendered filters send it.
const testDataToken = "e2e-data-plane-token-0123456789"

// keystoreProc is one `tollgate serve` on loopback with an embedded store.
type keystoreProc struct {
	*keystoretest.Server
	data   string
	client *client.Client
}

// startKeystore runs `tollgate serve` on free loopback ports and returns
// once it listens; the test's cleanup stops it.
func startKeystore(t testing.TB) *keystoreProc {
	t.Helper()
	s := keystoretest.Start(t, keystoretest.Options{DataToken: testDataToken})
	return &keystoreProc{Server: s, data: s.DataAddr(), client: s.Client(t)}
}

// gate holds back an upstream response: requests carrying gateHeader get
// their first gateEvents writes through and the rest only after release, so
// a test can prove that a stream's first deltas reach the client while the
// upstream is still producing.
type gate struct {
	mu       sync.Mutex
	released chan struct{}
	held     chan struct{} // closed when a response reached the gate
}

const (
	gateHeader = "X-Test-Gate"
	gateEvents = 2 // the role chunk and the first token
)

func newGate() *gate { return &gate{released: make(chan struct{}), held: make(chan struct{})} }

// release lets held responses go on.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.released:
	default:
		close(g.released)
	}
}

// gatedWriter passes the first writes and blocks later ones on the gate.
type gatedWriter struct {
	http.ResponseWriter
	g      *gate
	ctx    context.Context
	writes int
}

// Write counts events; from the (gateEvents+1)th on it waits for release.
func (w *gatedWriter) Write(p []byte) (int, error) {
	w.writes++
	if w.writes > gateEvents {
		w.g.mu.Lock()
		select {
		case <-w.g.held:
		default:
			close(w.g.held)
		}
		w.g.mu.Unlock()
		select {
		case <-w.g.released:
		case <-w.ctx.Done():
			return 0, w.ctx.Err()
		}
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the real writer's Flush.
func (w *gatedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// upstream is the model server behind the chain: mockllm with an optional gate.
type upstream struct {
	srv  *httptest.Server
	gate *gate
}

func startUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{gate: newGate()}
	mock := mockllm.New(mockllm.Options{Models: append(mockllm.DefaultModels(), "*")})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(gateHeader) != "" {
			w = &gatedWriter{ResponseWriter: w, g: u.gate, ctx: r.Context()}
		}
		mock.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		u.gate.release()
		u.srv.Close()
	})
	return u
}

// addr returns host and port of the upstream.
func (u *upstream) hostPort(t testing.TB) (string, int) {
	t.Helper()
	host, port, err := net.SplitHostPort(u.srv.Listener.Addr().String())
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	return host, p
}

// stack is the running product.
type stack struct {
	envoy    *envoytest.Envoy
	keystore *keystoreProc
	up       *upstream
	keys     map[string]string // app → key
}

// url is the gateway's base URL for SDK clients ("http://host:port/v1").
func (s *stack) url() string { return "http://" + s.envoy.ListenerAddr() + "/v1" }

// The shipped gateway configurations: the chain as the suite's one fused
// filter (the default, what `make run` renders) and as separate filters
// sharing one VM.
const (
	fusedExample   = "gateway.yaml"
	filtersExample = "gateway-filters.yaml"
)

// renderGateway renders examples/envoy/<example> for the test's keystore
// and upstream, with Envoy choosing its ports and the harness's access log.
func renderGateway(t testing.TB, example, ksData string, up demo.Upstream) string {
	t.Helper()
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	src, err := os.ReadFile(filepath.Join(root, "examples", "envoy", example))
	require.NoError(t, err)
	buildDir, err := envoytest.BuildDir()
	require.NoError(t, err)
	buildDir, err = filepath.Abs(buildDir)
	require.NoError(t, err)
	envoytest.WasmPath(t, "tollgate")
	out, err := demo.Render(src, demo.RenderOptions{
		Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Keystore: ksData, Upstream: up,
		BuildDir: buildDir, AccessLog: "{{.AccessLog}}", DataToken: testDataToken,
	})
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(out), "{{"), "the rendered config must hold no template action but the access log")
	return string(out)
}

// compositions are the two ways the shipped chain runs: separate filters
// in one VM, and the suite's fused filter.
var compositions = []struct {
	name  string
	fused bool
}{{"filters", false}, {"fused", true}}

// example is the shipped configuration of a composition.
func example(fused bool) string {
	if fused {
		return fusedExample
	}
	return filtersExample
}

// startStack starts keystore, upstream and Envoy with the example chain
// (fused: gateway.yaml, the one fused filter; else gateway-filters.yaml),
// applies testdata/products.yaml and
// issues one key per app.
func startStack(t testing.TB, fused bool) *stack {
	t.Helper()
	ks := startKeystore(t)
	up := startUpstream(t)
	host, port := up.hostPort(t)
	yml := renderGateway(t, example(fused), ks.data, demo.Upstream{Host: host, Port: port})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := os.ReadFile(filepath.Join("testdata", "products.yaml"))
	require.NoError(t, err)
	require.NoError(t, demo.ApplyProducts(ctx, ks.client, "testdata/products.yaml", raw))
	s := &stack{keystore: ks, up: up, keys: map[string]string{}}
	for app, product := range map[string]string{"sdk": "gw-full", "gemma": "gw-gemma", "two": "gw-two-requests", "few": "gw-few-tokens", "bench": "gw-bench"} {
		k, err := demo.IssueKey(ctx, ks.client, demo.Account{Developer: "e2e@tollgate.test", App: app, Products: []string{product}})
		require.NoError(t, err)
		s.keys[app] = k.Secret
	}
	s.envoy = envoytest.Start(t, envoytest.Config{YAML: yml, ListenerName: "gateway", StartTimeout: 3 * time.Minute})
	return s
}

// accessEntry is one line of the example's access log.
type accessEntry struct {
	Method           string `json:"method"`
	Path             string `json:"path"`
	Status           int    `json:"status"`
	App              string `json:"app"`
	Model            string `json:"model"`
	Target           string `json:"target"`
	PromptTokens     string `json:"prompt_tokens"`
	CompletionTokens string `json:"completion_tokens"`
	TotalTokens      string `json:"total_tokens"`
}

// accessLog reads the access log entries written so far.
func (s *stack) accessLog(t testing.TB) []accessEntry {
	t.Helper()
	raw, err := os.ReadFile(s.envoy.AccessLogPath)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var out []accessEntry
	for _, line := range strings.Split(string(raw), "\n") {
		var e accessEntry
		if json.Unmarshal([]byte(line), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}
