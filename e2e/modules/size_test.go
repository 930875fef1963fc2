package modules

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// moduleBudgets caps each stripped filter module at its size when
// encoding/json left the Wasm side (issue #11: 3.2–4.6 MB, from 3.8–5.2 MB)
// plus about 4%, so a filter that pulls in a heavy dependency again fails
// here. `make size SIZE_PKG=filters/<name>/wasm` shows what a module is
// made of; raise a budget only with the reason in the commit message.
var moduleBudgets = map[string]int64{
	"apikey":     4_250_000, // 4,076,641 bytes on 2026-12-07
	"guard":      4_800_000, // 4,628,562 (regexp and its Unicode tables)
	"modelroute": 3_350_000, // 3,218,668
	"picker":     3_850_000, // 3,705,432
	"quota":      4_400_000, // 4,209,815 (with budget leases)
	"tokencount": 4_500_000, // 4,329,441 (with budget leases)
}

// defaultModuleBudget caps a filter that has no budget of its own yet.
const defaultModuleBudget = 4_500_000

// suiteBudget caps build/tollgate.wasm, every filter in one module: 6.93 MB
// with budget leases (7.02 MB before shared/config's generated decoders
// replaced encoding/json, 6.74 MB on that same tree after). Issue #11 aims
// at 4.5 MB, which also needs fmt and reflect gone from the Wasm side.
const suiteBudget = 7_150_000

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

// heavyPackages must never be linked into a filter or the suite: importing
// one, even for a constant, links its whole init graph (net/http alone
// brings TLS, X.509 and MIME: about 2 MB per module). encoding/json is
// reflection-based decoding (240 KB of code in the suite, and the type data
// its reflection keeps): configurations decode through shared/config's
// generated decoders, bodies through shared/reqview, and JSON is written
// with shared/jsonenc. time/tzdata would embed 450 KB of zone data.
var heavyPackages = []string{"net/http", "crypto/tls", "crypto/x509", "mime", "encoding/json", "encoding/xml", "text/template", "time/tzdata"}

func TestModuleSizeBudget(t *testing.T) {
	for _, name := range filterNames(t) {
		t.Run(name, func(t *testing.T) {
			fi, err := os.Stat(envoytest.WasmPath(t, name))
			require.NoError(t, err)
			budget, ok := moduleBudgets[name]
			if !ok {
				budget = defaultModuleBudget
			}
			require.LessOrEqual(t, fi.Size(), budget, "%s.wasm is %d bytes, over the %d-byte budget", name, fi.Size(), budget)
			t.Logf("%s.wasm: %d bytes (budget %d)", name, fi.Size(), budget)
		})
	}
}

func TestFiltersLinkNoHeavyPackages(t *testing.T) {
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	mods, err := envoytest.FilterModules(root)
	require.NoError(t, err)
	require.NotEmpty(t, mods)
	pkgs := []string{"./suite"}
	for _, m := range mods {
		pkgs = append(pkgs, "./"+m.Dir)
	}
	for _, pkg := range pkgs {
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
