package envoytest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvCI names the variable CI systems set. With CI=true a real-Envoy test
// that cannot run (no Envoy, no build/*.wasm) fails instead of skipping.
const EnvCI = "CI"

// PackageSuffix is appended to a module's path to name the file where `make
// build` records the Go package the module was built from (build/<name>.wasm
// → build/<name>.wasm.pkg holding "./filters/<name>").
const PackageSuffix = ".pkg"

// InCI reports whether CI is set to a true value ("true", "1", …).
func InCI() bool {
	v, err := strconv.ParseBool(os.Getenv(EnvCI))
	return err == nil && v
}

// skipShort skips real-Envoy tests under -short, which `make unit` uses.
func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("envoytest: skipped under -short: this test runs real Envoy (make e2e runs it)")
	}
}

// unavailable skips t, or fails it in CI, because what a real-Envoy test
// needs is missing.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("envoytest: %s (%s=true: real-Envoy tests must run)", msg, EnvCI)
	}
	t.Skipf("envoytest: skipped: %s (with %s=true this fails)", msg, EnvCI)
}

// fresh remembers, per module path and modification time, the result of
// checking a module against its sources, so each test binary runs `go list`
// once per module.
var fresh sync.Map // string → error

// checkFresh fails when wasm is older than one of the files of the main
// module that the package it was built from depends on (for GOOS=wasip1),
// or than go.mod and go.sum. The package is the one `make build` recorded
// next to the module; a module without that record (built by hand) is the
// filter module FilterModules finds under that name, and is not checked
// otherwise.
func checkFresh(wasm string) error {
	st, err := os.Stat(wasm)
	if err != nil {
		return err
	}
	memo := wasm + "@" + st.ModTime().String()
	if v, ok := fresh.Load(memo); ok {
		err, _ := v.(error)
		return err
	}
	err = staleness(wasm, st.ModTime())
	fresh.Store(memo, err)
	return err
}

func staleness(wasm string, built time.Time) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	pkg, err := modulePackage(root, wasm)
	if err != nil || pkg == "" {
		return err
	}
	files, err := sourceFiles(root, pkg)
	if err != nil {
		return err
	}
	var newest string
	var newestAt time.Time
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("%s: %w", wasm, err)
		}
		if fi.ModTime().After(newestAt) {
			newest, newestAt = f, fi.ModTime()
		}
	}
	if newestAt.After(built) {
		rel, _ := filepath.Rel(root, newest)
		return fmt.Errorf("%s is stale: %s changed after it was built (%s > %s): run `make build`",
			wasm, rel, newestAt.Format(time.RFC3339Nano), built.Format(time.RFC3339Nano))
	}
	return nil
}

// modulePackage is the package wasm was built from, relative to root.
func modulePackage(root, wasm string) (string, error) {
	b, err := os.ReadFile(wasm + PackageSuffix)
	if err == nil {
		pkg := strings.TrimSpace(string(b))
		if pkg == "" || strings.ContainsAny(pkg, "\n\x00") {
			return "", fmt.Errorf("%s%s: want one package path, got %q", wasm, PackageSuffix, b)
		}
		return pkg, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	mods, err := FilterModules(root)
	if err != nil {
		return "", err
	}
	name := strings.TrimSuffix(filepath.Base(wasm), ".wasm")
	for _, m := range mods {
		if m.Name == name {
			return "./" + m.Dir, nil
		}
	}
	return "", nil
}

// sourceFiles lists go.mod, go.sum and every Go and embedded file of the
// main module's packages that pkg depends on when built for Wasm.
func sourceFiles(root, pkg string) ([]string, error) {
	const format = `{{if and .Module .Module.Main}}{{$d := .Dir}}` +
		`{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}` +
		`{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}`
	cmd := exec.Command("go", "list", "-deps", "-f", format, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps %s: %w: %s", pkg, err, strings.TrimSpace(stderr.String()))
	}
	files := []string{filepath.Join(root, "go.mod")}
	if _, err := os.Stat(filepath.Join(root, "go.sum")); err == nil {
		files = append(files, filepath.Join(root, "go.sum"))
	}
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" {
			files = append(files, l)
		}
	}
	return files, nil
}
