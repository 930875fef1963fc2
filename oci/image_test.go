package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tinyWasm is a valid empty module with a name section.
func tinyWasm(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "tiny.wasm"))
	require.NoError(t, err)
	return b
}

// startRegistry serves go-containerregistry's in-memory registry on loopback
// and returns its host:port.
func startRegistry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestImageShapes(t *testing.T) {
	wasm := tinyWasm(t)
	md := Metadata{Name: "apikey", Version: "v1.2.3", Revision: "abc123", Source: "https://example.com/tollgate"}
	tests := []struct {
		variant    Variant
		configType types.MediaType
		layerTypes []types.MediaType
	}{
		{Compat, types.OCIConfigJSON, []types.MediaType{types.OCILayer}},
		{OCI, MediaTypeWasmConfig, []types.MediaType{MediaTypeWasmConfig, MediaTypeWasmContent}},
	}
	for _, tt := range tests {
		t.Run(string(tt.variant), func(t *testing.T) {
			img, err := Image(wasm, tt.variant, md)
			require.NoError(t, err)
			m, err := img.Manifest()
			require.NoError(t, err)
			assert.Equal(t, types.OCIManifestSchema1, m.MediaType)
			assert.Equal(t, tt.configType, m.Config.MediaType)
			require.Len(t, m.Layers, len(tt.layerTypes))
			for i, want := range tt.layerTypes {
				assert.Equal(t, want, m.Layers[i].MediaType)
			}
			assert.Equal(t, PluginFile, m.Layers[len(m.Layers)-1].Annotations[AnnotationTitle])
			assert.Equal(t, "apikey", m.Annotations[AnnotationTitle])
			assert.Equal(t, "v1.2.3", m.Annotations[AnnotationVersion])
			assert.Equal(t, "abc123", m.Annotations[AnnotationRevision])
			assert.Equal(t, "1970-01-01T00:00:00Z", m.Annotations[AnnotationCreated])

			got, v, err := Extract(img)
			require.NoError(t, err)
			assert.Equal(t, tt.variant, v)
			assert.Equal(t, wasm, got)

			// Reproducible: the same input gives the same digest; a new
			// timestamp gives a new one.
			again, err := Image(wasm, tt.variant, md)
			require.NoError(t, err)
			d1, err := img.Digest()
			require.NoError(t, err)
			d2, err := again.Digest()
			require.NoError(t, err)
			assert.Equal(t, d1, d2)
			md2 := md
			md2.Created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			later, err := Image(wasm, tt.variant, md2)
			require.NoError(t, err)
			d3, err := later.Digest()
			require.NoError(t, err)
			assert.NotEqual(t, d1, d3)
		})
	}
}

func TestOCIVariantRuntimeConfig(t *testing.T) {
	img, err := Image(tinyWasm(t), OCI, Metadata{Name: "quota", RootIDs: []string{"quota", "quota_local"}})
	require.NoError(t, err)
	raw, err := img.RawConfigFile()
	require.NoError(t, err)
	assert.JSONEq(t, `{"type":"envoy_proxy","abiVersions":["proxy_abi_version_0_2_1"],"config":{"root_ids":["quota","quota_local"]}}`, string(raw))
	m, err := img.Manifest()
	require.NoError(t, err)
	layer, err := img.LayerByDigest(m.Layers[0].Digest)
	require.NoError(t, err)
	rc, err := layer.Compressed()
	require.NoError(t, err)
	defer rc.Close()
	first, err := io.ReadAll(rc)
	require.NoError(t, err)
	assert.Equal(t, raw, first, "the config layer repeats the runtime config")
}

