// Package examples checks that every Envoy configuration shipped in
// examples/envoy is accepted by the pinned Envoy, so docs never drift into
// configurations that do not load.
package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// wasmFile finds the modules a configuration loads ("filename: build/<name>.wasm").
var wasmFile = regexp.MustCompile(`filename:\s*build/([a-z0-9_-]+)\.wasm`)

func TestExampleConfigsValidate(t *testing.T) {
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	envoy := envoytest.RequireEnvoy(t)
	files, err := filepath.Glob(filepath.Join(root, "examples", "envoy", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no example configurations found")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			// Wasm paths in the examples are relative to the repository root, after `make build`.
			raw, err := os.ReadFile(f)
			require.NoError(t, err)
			for _, m := range wasmFile.FindAllStringSubmatch(string(raw), -1) {
				envoytest.WasmPath(t, m[1])
			}
			cmd := exec.Command(envoy, "--mode", "validate", "--disable-hot-restart", "-c", f)
			cmd.Dir = root
			// Validation configures the filters, which read the keystore's
			// data-plane token from Envoy's environment (host_env_keys).
			cmd.Env = append(os.Environ(), "TOLLGATE_DATA_TOKEN=examples-validate-token")
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "envoy rejected %s:\n%s", f, out)
			require.Contains(t, string(out), "OK")
		})
	}
}
