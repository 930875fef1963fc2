package envoytest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// verdictTB records how a helper ended a test: Skip and Fatal stop the
// helper the way testing.T does, by not returning (here: a panic that
// outcome recovers).
type verdictTB struct {
	testing.TB
	skipped, failed string
}

type stopped struct{}

func (v *verdictTB) Helper() {}
func (v *verdictTB) Skipf(format string, args ...any) {
	v.skipped = fmt.Sprintf(format, args...)
	panic(stopped{})
}
func (v *verdictTB) Skip(args ...any) {
	v.skipped = fmt.Sprint(args...)
	panic(stopped{})
}
func (v *verdictTB) Fatalf(format string, args ...any) {
	v.failed = fmt.Sprintf(format, args...)
	panic(stopped{})
}

func outcome(f func(tb testing.TB)) (v *verdictTB) {
	v = &verdictTB{}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stopped); !ok {
				panic(r)
			}
		}
	}()
	f(v)
	return v
}

func TestUnavailableSkipsOutsideCIAndFailsInCI(t *testing.T) {
	tests := []struct {
		ci       string
		wantFail bool
	}{
		{"", false},
		{"false", false},
		{"true", true},
		{"1", true},
	}
	for _, tc := range tests {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv(EnvCI, tc.ci)
			v := outcome(func(tb testing.TB) { unavailable(tb, "no Envoy here") })
			if tc.wantFail {
				assert.Contains(t, v.failed, "no Envoy here")
				assert.Contains(t, v.failed, "CI=true")
				assert.Empty(t, v.skipped)
			} else {
				assert.Contains(t, v.skipped, "no Envoy here")
				assert.Contains(t, v.skipped, "skipped")
				assert.Empty(t, v.failed)
			}
		})
	}
}

func TestRequireEnvoyWithoutEnvoy(t *testing.T) {
	t.Setenv(EnvEnvoy, filepath.Join(t.TempDir(), "no-envoy"))
	t.Setenv(EnvCI, "true")
	v := outcome(func(tb testing.TB) { RequireEnvoy(tb) })
	if testing.Short() {
		assert.Contains(t, v.skipped, "-short", "under -short it skips before looking")
		return
	}
	assert.Contains(t, v.failed, EnvEnvoy, "in CI a missing Envoy fails")
}

// module lays out a one-package module with a built "module" next to it and
// returns the module's path; the sources are dated at src, the module at built.
func module(t *testing.T, src, built time.Time) (root, wasm string) {
	t.Helper()
	root = t.TempDir()
	files := map[string]string{
		"go.mod":           "module example.test/m\n\ngo 1.26\n",
		"lib/lib.go":       "package lib\n\n// X is used by the plugin.\nconst X = 1\n",
		"plugin/main.go":   "package main\n\nimport _ \"example.test/m/lib\"\n\nfunc main() {}\n",
		"other/unused.go":  "package other\n",
		"build/p.wasm":     "\x00asm",
		"build/p.wasm.pkg": "./plugin\n",
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		at := src
		if filepath.Dir(name) == "build" {
			at = built
		}
		require.NoError(t, os.Chtimes(p, at, at))
	}
	t.Chdir(root)
	return root, filepath.Join(root, "build", "p.wasm")
}

func TestStaleModuleIsRefused(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t.Run("fresh", func(t *testing.T) {
		_, wasm := module(t, t0, t0.Add(time.Minute))
		require.NoError(t, checkFresh(wasm))
	})
	t.Run("a dependency changed", func(t *testing.T) {
		root, wasm := module(t, t0, t0.Add(time.Minute))
		lib := filepath.Join(root, "lib", "lib.go")
		require.NoError(t, os.Chtimes(lib, t0.Add(time.Hour), t0.Add(time.Hour)))
		err := checkFresh(wasm)
		require.Error(t, err)
		assert.Contains(t, err.Error(), filepath.Join("lib", "lib.go"))
		assert.Contains(t, err.Error(), "make build")
	})
	t.Run("go.mod changed", func(t *testing.T) {
		root, wasm := module(t, t0, t0.Add(time.Minute))
		require.NoError(t, os.Chtimes(filepath.Join(root, "go.mod"), t0.Add(time.Hour), t0.Add(time.Hour)))
		assert.ErrorContains(t, checkFresh(wasm), "go.mod")
	})
	t.Run("a package it does not import changed", func(t *testing.T) {
		root, wasm := module(t, t0, t0.Add(time.Minute))
		other := filepath.Join(root, "other", "unused.go")
		require.NoError(t, os.Chtimes(other, t0.Add(time.Hour), t0.Add(time.Hour)))
		require.NoError(t, checkFresh(wasm))
	})
	t.Run("a broken package record is an error", func(t *testing.T) {
		_, wasm := module(t, t0, t0.Add(time.Minute))
		require.NoError(t, os.WriteFile(wasm+PackageSuffix, []byte("./nowhere\n"), 0o644))
		assert.ErrorContains(t, checkFresh(wasm), "go list")
	})
}

func TestWasmPathMissingModule(t *testing.T) {
	t.Setenv(EnvBuildDir, t.TempDir())
	t.Setenv(EnvCI, "")
	v := outcome(func(tb testing.TB) { WasmPath(tb, "nothing") })
	if testing.Short() {
		assert.Contains(t, v.skipped, "-short")
		return
	}
	assert.Contains(t, v.skipped, "make build")
}

func TestStaleCheckFindsFilterModulesWithoutRecord(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	root, _ := module(t, t0, t0.Add(time.Minute))
	main := filepath.Join(root, "filters", "demo", "wasm", "main.go")
	require.NoError(t, os.MkdirAll(filepath.Dir(main), 0o755))
	require.NoError(t, os.WriteFile(main, []byte("package main\n\nimport _ \"example.test/m/lib\"\n\nfunc main() {}\n"), 0o644))
	require.NoError(t, os.Chtimes(main, t0, t0))
	wasm := filepath.Join(root, "build", "demo.wasm")
	require.NoError(t, os.WriteFile(wasm, []byte("\x00asm"), 0o644))
	require.NoError(t, os.Chtimes(wasm, t0.Add(time.Minute), t0.Add(time.Minute)))
	require.NoError(t, checkFresh(wasm))
	lib := filepath.Join(root, "lib", "lib.go")
	require.NoError(t, os.Chtimes(lib, t0.Add(time.Hour), t0.Add(time.Hour)))
	require.NoError(t, os.Chtimes(wasm, t0.Add(2*time.Minute), t0.Add(2*time.Minute))) // a new check, not the memo
	assert.ErrorContains(t, checkFresh(wasm), filepath.Join("lib", "lib.go"))
}