func TestCompatLayerHoldsOnlyPluginWasm(t *testing.T) {
	wasm := tinyWasm(t)
	img, err := Image(wasm, Compat, Metadata{Name: "tokencount"})
	require.NoError(t, err)
	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1)
	rc, err := layers[0].Compressed()
	require.NoError(t, err)
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	require.NoError(t, err)
	assert.Equal(t, PluginFile, hdr.Name)
	assert.Equal(t, int64(0o444), hdr.Mode)
	body, err := io.ReadAll(tr)
	require.NoError(t, err)
	assert.Equal(t, wasm, body)
	_, err = tr.Next()
	assert.ErrorIs(t, err, io.EOF)

	// The config's diff id is the uncompressed tar's digest, as container tools check.
	cfg, err := img.ConfigFile()
	require.NoError(t, err)
	diff, err := layers[0].DiffID()
	require.NoError(t, err)
	assert.Equal(t, []v1.Hash{diff}, cfg.RootFS.DiffIDs)
	assert.Equal(t, "wasm", cfg.Architecture)
}

// gzTar makes a tar+gzip with the given files.
func gzTar(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, name := range sortedKeys(files) {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg}))
		_, err := tw.Write(files[name])
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func TestExtractRejectsWhatFetchersReject(t *testing.T) {
	wasm := tinyWasm(t)
	cfg := []byte(`{}`)
	tests := []struct {
		name   string
		layers []blob
		msg    string
	}{
		{"single raw wasm layer", []blob{{data: wasm, mediaType: MediaTypeWasmContent}}, "1 layers, want exactly 2"},
		{"three layers", []blob{{data: cfg, mediaType: MediaTypeWasmConfig}, {data: cfg, mediaType: "application/json"}, {data: wasm, mediaType: MediaTypeWasmContent}}, "3 layers"},
		{"two layers without wasm", []blob{{data: cfg, mediaType: MediaTypeWasmConfig}, {data: cfg, mediaType: "application/json"}}, "no application/vnd.module.wasm.content.layer.v1+wasm layer"},
		{"wasm layer that is not wasm", []blob{{data: cfg, mediaType: MediaTypeWasmConfig}, {data: []byte("hello"), mediaType: MediaTypeWasmContent}}, "not a WebAssembly"},
		{"tar without plugin.wasm", []blob{{data: gzTar(t, map[string][]byte{"filter.wasm": wasm}), mediaType: types.OCILayer}}, "plugin.wasm not found"},
		{"plugin.wasm that is not wasm", []blob{{data: gzTar(t, map[string][]byte{"plugin.wasm": []byte("nope")}), mediaType: types.OCILayer}}, "not a WebAssembly"},
		{"tar layer not gzip", []blob{{data: []byte("plain"), mediaType: types.OCILayer}}, "not gzip"},
		{"uncompressed tar media type", []blob{{data: gzTar(t, map[string][]byte{"plugin.wasm": wasm}), mediaType: types.OCIUncompressedLayer}}, "not a tar+gzip layer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := newArtifact([]byte(`{}`), types.OCIConfigJSON, tt.layers, Metadata{Name: "x"}, time.Unix(0, 0))
			require.NoError(t, err)
			_, _, err = Extract(img)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.msg)
		})
	}

	// A compat image may carry earlier layers (spec and doc layers) and
	// plugin.wasm in a directory, as fetchers take the last layer by base name.
	img, err := newArtifact([]byte(`{}`), types.OCIConfigJSON, []blob{
		{data: gzTar(t, map[string][]byte{"README": []byte("doc")}), mediaType: types.DockerLayer},
		{data: gzTar(t, map[string][]byte{"./plugin.wasm": wasm}), mediaType: types.DockerLayer},
	}, Metadata{Name: "x"}, time.Unix(0, 0))
	require.NoError(t, err)
	got, v, err := Extract(img)
	require.NoError(t, err)
	assert.Equal(t, Compat, v)
	assert.Equal(t, wasm, got)
}

