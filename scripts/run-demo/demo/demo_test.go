package demo

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/filters/modelroute/route"
	"github.com/tollgate/tollgate/internal/tree"
	"github.com/tollgate/tollgate/keystore"
	"github.com/tollgate/tollgate/keystore/client"
	"github.com/tollgate/tollgate/keystore/store"
)

// exampleConfig is the configuration `make run` renders.
func exampleConfig(t testing.TB) []byte { return exampleFile(t, "gateway.yaml") }

// examples are the shipped gateway configurations: the fused filter (what
// `make run` renders) and the same chain as separate filters.
var examples = []string{"gateway.yaml", "gateway-filters.yaml"}

func exampleFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "examples", "envoy", name))
	require.NoError(t, err)
	return b
}

// policy is one Tollgate filter's configuration in a rendered chain: its
// own Envoy filter's, or its section of the fused filter's.
type policy struct {
	name   string
	filter map[string]any // the Envoy filter's Wasm config
	raw    []byte
}

// policies lists the chain's Envoy filters with the fused filter's
// sections in its place, in the fused order.
func policies(t *testing.T, h map[string]any) (names []string, out []policy) {
	t.Helper()
	for _, f := range tree.Dig(t, h, "http_filters").([]any) {
		fm := f.(map[string]any)
		cfg, ok := tree.Dig(t, fm, "typed_config").(map[string]any)["config"].(map[string]any)
		if !ok {
			names = append(names, fm["name"].(string))
			continue
		}
		raw := tree.Dig(t, cfg, "configuration", "value").(string)
		if cfg["root_id"] != FusedRootID {
			names = append(names, cfg["root_id"].(string))
			out = append(out, policy{cfg["root_id"].(string), cfg, []byte(raw)})
			continue
		}
		var sections map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(raw), &sections), raw)
		for _, n := range []string{"apikey", "quota", "modelroute", "guard", "tokencount", "picker"} {
			if sec, ok := sections[n]; ok {
				names = append(names, n)
				out = append(out, policy{n, cfg, sec})
				delete(sections, n)
			}
		}
		require.Empty(t, sections, "the fused filter has unknown sections")
	}
	return names, out
}

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		in   string
		want Upstream
		err  string
	}{
		{in: "http://127.0.0.1:8000", want: Upstream{Host: "127.0.0.1", Port: 8000}},
		{in: "http://vllm.internal:8000/v1", want: Upstream{Host: "vllm.internal", Port: 8000}},
		{in: "http://localhost/", want: Upstream{Host: "localhost", Port: 80}},
		{in: "https://api.openai.com/v1/", want: Upstream{TLS: true, Host: "api.openai.com", Port: 443}},
		{in: "http://[::1]:9000", want: Upstream{Host: "::1", Port: 9000}},
		{in: "ftp://x", err: "want http"},
		{in: "127.0.0.1:8000", err: "want http"},
		{in: "http://", err: "no host"},
		{in: "http://h:0", err: "bad port"},
		{in: "http://h:99999", err: "bad port"},
		{in: "http://user:pw@h", err: "credentials"},
		{in: "http://h/api/v2", err: "base paths"},
		{in: "http://h/?x=1", err: "query"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseUpstream(tt.in)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func FuzzParseUpstream(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:8000", "https://h/v1", "http://[::1]:1", "x", "http://h:65536", "http://%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUpstream(s)
		if err != nil {
			return
		}
		if u.Host == "" || u.Port < 1 || u.Port > 65535 {
			t.Fatalf("ParseUpstream(%q) = %+v without error", s, u)
		}
	})
}

// renderedFrom decodes a rendered example.
func renderedFrom(t *testing.T, example string, o RenderOptions) map[string]any {
	t.Helper()
	out, err := Render(exampleFile(t, example), o)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(out, &doc))
	return doc
}

// clusterByName finds a cluster.
func clusterByName(t *testing.T, doc map[string]any, name string) map[string]any {
	t.Helper()
	for _, c := range tree.Dig(t, doc, "static_resources", "clusters").([]any) {
		if c.(map[string]any)["name"] == name {
			return c.(map[string]any)
		}
	}
	t.Fatalf("no cluster %s", name)
	return nil
}

