// Package modules checks the built filter artefacts themselves: every filter
// exports the proxy-wasm callbacks Envoy needs and imports nothing but the
// proxy-wasm host ("env") and the WASI subset Envoy provides.
package modules

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// filterNames lists every filter module the tree builds (filters/<name>/wasm
// or filters/<name>/main.go), so a new filter is checked without a list to edit.
func filterNames(t *testing.T) []string {
	t.Helper()
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	mods, err := envoytest.FilterModules(root)
	require.NoError(t, err)
	require.NotEmpty(t, mods)
	names := make([]string, len(mods))
	for i, m := range mods {
		names[i] = m.Name
	}
	return names
}

var requiredExports = []string{
	"proxy_abi_version_0_2_1",
	"proxy_on_memory_allocate",
	"proxy_on_context_create",
	"proxy_on_request_headers",
	"proxy_on_http_call_response",
	"_initialize",
}

func TestFilterModules(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { _ = rt.Close(ctx) })
	for _, name := range append(filterNames(t), "tollgate") {
		t.Run(name, func(t *testing.T) {
			code, err := os.ReadFile(envoytest.WasmPath(t, name))
			require.NoError(t, err)
			mod, err := rt.CompileModule(ctx, code)
			require.NoError(t, err)
			exports := mod.ExportedFunctions()
			for _, e := range requiredExports {
				assert.Contains(t, exports, e, "%s.wasm must export %s", name, e)
			}
			for _, f := range mod.ImportedFunctions() {
				module, fn, _ := f.Import()
				assert.Contains(t, []string{"env", "wasi_snapshot_preview1"}, module, "%s.wasm imports %s.%s", name, module, fn)
			}
			t.Logf("%s.wasm: %d bytes, %d imports, %d exports", name, len(code), len(mod.ImportedFunctions()), len(exports))
		})
	}
}
