// Package wasmtest holds the plumbing shared by tests that run a filter's
// built module in shared/wasmhost: building the package to a .wasm the way
// the Makefile does, and hosts and worker VMs that close when the test ends.
package wasmtest

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/wasmhost"
)

// Build compiles the main package in pkgDir with the upstream Go toolchain
// (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared -trimpath, then flags) and
// returns the module, so tests never run a stale artefact.
func Build(pkgDir string, flags ...string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "wasmtest")
	if err != nil {
		return nil, fmt.Errorf("wasmtest: temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "module.wasm")
	args := append([]string{"build", "-buildmode=c-shared", "-trimpath"}, flags...)
	args = append(args, "-o", out, pkgDir)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("wasmtest: build %s: %w\n%s", pkgDir, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("wasmtest: read module: %w", err)
	}
	return b, nil
}

// Main is the body of a TestMain: it builds pkgDir into *module with Build,
// then runs the tests and returns their exit code (1 when the build fails),
// for use as os.Exit(wasmtest.Main(m, ".", &wasmModule)).
func Main(m *testing.M, pkgDir string, module *[]byte, flags ...string) int {
	b, err := Build(pkgDir, flags...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*module = b
	return m.Run()
}

// NewHost starts a host (one Envoy) for cfg and closes it when t ends, so a
// test needs no teardown of its own.
func NewHost(t testing.TB, cfg wasmhost.Config) *wasmhost.Host {
	t.Helper()
	ctx := context.Background()
	h, err := wasmhost.NewHost(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close(ctx) })
	return h
}

// NewVM starts a worker VM on h and closes it when t ends (before h, since
// cleanups run last-in first-out).
func NewVM(t testing.TB, h *wasmhost.Host) *wasmhost.VM {
	t.Helper()
	ctx := context.Background()
	vm, err := h.NewVM(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { vm.Close(ctx) })
	return vm
}

// Crossings is what one request costs in calls between host and guest.
type Crossings struct {
	// Callbacks are calls into the module per request (proxy_on_*, the allocator included).
	Callbacks float64
	// HostCalls are host functions the module called per request (WASI included).
	HostCalls float64
	// ByName is the per-request count of each call, "guest.<export>" or "<module>.<function>".
	ByName map[string]float64
}

// String lists the totals and every call by count, most frequent first.
func (c Crossings) String() string {
	names := slices.Collect(maps.Keys(c.ByName))
	slices.SortFunc(names, func(a, b string) int {
		if d := cmp.Compare(c.ByName[b], c.ByName[a]); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	var s strings.Builder
	fmt.Fprintf(&s, "%.1f callbacks, %.1f host calls per request", c.Callbacks, c.HostCalls)
	for _, n := range names {
		fmt.Fprintf(&s, "\n  %6.2f %s", c.ByName[n], n)
	}
	return s.String()
}

// CountCrossings runs request n times on vm with call counting on and
// returns the calls per request.
func CountCrossings(t testing.TB, vm *wasmhost.VM, n int, request func()) Crossings {
	t.Helper()
	vm.CountCalls()
	for range n {
		request()
	}
	c := Crossings{ByName: map[string]float64{}}
	for name, v := range vm.Calls() {
		per := float64(v) / float64(n)
		c.ByName[name] = per
		if strings.HasPrefix(name, "guest.") {
			c.Callbacks += per
		} else {
			c.HostCalls += per
		}
	}
	return c
}