func TestImageRejectsBadInput(t *testing.T) {
	_, err := Image([]byte("not wasm"), Compat, Metadata{Name: "x"})
	assert.ErrorIs(t, err, ErrNotWasm)
	_, err = Image(tinyWasm(t), Compat, Metadata{})
	assert.ErrorContains(t, err, "Name is required")
	_, err = Image(tinyWasm(t), Variant("raw"), Metadata{Name: "x"})
	assert.ErrorContains(t, err, "unknown variant")
	_, err = ParseVariant("raw")
	assert.ErrorContains(t, err, `unknown image variant "raw"`)
	v, err := ParseVariant("oci")
	require.NoError(t, err)
	assert.Equal(t, OCI, v)
}

func TestPushPullRoundTrip(t *testing.T) {
	host := startRegistry(t)
	wasm := tinyWasm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, v := range Variants() {
		t.Run(string(v), func(t *testing.T) {
			img, err := Image(wasm, v, Metadata{Name: "modelroute"})
			require.NoError(t, err)
			ref := host + "/tollgate/modelroute:" + string(v)
			digest, err := Push(ctx, ref, img, RemoteOptions{})
			require.NoError(t, err)

			got, variant, pulled, err := Pull(ctx, ref, RemoteOptions{})
			require.NoError(t, err)
			assert.Equal(t, wasm, got, "byte-identical after the round trip")
			assert.Equal(t, v, variant)
			assert.Equal(t, digest, pulled)

			// By digest too, as WasmPlugin's sha256 pins it.
			got, _, _, err = Pull(ctx, host+"/tollgate/modelroute@"+digest.String(), RemoteOptions{})
			require.NoError(t, err)
			assert.Equal(t, wasm, got)
		})
	}
	_, _, _, err := Pull(ctx, host+"/tollgate/missing:v1", RemoteOptions{})
	assert.ErrorContains(t, err, "fetch manifest")
	_, err = Push(ctx, "UPPER/Case:bad tag", nil, RemoteOptions{})
	assert.ErrorContains(t, err, "image reference")
}

func TestLayoutRoundTrip(t *testing.T) {
	wasm := tinyWasm(t)
	images := map[string]v1.Image{}
	for _, v := range Variants() {
		img, err := Image(wasm, v, Metadata{Name: "apikey"})
		require.NoError(t, err)
		images[string(v)] = img
	}
	dir := filepath.Join(t.TempDir(), "apikey")
	require.NoError(t, WriteLayout(dir, images))
	// Writing again replaces the layout instead of appending duplicates.
	require.NoError(t, WriteLayout(dir, images))
	read, err := ReadLayout(dir)
	require.NoError(t, err)
	require.Len(t, read, 2)
	for tag, img := range read {
		want, err := images[tag].Digest()
		require.NoError(t, err)
		got, err := img.Digest()
		require.NoError(t, err)
		assert.Equal(t, want, got, tag)
		b, v, err := Extract(img)
		require.NoError(t, err)
		assert.Equal(t, Variant(tag), v)
		assert.Equal(t, wasm, b)
	}
	var index struct {
		Manifests []json.RawMessage `json:"manifests"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &index))
	assert.Len(t, index.Manifests, 2)
}

func FuzzExtract(f *testing.F) {
	wasm := tinyWasm(f)
	f.Add(gzTar(f, map[string][]byte{"plugin.wasm": wasm}), true)
	f.Add(gzTar(f, map[string][]byte{"a": []byte("b")}), true)
	f.Add(wasm, false)
	f.Add([]byte{0x1f, 0x8b, 0x08, 0x00}, true)
	f.Fuzz(func(t *testing.T, data []byte, compat bool) {
		layers := []blob{{data: data, mediaType: types.OCILayer}}
		if !compat {
			layers = []blob{{data: []byte(`{}`), mediaType: MediaTypeWasmConfig}, {data: data, mediaType: MediaTypeWasmContent}}
		}
		img, err := newArtifact([]byte(`{}`), types.OCIConfigJSON, layers, Metadata{Name: "fuzz"}, time.Unix(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := Extract(img)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(got, []byte(wasmMagic)) {
			t.Fatalf("extracted a module without the wasm header: %x", got[:min(len(got), 8)])
		}
	})
}
