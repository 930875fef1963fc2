// Package hello runs the template filter (build/hello.wasm, built from
// examples/filter/hello) in real Envoy: the worked example of CONTRIBUTING's
// "Anatomy of a filter" loads, greets, refuses and counts end to end.
package hello

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/examples/filter/hello/greet"
	"github.com/tollgate/tollgate/shared/wasmhost/wasmtest"
)

func TestHelloInEnvoy(t *testing.T) {
	up := envoytest.NewUpstream(t, envoytest.WithName("backend"))
	e := envoytest.Start(t, envoytest.Config{
		Filters: []envoytest.WasmFilter{{
			Name: "hello", RootID: "hello", VMID: "hello",
			WasmPath:      envoytest.WasmPath(t, "hello"),
			Configuration: `{"greeting":"hi","deny_prefixes":["/private"]}`,
		}},
		Clusters: []envoytest.Cluster{up.Cluster("backend")},
	})
	c := e.Client()

	get := func(path string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.URL(path), nil)
		require.NoError(t, err)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, b
	}

	t.Run("greets the identified caller both ways", func(t *testing.T) {
		resp, body := get("/v1/models", map[string]string{greet.AppHeader: "demo", "x-hello": "spoof"})
		require.Equal(t, 200, resp.StatusCode, "%s", body)
		assert.Equal(t, "hi", resp.Header.Get("x-hello"))
		last, ok := up.Last()
		require.True(t, ok)
		assert.Equal(t, []string{"hi, demo"}, last.Header.Values("x-hello"), "the client's own value is replaced")
	})

	t.Run("denied path is a JSON 403 that never reaches the upstream", func(t *testing.T) {
		before := up.Count()
		resp, body := get("/private/data", nil)
		require.Equal(t, 403, resp.StatusCode)
		assert.Equal(t, "application/json", resp.Header.Get("content-type"))
		var e struct {
			Error struct{ Code, Type string } `json:"error"`
		}
		require.NoError(t, json.Unmarshal(body, &e), "%s", body)
		assert.Equal(t, greet.CodeDenied, e.Error.Code)
		assert.Equal(t, "permission_error", e.Error.Type)
		assert.Empty(t, resp.Header.Get("x-hello"))
		assert.Equal(t, before, up.Count())
	})

	t.Run("counts both outcomes", func(t *testing.T) {
		e.WaitPromMetric(t, greet.MetricGreeted, nil, 5*time.Second, func(v float64) bool { return v == 1 })
		e.WaitPromMetric(t, greet.MetricDenied, nil, 5*time.Second, func(v float64) bool { return v == 1 })
	})
}

// TestRootIDRegistry loads one module twice in one VM under two root_ids,
// as a suite module holding every filter is loaded: each PluginConfig gets
// the plugin its root_id names (read from plugin_root_id while Envoy creates
// the root context), with its own configuration.
func TestRootIDRegistry(t *testing.T) {
	envoytest.RequireEnvoy(t)
	mod, err := wasmtest.Build("./testdata/suite", "-ldflags=-s -w")
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "suite.wasm")
	require.NoError(t, os.WriteFile(path, mod, 0o644))
	filter := func(rootID, config string) envoytest.WasmFilter {
		return envoytest.WasmFilter{Name: rootID, RootID: rootID, VMID: "suite", WasmPath: path, Configuration: config}
	}

	up := envoytest.NewUpstream(t, envoytest.WithName("backend"))
	e := envoytest.Start(t, envoytest.Config{
		Filters: []envoytest.WasmFilter{
			filter("hello", `{"greeting":"hi","deny_prefixes":["/private"]}`),
			filter("hola", `{"greeting":"hola","deny_prefixes":["/secret"]}`),
		},
		Clusters: []envoytest.Cluster{up.Cluster("backend")},
	})
	c := e.Client()
	status := func(path string) int {
		t.Helper()
		resp, err := c.Get(e.URL(path))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, 403, status("/private/x"), "the hello root's configuration")
	assert.Equal(t, 403, status("/secret/x"), "the hola root's configuration")
	require.Equal(t, 200, status("/open"))
	last, ok := up.Last()
	require.True(t, ok)
	assert.Equal(t, []string{"hola, stranger"}, last.Header.Values("x-hello"), "both roots ran, in filter order")
}
