package envoytest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// EnvEnvoy names the environment variable that overrides the Envoy binary path.
const EnvEnvoy = "TOLLGATE_ENVOY"

// EnvBuildDir names the environment variable that overrides the directory holding build/*.wasm.
const EnvBuildDir = "TOLLGATE_BUILD_DIR"

// RepoRoot returns the repository root: the nearest directory at or above the
// working directory that holds go.mod. Tests run in their package directory, so
// this finds the checkout wherever it lives.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("envoytest: working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("envoytest: no go.mod found above the working directory")
		}
		dir = parent
	}
}

// FindEnvoy returns the Envoy binary to run: $TOLLGATE_ENVOY when set, else
// <repo root>/.venv/bin/envoy. The error tells the reader how to get one.
func FindEnvoy() (string, error) {
	if p := os.Getenv(EnvEnvoy); p != "" {
		if err := executable(p); err != nil {
			return "", fmt.Errorf("envoytest: %s=%q: %w", EnvEnvoy, p, err)
		}
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".venv", "bin", "envoy")
	if err := executable(p); err != nil {
		return "", fmt.Errorf("envoytest: Envoy not found at %s (%w): run `make envoy` in %s, or set %s", p, err, root, EnvEnvoy)
	}
	return p, nil
}

// RequireEnvoy returns the Envoy binary for a real-Envoy test. Under -short
// it skips the test; when no Envoy is found it skips outside CI and fails
// in CI (CI=true), so a CI machine without Envoy can never pass silently.
func RequireEnvoy(t testing.TB) string {
	t.Helper()
	skipShort(t)
	bin, err := FindEnvoy()
	if err != nil {
		unavailable(t, "%v", err)
	}
	return bin
}

// BuildDir returns the directory holding the built filters: $TOLLGATE_BUILD_DIR
// when set, else <repo root>/build.
func BuildDir() (string, error) {
	if d := os.Getenv(EnvBuildDir); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "build"), nil
}

// WasmPath returns the absolute path of build/<name>.wasm for a real-Envoy
// test. Under -short it skips the test; when the module is missing it skips
// (outside CI) or fails (CI=true), saying to run `make build`; when the module
// is older than a source file it was built from, it fails: a stale module
// would test yesterday's code.
func WasmPath(t testing.TB, name string) string {
	t.Helper()
	skipShort(t)
	dir, err := BuildDir()
	if err != nil {
		t.Fatalf("%v", err)
	}
	p, err := filepath.Abs(filepath.Join(dir, name+".wasm"))
	if err != nil {
		t.Fatalf("envoytest: %v", err)
	}
	if _, err := os.Stat(p); err != nil {
		unavailable(t, "%s is missing (%v): run `make build`", p, err)
	}
	if err := checkFresh(p); err != nil {
		t.Fatalf("envoytest: %v", err)
	}
	return p
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// FilterModule is one filter's standalone module: its name (build/<name>.wasm)
// and the main package that builds it, relative to the repository root.
type FilterModule struct {
	Name string
	Dir  string
}

// FilterModules lists the modules `make build` produces, found as the
// Makefile finds them: filters/<name>/wasm/main.go for an importable filter,
// filters/<name>/main.go for one that is still a main package.
func FilterModules(root string) ([]FilterModule, error) {
	var mods []FilterModule
	for _, pattern := range []string{"filters/*/wasm/main.go", "filters/*/main.go"} {
		mains, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(pattern)))
		if err != nil {
			return nil, fmt.Errorf("envoytest: %s: %w", pattern, err)
		}
		for _, m := range mains {
			rel, err := filepath.Rel(root, filepath.Dir(m))
			if err != nil {
				return nil, fmt.Errorf("envoytest: %s: %w", m, err)
			}
			rel = filepath.ToSlash(rel)
			mods = append(mods, FilterModule{Name: strings.Split(rel, "/")[1], Dir: rel})
		}
	}
	return mods, nil
}
