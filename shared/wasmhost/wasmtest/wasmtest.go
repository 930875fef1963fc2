// Package wasmtest holds the plumbing shared by tests that run a filter's
// built module in shared/wasmhost: building the package to a .wasm the way
// the Makefile does, and hosts and worker VMs that close when the test ends.
package wasmtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
