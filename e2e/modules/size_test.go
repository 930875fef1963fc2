package modules

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// moduleBudget is the most bytes one stripped filter module may take. The
// filters are 3.8–4.6 MB since they stopped linking net/http (5.7–6.3 MB
// before), guard 5.15 MB with regexp; a module past the budget has pulled
// in a heavy dependency again. Lower it as the suite module (issue #11)
// drops encoding/json, reflect and fmt from the Wasm side.
const moduleBudget = 5_500_000

// suiteBudget caps build/tollgate.wasm, every filter in one module: 7.0 MB
// today against 4 × 5.7–6.3 MB before the suite. Issue #11 aims at 4.5 MB,
// which needs encoding/json, reflect and fmt gone from the Wasm side.
const suiteBudget = 7_500_000

func TestSuiteModule(t *testing.T) {
	fi, err := os.Stat(envoytest.WasmPath(t, "tollgate"))
	require.NoError(t, err)
	require.LessOrEqual(t, fi.Size(), int64(suiteBudget), "tollgate.wasm is %d bytes, over the %d-byte budget", fi.Size(), suiteBudget)
	var sum int64
	for _, name := range filterNames(t) {
		f, err := os.Stat(envoytest.WasmPath(t, name))
		require.NoError(t, err)
		sum += f.Size()
	}
	t.Logf("tollgate.wasm: %d bytes; the filter modules one by one: %d bytes", fi.Size(), sum)
	require.Less(t, fi.Size(), sum/2, "the suite must cost far less than its filters apart")
}

// heavyPackages must never be linked into a filter: importing one, even for
// a constant, links its whole init graph (net/http alone brings TLS, X.509
// and MIME: about 2 MB per module).
var heavyPackages = []string{"net/http", "crypto/tls", "crypto/x509", "mime"}

func TestModuleSizeBudget(t *testing.T) {
	for _, name := range filterNames(t) {
		t.Run(name, func(t *testing.T) {
			fi, err := os.Stat(envoytest.WasmPath(t, name))
			require.NoError(t, err)
			require.LessOrEqual(t, fi.Size(), int64(moduleBudget), "%s.wasm is %d bytes, over the %d-byte budget", name, fi.Size(), moduleBudget)
			t.Logf("%s.wasm: %d bytes (budget %d)", name, fi.Size(), moduleBudget)
		})
	}
}

func TestFiltersLinkNoHeavyPackages(t *testing.T) {
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	mods, err := envoytest.FilterModules(root)
	require.NoError(t, err)
	require.NotEmpty(t, mods)
	for _, m := range mods {
		pkg := "./" + m.Dir
		t.Run(pkg, func(t *testing.T) {
			cmd := exec.Command("go", "list", "-deps", pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
			out, err := cmd.Output()
			require.NoError(t, err, "go list -deps %s", pkg)
			deps := strings.Fields(string(out))
			for _, h := range heavyPackages {
				require.NotContains(t, deps, h, "%s links %s; use plain status codes or a lighter package", pkg, h)
			}
		})
	}
}