// endpoint returns a cluster's only address.
func endpoint(t *testing.T, c map[string]any) (string, int) {
	t.Helper()
	sa := tree.Dig(t, c, "load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address", "socket_address").(map[string]any)
	return sa["address"].(string), sa["port_value"].(int)
}

// hcm returns the HTTP connection manager config.
func hcm(t *testing.T, doc map[string]any) map[string]any {
	t.Helper()
	return tree.Dig(t, doc, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config").(map[string]any)
}

func TestRenderLocal(t *testing.T) {
	for _, ex := range examples {
		t.Run(ex, func(t *testing.T) { testRenderLocal(t, ex) })
	}
}

func testRenderLocal(t *testing.T, example string) {
	doc := renderedFrom(t, example, RenderOptions{
		Listen: "127.0.0.1:18080", Admin: "127.0.0.1:0", Keystore: "127.0.0.1:18420",
		Upstream: Upstream{Host: "127.0.0.1", Port: 18000}, BuildDir: "/opt/tollgate/build", AccessLog: "/tmp/a.log",
	})
	assert.Equal(t, 18080, tree.Dig(t, doc, "static_resources", "listeners", 0, "address", "socket_address", "port_value"))
	assert.Equal(t, 0, tree.Dig(t, doc, "admin", "address", "socket_address", "port_value"))
	assert.Equal(t, "127.0.0.1", tree.Dig(t, doc, "admin", "address", "socket_address", "address"))
	for _, name := range ModelClusters() {
		c := clusterByName(t, doc, name)
		host, port := endpoint(t, c)
		assert.Equal(t, "127.0.0.1", host)
		assert.Equal(t, 18000, port)
		assert.Equal(t, "STATIC", c["type"])
		assert.Nil(t, c["transport_socket"])
	}
	_, port := endpoint(t, clusterByName(t, doc, KeystoreCluster))
	assert.Equal(t, 18420, port)
	h := hcm(t, doc)
	assert.Equal(t, "/tmp/a.log", tree.Dig(t, h, "access_log", 0, "typed_config", "path"))
	names, pols := policies(t, h)
	for _, p := range pols {
		// Every Tollgate filter runs in the suite module's one VM per worker.
		fn := tree.Dig(t, p.filter, "vm_config", "code", "local", "filename").(string)
		assert.Equal(t, "/opt/tollgate/build/tollgate.wasm", fn)
		assert.Equal(t, "tollgate", tree.Dig(t, p.filter, "vm_config", "vm_id"))
	}
	assert.Equal(t, []string{"apikey", "quota", "modelroute", "tokencount", "envoy.filters.http.header_to_metadata", "envoy.filters.http.router"}, names, "the chain order")
	assert.Nil(t, tree.Dig(t, h, "route_config", "virtual_hosts", 0, "request_headers_to_add"))
}

func TestRenderExternalUpstream(t *testing.T) {
	for _, ex := range examples {
		t.Run(ex, func(t *testing.T) { testRenderExternalUpstream(t, ex) })
	}
}

func testRenderExternalUpstream(t *testing.T, example string) {
	doc := renderedFrom(t, example, RenderOptions{
		Upstream: Upstream{TLS: true, Host: "api.example.com", Port: 443, APIKey: "sk-test"}, AnyModel: true,
	})
	for _, name := range ModelClusters() {
		c := clusterByName(t, doc, name)
		assert.Equal(t, "LOGICAL_DNS", c["type"])
		assert.Equal(t, "api.example.com", tree.Dig(t, c, "transport_socket", "typed_config", "sni"))
	}
	h := hcm(t, doc)
	vh := tree.Dig(t, h, "route_config", "virtual_hosts", 0)
	assert.Equal(t, "Bearer sk-test", tree.Dig(t, vh, "request_headers_to_add", 0, "header", "value"))
	for _, r := range tree.Dig(t, vh, "routes").([]any) {
		assert.Equal(t, true, tree.Dig(t, r, "route", "auto_host_rewrite"))
	}
	_, pols := policies(t, h)
	seen := 0
	for _, p := range pols {
		if p.name != "modelroute" {
			continue
		}
		seen++
		raw := string(p.raw)
		var cfg map[string]any
		require.NoError(t, json.Unmarshal([]byte(raw), &cfg), raw)
		assert.Equal(t, "passthrough", cfg["unknown_models"])
		assert.Empty(t, cfg["models"], "the demo's aliases and rewrites are not the upstream's")
		// modelroute itself, with this configuration, sends every name on
		// unchanged: no gemma -> /gcs/... rewrite, no alias.
		pol, err := route.Parse([]byte(raw))
		require.NoError(t, err)
		for _, model := range []string{"gemma", "gemma-3-1b-it", "llama-3.1-8b", "my-org/custom:7b"} {
			d, aerr := pol.Decide([]byte(`{"model":"`+model+`","messages":[]}`), route.HeaderMap{}, nil)
			require.Nil(t, aerr, model)
			assert.Equal(t, model, d.BackendModel, "%s is passed through", model)
			assert.Nil(t, d.Body, "%s: the body is not rewritten", model)
			assert.False(t, d.MapResponse)
		}
	}
	require.Equal(t, 1, seen, "modelroute is in the chain")
	// Unset options keep the example's addresses.
	_, port := endpoint(t, clusterByName(t, doc, KeystoreCluster))
	assert.Equal(t, 8420, port)
	assert.Equal(t, 8080, tree.Dig(t, doc, "static_resources", "listeners", 0, "address", "socket_address", "port_value"))
}

// Every filter that calls the keystore reads the data-plane token from its
// VM environment: Envoy's own by default, the rendered value with DataToken.
// All Tollgate filters keep one identical vm_config, so that Envoy runs them
// in one VM per worker.
func TestRenderDataToken(t *testing.T) {
	for _, ex := range examples {
		t.Run(ex, func(t *testing.T) { testRenderDataToken(t, ex) })
	}
}

func testRenderDataToken(t *testing.T, example string) {
	for _, tok := range []string{"", "tgdata_0123456789abcdef"} {
		h := hcm(t, renderedFrom(t, example, RenderOptions{DataToken: tok}))
		callers := 0
		var vm any
		_, pols := policies(t, h)
		for _, p := range pols {
			fm := map[string]any{"name": p.name}
			cfg := p.filter
			raw := string(p.raw)
			var c struct {
				Keystore map[string]any `json:"keystore"`
			}
			require.NoError(t, json.Unmarshal([]byte(raw), &c), raw)
			if vm == nil {
				vm = tree.Dig(t, cfg, "vm_config")
			}
			assert.Equal(t, vm, tree.Dig(t, cfg, "vm_config"), "%s shares the suite's VM", fm["name"])
			env, _ := tree.Dig(t, cfg, "vm_config").(map[string]any)["environment_variables"].(map[string]any)
			if c.Keystore == nil {
				continue
			}
			callers++
			assert.Equal(t, DataTokenEnv, c.Keystore["token_env"], "%s sends the data-plane token", fm["name"])
			assert.NotContains(t, c.Keystore, "token", "no token in the file")
			if tok == "" {
				assert.Equal(t, []any{DataTokenEnv}, env["host_env_keys"], "%s: from Envoy's environment", fm["name"])
				assert.Nil(t, env["key_values"])
			} else {
				assert.Nil(t, env["host_env_keys"])
				assert.Equal(t, map[string]any{DataTokenEnv: tok}, env["key_values"])
			}
		}
		assert.Equal(t, 3, callers, "apikey, quota and tokencount call the keystore")
	}
}

func TestRenderErrors(t *testing.T) {
	example := string(exampleConfig(t))
	tests := []struct {
		name string
		src  string
		o    RenderOptions
		err  string
	}{
		{"not yaml", "admin: [", RenderOptions{}, "parse gateway config"},
		{"no static resources", "admin: {address: {}}", RenderOptions{}, "static_resources"},
		{"bad listen address", example, RenderOptions{Listen: "nowhere"}, "address \"nowhere\""},
		{"bad port", example, RenderOptions{Keystore: "127.0.0.1:x"}, "bad port"},
		{"missing keystore cluster", strings.Replace(example, "- name: keystore\n", "- name: elsewhere\n", 1), RenderOptions{}, `cluster "keystore" is missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render([]byte(tt.src), tt.o)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
		})
	}
}

// startKeystore serves a keystore in-process on loopback.
func startKeystore(t *testing.T) *client.Client {
	t.Helper()
	ctx := context.Background()
	b, err := store.OpenBackend(ctx, store.BackendOptions{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	st, err := b.Keystore()
	require.NoError(t, err)
	const token = "demo-test-admin-token-0123456789abcdef"
	svc, err := keystore.New(keystore.Config{Store: st, AdminToken: token, Backend: b.Kind()})
	require.NoError(t, err)
	srv := httptest.NewServer(svc.AdminHandler())
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, token)
	require.NoError(t, err)
	return c
}

func TestApplyProductsAndIssueKey(t *testing.T) {
	c := startKeystore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path := filepath.Join("..", "..", "..", "examples", "demo-products.yaml")
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, ApplyProducts(ctx, c, path, raw))
	require.NoError(t, ApplyProducts(ctx, c, path, raw), "applying twice is fine")
	products, err := c.ListProducts(ctx)
	require.NoError(t, err)
	assert.Len(t, products, 2)

	a := Account{Developer: "demo@tollgate.local", App: "demo", Products: []string{"demo"}, KeyLifetime: "720h"}
	first, err := IssueKey(ctx, c, a)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(first.Secret, "tg_"))
	second, err := IssueKey(ctx, c, a)
	require.NoError(t, err)
	assert.NotEqual(t, first.Secret, second.Secret)
	keys, err := c.ListKeys(ctx, "demo")
	require.NoError(t, err)
	require.Len(t, keys, 1, "a new run replaces the previous key")
	assert.Equal(t, second.ID, keys[0].ID)
	assert.False(t, keys[0].ExpiresAt.IsZero())

	// Switching products (make run UPSTREAM=…) recreates the app.
	a.Products = []string{"demo-open"}
	_, err = IssueKey(ctx, c, a)
	require.NoError(t, err)
	apps, err := c.ListApps(ctx, a.Developer)
	require.NoError(t, err)
	require.Len(t, apps, 1)
	assert.Equal(t, []string{"demo-open"}, apps[0].Products)

	err = ApplyProducts(ctx, c, "bad.yaml", []byte("apiVersion: tollgate.dev/v1\nkind: Nope\n"))
	assert.ErrorContains(t, err, "bad.yaml")
	_, err = IssueKey(ctx, c, Account{Developer: "demo@tollgate.local", App: "x", Products: []string{"no-such-product"}})
	assert.ErrorContains(t, err, "create app")
}

func TestPortalAccountsPersist(t *testing.T) {
	dir := t.TempDir()
	first, err := PortalAccounts(dir)
	require.NoError(t, err)
	assert.Equal(t, "demo@tollgate.local", first.Demo.Email)
	assert.GreaterOrEqual(t, len(first.Admin.Password), 12, "long enough for the portal")
	assert.NotEqual(t, first.Admin.Password, first.Demo.Password)
	again, err := PortalAccounts(dir)
	require.NoError(t, err)
	assert.Equal(t, first, again, "a rerun prints the passwords the accounts were created with")
	info, err := os.Stat(filepath.Join(dir, PortalLoginsFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	assert.Equal(t, []string{PortalAdminPasswordEnv + "=" + first.Admin.Password, PortalDemoPasswordEnv + "=" + first.Demo.Password}, first.Env())
	require.NoError(t, os.WriteFile(filepath.Join(dir, PortalLoginsFile), []byte("{"), 0o600))
	_, err = PortalAccounts(dir)
	assert.ErrorContains(t, err, "damaged")
}
