package wasmhost

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
)

// Test modules built once by TestMain from testdata/.
var (
	rawWasm           []byte
	initCallWasm      []byte
	missingImportWasm []byte
	testCache         wazero.CompilationCache
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "wasmhost-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	build := func(name string) ([]byte, error) {
		out := filepath.Join(dir, name+".wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./testdata/"+name)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %w: %s", name, err, b)
		}
		return os.ReadFile(out)
	}
	for _, mod := range []struct {
		name string
		dst  *[]byte
	}{{"rawplugin", &rawWasm}, {"initcall", &initCallWasm}, {"missingimport", &missingImportWasm}} {
		b, err := build(mod.name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		*mod.dst = b
	}
	testCache = NewCompilationCache()
	defer testCache.Close(context.Background())
	return m.Run()
}

// newHost builds a host on the raw test module with test defaults.
func newHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	if cfg.Module == nil {
		cfg.Module = rawWasm
	}
	if cfg.PluginName == "" {
		cfg.PluginName = "rawplug"
	}
	if cfg.RootID == "" {
		cfg.RootID = "rawroot"
	}
	if cfg.VMID == "" {
		cfg.VMID = "rawvm"
	}
	cfg.CompilationCache = testCache
	h, err := NewHost(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

func newVM(t testing.TB, h *Host) *VM {
	t.Helper()
	vm, err := h.NewVM(context.Background())
	require.NoError(t, err)
	return vm
}

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// logsWith returns the VM log messages containing substr.
func logsWith(vm *VM, substr string) []string {
	var out []string
	for _, e := range vm.Logs() {
		if strings.Contains(e.Message, substr) {
			out = append(out, e.Message)
		}
	}
	return out
}

// callbacks returns the proxy_on_* callback log lines, in order.
func callbacks(vm *VM) []string {
	var out []string
	for _, e := range vm.Logs() {
		if strings.HasPrefix(e.Message, "on_") {
			out = append(out, e.Message)
		}
	}
	return out
}
