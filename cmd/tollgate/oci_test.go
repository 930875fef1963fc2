package main

import (
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/oci"
)

const tinyWasm = "../../oci/testdata/tiny.wasm"

func TestOCICommands(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	mod := filepath.Join(dir, "demo.wasm")
	want, err := os.ReadFile(tinyWasm)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(mod, want, 0o644))

	r := cli(t, map[string]string{envSourceDateEpoch: "1767225600"}, "", "oci", "build", "--out", filepath.Join(dir, "oci"), "--version", "v1", mod)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "demo         compat  sha256:")
	assert.Contains(t, r.stdout, "demo         oci     sha256:")
	images, err := oci.ReadLayout(filepath.Join(dir, "oci", "demo"))
	require.NoError(t, err)
	m, err := images["oci"].Manifest()
	require.NoError(t, err)
	assert.Equal(t, "2026-01-01T00:00:00Z", m.Annotations[oci.AnnotationCreated], "SOURCE_DATE_EPOCH stamps the image")

	for _, v := range []string{"compat", "oci"} {
		ref := host + "/tollgate/demo:" + v
		r = cli(t, nil, "", "oci", "push", "--variant", v, mod, ref)
		require.Equal(t, exitOK, r.code, r.stderr)
		assert.True(t, strings.HasPrefix(r.stdout, ref+"@sha256:"), r.stdout)

		out := filepath.Join(dir, v+".wasm")
		r = cli(t, nil, "", "oci", "pull", "-o", out, ref)
		require.Equal(t, exitOK, r.code, r.stderr)
		assert.Contains(t, r.stdout, v+" variant")
		got, err := os.ReadFile(out)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
}

func TestOCICommandErrors(t *testing.T) {
	notWasm := filepath.Join(t.TempDir(), "x.wasm")
	require.NoError(t, os.WriteFile(notWasm, []byte("hello"), 0o644))
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		msg  string
	}{
		{"build without files", nil, []string{"oci", "build"}, exitUsage, "one or more .wasm"},
		{"build missing file", nil, []string{"oci", "build", "--out", t.TempDir(), "/nonexistent.wasm"}, exitError, "read module"},
		{"build not wasm", nil, []string{"oci", "build", "--out", t.TempDir(), notWasm}, exitError, "not a WebAssembly"},
		{"bad created", nil, []string{"oci", "build", "--created", "yesterday", tinyWasm}, exitUsage, "RFC 3339"},
		{"bad epoch", map[string]string{envSourceDateEpoch: "soon"}, []string{"oci", "build", "--out", t.TempDir(), tinyWasm}, exitUsage, "Unix seconds"},
		{"push bad variant", nil, []string{"oci", "push", "--variant", "raw", tinyWasm, "127.0.0.1:1/x:y"}, exitUsage, "unknown image variant"},
		{"push one argument", nil, []string{"oci", "push", tinyWasm}, exitUsage, "want FILE.wasm"},
		{"pull without -o", nil, []string{"oci", "pull", "127.0.0.1:1/x:y"}, exitUsage, "want -o"},
		{"pull unreachable", nil, []string{"oci", "pull", "-o", filepath.Join(t.TempDir(), "o.wasm"), "127.0.0.1:1/x:y"}, exitError, "fetch manifest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, tt.env, "", tt.args...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			assert.Contains(t, r.stderr, tt.msg)
		})
	}
}
