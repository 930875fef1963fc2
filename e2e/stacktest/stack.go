// Package stacktest runs "the shipped chain in real Envoy" for end-to-end
// tests: the keystore (`tollgate serve`), a model server that records what
// it receives, and examples/envoy/gateway-filters.yaml (the shipped chain
// as separate filters, so that tests can put their own between them; Fused
// runs it as gateway.yaml's one fused filter) rendered the way `make run`
// renders it (demo.Render), with optional edits to the bootstrap (insert a
// filter, add a cluster, stats tags or access-log fields). e2e packages
// share it instead of each carrying a copy.
package stacktest

import (
	"bytes"
	"context"
	"io"
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
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/mockllm"
	"github.com/tollgate/tollgate/scripts/run-demo/demo"
)

// DefaultDataToken is the keystore's data-plane token when Options sets none.
const DefaultDataToken = "stacktest-data-plane-token-0123456789"

// ChainFilters are the Wasm modules of the shipped chain: the suite module.
func ChainFilters() []string { return []string{"tollgate"} }

// Options describe the stack a test wants.
type Options struct {
	// Upstream is the model server; nil serves mockllm with its default
	// models and any other name.
	Upstream http.Handler
	// Products is a products manifest to apply (a path relative to the
	// test's directory, or absolute); empty applies none.
	Products string
	// Apps maps an app to the products its key is issued for; the keys
	// are in Stack.Keys.
	Apps map[string][]string
	// Developer owns the apps (default e2e@tollgate.test).
	Developer string
	// DataToken is the keystore's data-plane token (default DefaultDataToken).
	DataToken string
	// Modules are extra build/*.wasm modules the edits load (checked to exist).
	Modules []string
	// Fused runs the chain as the one fused filter (Fuse) instead of
	// separate filters in one VM; Edit runs after.
	Fused bool
	// Edit changes the rendered bootstrap before Envoy starts.
	Edit func(t testing.TB, doc map[string]any)
	// StartTimeout bounds Envoy's start (default 3 minutes: V8 compiles
	// every module, slowly on a loaded machine).
	StartTimeout time.Duration
}

// Stack is the running gateway.
type Stack struct {
	Envoy    *envoytest.Envoy
	Keystore *keystoretest.Server
	Upstream *Upstream
	// Keys maps each app of Options.Apps to its API key.
	Keys map[string]string
	// BuildDir is the absolute directory of the .wasm modules.
	BuildDir string
}

// URL is the gateway's address for path.
func (s *Stack) URL(path string) string { return "http://" + s.Envoy.ListenerAddr() + path }

// AccessLines returns the access log's lines written so far.
func (s *Stack) AccessLines(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(s.Envoy.AccessLogPath)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	return strings.Split(string(b), "\n")
}

// Start starts keystore, upstream and Envoy with the shipped chain; the
// test's cleanup stops them. TestMain must build the CLI first
// (keystoretest.Main).
func Start(t testing.TB, o Options) *Stack {
	t.Helper()
	if o.DataToken == "" {
		o.DataToken = DefaultDataToken
	}
	if o.Developer == "" {
		o.Developer = "e2e@tollgate.test"
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 3 * time.Minute
	}
	ks := keystoretest.Start(t, keystoretest.Options{DataToken: o.DataToken})
	up := NewUpstream(t, o.Upstream)
	s := &Stack{Keystore: ks, Upstream: up, Keys: map[string]string{}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := ks.Client(t)
	if o.Products != "" {
		raw, err := os.ReadFile(o.Products)
		require.NoError(t, err)
		require.NoError(t, demo.ApplyProducts(ctx, admin, o.Products, raw))
	}
	for app, products := range o.Apps {
		k, err := demo.IssueKey(ctx, admin, demo.Account{Developer: o.Developer, App: app, Products: products})
		require.NoError(t, err)
		s.Keys[app] = k.Secret
	}
	host, port := HostPort(t, up.Addr())
	edit := o.Edit
	if o.Fused {
		edit = func(t testing.TB, doc map[string]any) {
			Fuse(t, doc)
			if o.Edit != nil {
				o.Edit(t, doc)
			}
		}
	}
	var yml string
	yml, s.BuildDir = Render(t, ks.DataAddr(), demo.Upstream{Host: host, Port: port}, o.DataToken, o.Modules, edit)
	s.Envoy = envoytest.Start(t, envoytest.Config{YAML: yml, ListenerName: "gateway", StartTimeout: o.StartTimeout})
	return s
}

// Example is the configuration Render renders: the shipped chain as
// separate filters (examples/envoy/gateway-filters.yaml).
const Example = "gateway-filters.yaml"

// Render renders examples/envoy/gateway-filters.yaml for a keystore and an
// upstream (Envoy choosing its ports, the harness's access log), checks
// that the chain's modules and the extra ones are built, applies edit and
// returns the bootstrap and the absolute build directory.
func Render(t testing.TB, keystore string, up demo.Upstream, dataToken string, modules []string, edit func(testing.TB, map[string]any)) (string, string) {
	t.Helper()
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	src, err := os.ReadFile(filepath.Join(root, "examples", "envoy", Example))
	require.NoError(t, err)
	buildDir, err := envoytest.BuildDir()
	require.NoError(t, err)
	buildDir, err = filepath.Abs(buildDir)
	require.NoError(t, err)
	for _, f := range append(ChainFilters(), modules...) {
		envoytest.WasmPath(t, f)
	}
	out, err := demo.Render(src, demo.RenderOptions{
		Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Keystore: keystore, Upstream: up,
		BuildDir: buildDir, AccessLog: "{{.AccessLog}}", DataToken: dataToken,
	})
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(out), "{{"), "the rendered config must hold no template action but the access log")
	if edit == nil {
		return string(out), buildDir
	}
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(out, &doc))
	edit(t, doc)
	b, err := yaml.Marshal(doc)
	require.NoError(t, err)
	return string(b), buildDir
}

// Request is one request as the upstream received it.
type Request struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// Upstream is the model server behind the chain; it records every request.
type Upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []Request
}

// NewUpstream serves h (nil: mockllm with its default models and any
// other name) on loopback, recording requests; the test's cleanup stops it.
func NewUpstream(t testing.TB, h http.Handler) *Upstream {
	t.Helper()
	if h == nil {
		h = mockllm.New(mockllm.Options{Models: append(mockllm.DefaultModels(), "*")})
	}
	u := &Upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, Request{Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body})
		u.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// Addr is the upstream's host:port.
func (u *Upstream) Addr() string { return u.srv.Listener.Addr().String() }

// Count is how many requests the upstream received.
func (u *Upstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// Since returns the requests received after the first n.
func (u *Upstream) Since(n int) []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Request(nil), u.reqs[min(n, len(u.reqs)):]...)
}

// Last returns the last request received (ok false before any).
func (u *Upstream) Last() (Request, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		return Request{}, false
	}
	return u.reqs[len(u.reqs)-1], true
}

// HostPort splits a loopback host:port.
func HostPort(t testing.TB, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return h, n
}
