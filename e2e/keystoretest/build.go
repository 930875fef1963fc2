// Package keystoretest runs the real `tollgate serve` keystore for end-to-end
// tests: it builds the tollgate CLI once per test binary, starts the service
// on free loopback ports, waits until it answers /healthz, runs CLI
// subcommands against it, restarts it on the same ports and data, and stops
// it when the test ends.
package keystoretest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// CLIPackage is the import path, relative to the repository root, of the
// tollgate CLI that Start runs.
const CLIPackage = "./cmd/tollgate"

// build is one `go build` of a package, done at most once.
type build struct {
	once sync.Once
	path string
	err  error
}

// builds caches the binaries this test binary built; it is test-process
// scoped state, like a sync.Once, so every package builds its programs once.
var builds = struct {
	mu    sync.Mutex
	dir   string
	byPkg map[string]*build
}{byPkg: map[string]*build{}}

// Build compiles the main package pkg (a path relative to the repository
// root, such as CLIPackage) into a temporary directory once per test binary
// and returns the binary's path; later calls return the same path.
func Build(pkg string) (string, error) {
	builds.mu.Lock()
	b, ok := builds.byPkg[pkg]
	if !ok {
		b = &build{}
		builds.byPkg[pkg] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() { b.path, b.err = compile(pkg) })
	return b.path, b.err
}

// compile runs `go build -o <dir>/<name> pkg` in the repository root.
func compile(pkg string) (string, error) {
	builds.mu.Lock()
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "tollgate-e2e-bin-")
		if err != nil {
			builds.mu.Unlock()
			return "", fmt.Errorf("keystoretest: temp dir: %w", err)
		}
		builds.dir = dir
	}
	dir := builds.dir
	builds.mu.Unlock()
	root, err := envoytest.RepoRoot()
	if err != nil {
		return "", fmt.Errorf("keystoretest: %w", err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("keystoretest: go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// Bin returns the tollgate CLI built once per test binary, failing the test
// when it does not build.
func Bin(t testing.TB) string {
	t.Helper()
	p, err := Build(CLIPackage)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// RemoveBuilds deletes the binaries Build made; TestMain calls it after
// m.Run so no temporary directory outlives the test binary.
func RemoveBuilds() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
		builds.dir = ""
	}
	builds.byPkg = map[string]*build{}
}

// Main is a whole TestMain body: it builds the tollgate CLI before any test
// runs (so build time never lands inside a test or benchmark), runs the
// tests and removes the build. Use it as os.Exit(keystoretest.Main(m)).
func Main(m *testing.M) int {
	defer RemoveBuilds()
	if _, err := Build(CLIPackage); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
