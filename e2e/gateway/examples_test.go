package gateway_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/stacktest"
	"github.com/tollgate/tollgate/scripts/run-demo/demo"
)

// TestExamplesAgree keeps the two shipped compositions one product:
// gateway-filters.yaml with its filters fused (stacktest.Fuse) must be
// gateway.yaml, configurations compared as JSON values.
func TestExamplesAgree(t *testing.T) {
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	load := func(name string) map[string]any {
		src, err := os.ReadFile(filepath.Join(root, "examples", "envoy", name))
		require.NoError(t, err)
		out, err := demo.Render(src, demo.RenderOptions{Listen: "127.0.0.1:8080", Admin: "127.0.0.1:9901", Keystore: "127.0.0.1:8420",
			Upstream: demo.Upstream{Host: "127.0.0.1", Port: 8000}, BuildDir: "/b", AccessLog: "/tmp/a.log"})
		require.NoError(t, err)
		var doc map[string]any
		require.NoError(t, yaml.Unmarshal(out, &doc))
		return doc
	}
	filters, fused := load(filtersExample), load(fusedExample)
	stacktest.Fuse(t, filters)
	require.Equal(t, jsonValues(t, fused), jsonValues(t, filters), "gateway.yaml is not gateway-filters.yaml fused")
}

// jsonValues replaces every Wasm configuration string by its JSON value,
// so formatting and member order do not count.
func jsonValues(t *testing.T, v any) any {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = jsonValues(t, e)
		}
		if s, ok := x["value"].(string); ok && x["@type"] == "type.googleapis.com/google.protobuf.StringValue" {
			var j any
			require.NoError(t, json.Unmarshal([]byte(s), &j), s)
			out["value"] = j
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValues(t, e)
		}
		return out
	}
	return v
}
