// Package oci packages Tollgate's Wasm filters as OCI images that Istio's
// WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy fetch, and reads such
// images back. Both fetchers accept two layouts of the Wasm image
// specification (github.com/solo-io/wasm/tree/master/spec):
//
//   - Compat: a standard OCI image whose last layer is a tar+gzip holding
//     plugin.wasm; any registry and container tool handles it.
//   - OCI: exactly two layers, the runtime config JSON
//     (application/vnd.module.wasm.config.v1+json) and the raw module
//     (application/vnd.module.wasm.content.layer.v1+wasm).
//
// A single raw-Wasm layer is rejected by both fetchers, so it is never built.
// Images are reproducible: the same module and Metadata give the same digest.
package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types and names of the Wasm image specification.
const (
	// MediaTypeWasmConfig is the runtime config of the oci variant.
	MediaTypeWasmConfig types.MediaType = "application/vnd.module.wasm.config.v1+json"
	// MediaTypeWasmContent is the raw module layer of the oci variant.
	MediaTypeWasmContent types.MediaType = "application/vnd.module.wasm.content.layer.v1+wasm"
	// PluginFile is the file the compat variant's layer must hold.
	PluginFile = "plugin.wasm"
	// runtimeConfigFile names the oci variant's config layer.
	runtimeConfigFile = "runtime-config.json"
	// abiVersion is the proxy-wasm ABI the filters export.
	abiVersion = "proxy_abi_version_0_2_1"
)

// Standard OCI annotation keys set on the manifest.
const (
	AnnotationTitle    = "org.opencontainers.image.title"
	AnnotationVersion  = "org.opencontainers.image.version"
	AnnotationRevision = "org.opencontainers.image.revision"
	AnnotationSource   = "org.opencontainers.image.source"
	AnnotationCreated  = "org.opencontainers.image.created"
)

// Variant is one of the two Wasm image layouts.
type Variant string

// The two layouts both fetchers accept.
const (
	Compat Variant = "compat"
	OCI    Variant = "oci"
)

// Variants lists every supported layout, compat first (the most portable).
func Variants() []Variant { return []Variant{Compat, OCI} }

// ParseVariant reads a variant name as the CLI and Makefile spell it.
func ParseVariant(s string) (Variant, error) {
	switch Variant(s) {
	case Compat, OCI:
		return Variant(s), nil
	}
	return "", fmt.Errorf("unknown image variant %q: want %q or %q", s, Compat, OCI)
}

// Metadata describes the packaged filter.
type Metadata struct {
	// Name is the filter's name ("apikey"), the image title.
	Name string
	// RootIDs are the plugin root ids the module serves (default: Name).
	RootIDs []string
	// Version, Revision and Source become the OCI annotations of the same
	// name when set.
	Version, Revision, Source string
	// Created stamps the image; the zero value means the Unix epoch, so
	// builds are reproducible.
	Created time.Time
}

// ErrNotWasm reports input that is not a WebAssembly binary module.
var ErrNotWasm = errors.New("not a WebAssembly binary module")

// wasmMagic is the start of every binary module: "\0asm" and version 1.
const wasmMagic = "\x00asm\x01\x00\x00\x00"

// checkWasm rejects anything that is not a binary Wasm module.
func checkWasm(wasm []byte) error {
	if !bytes.HasPrefix(wasm, []byte(wasmMagic)) {
		return fmt.Errorf("%w: missing the \\0asm version 1 header", ErrNotWasm)
	}
	return nil
}

// Image packages a Wasm module as an image of the given variant.
func Image(wasm []byte, v Variant, md Metadata) (v1.Image, error) {
	if err := checkWasm(wasm); err != nil {
		return nil, err
	}
	if md.Name == "" {
		return nil, errors.New("oci: Metadata.Name is required")
	}
	created := md.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC()
	switch v {
	case Compat:
		return compatImage(wasm, md, created)
	case OCI:
		return ociImage(wasm, md, created)
	}
	return nil, fmt.Errorf("oci: unknown variant %q", v)
}

// compatImage builds the standard image with one tar+gzip layer.
func compatImage(wasm []byte, md Metadata, created time.Time) (v1.Image, error) {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	hdr := &tar.Header{Name: PluginFile, Mode: 0o444, Size: int64(len(wasm)), ModTime: created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("oci: tar header: %w", err)
	}
	if _, err := tw.Write(wasm); err != nil {
		return nil, fmt.Errorf("oci: tar body: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("oci: tar close: %w", err)
	}
	diffID, _, err := v1.SHA256(bytes.NewReader(tarBuf.Bytes()))
	if err != nil {
		return nil, fmt.Errorf("oci: hash layer: %w", err)
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
	if err != nil {
		return nil, fmt.Errorf("oci: gzip: %w", err)
	}
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return nil, fmt.Errorf("oci: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("oci: gzip: %w", err)
	}
	cfg := v1.ConfigFile{
		Architecture: "wasm",
		OS:           "wasip1",
		Created:      v1.Time{Time: created},
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
		History:      []v1.History{{Created: v1.Time{Time: created}, CreatedBy: "tollgate oci: " + PluginFile, Comment: md.Name}},
		Config:       v1.Config{Labels: map[string]string{AnnotationTitle: md.Name}},
	}
	rawCfg, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("oci: encode config: %w", err)
	}
	return newArtifact(rawCfg, types.OCIConfigJSON, []blob{
		{data: gz.Bytes(), mediaType: types.OCILayer, title: PluginFile},
	}, md, created)
}

// runtimeConfig is the oci variant's config for an Envoy filter.
type runtimeConfig struct {
	Type        string   `json:"type"`
	ABIVersions []string `json:"abiVersions"`
	Config      struct {
		RootIDs []string `json:"root_ids"`
	} `json:"config"`
}

// ociImage builds the two-layer artifact with the Wasm media types.
func ociImage(wasm []byte, md Metadata, created time.Time) (v1.Image, error) {
	rc := runtimeConfig{Type: "envoy_proxy", ABIVersions: []string{abiVersion}}
	rc.Config.RootIDs = md.RootIDs
	if len(rc.Config.RootIDs) == 0 {
		rc.Config.RootIDs = []string{md.Name}
	}
	rawCfg, err := json.Marshal(rc)
	if err != nil {
		return nil, fmt.Errorf("oci: encode runtime config: %w", err)
	}
	return newArtifact(rawCfg, MediaTypeWasmConfig, []blob{
		{data: rawCfg, mediaType: MediaTypeWasmConfig, title: runtimeConfigFile},
		{data: wasm, mediaType: MediaTypeWasmContent, title: PluginFile},
	}, md, created)
}

// blob is one stored piece of an artifact.
type blob struct {
	data      []byte
	mediaType types.MediaType
	title     string
}

// artifact is an in-memory image whose manifest is written exactly as
// built; it implements partial.CompressedImageCore.
type artifact struct {
	config   []byte
	manifest []byte
	layers   map[v1.Hash]blob
}

// newArtifact assembles the manifest for a config and layers.
func newArtifact(config []byte, configType types.MediaType, layers []blob, md Metadata, created time.Time) (v1.Image, error) {
	a := &artifact{config: config, layers: map[v1.Hash]blob{}}
	cfgDesc, err := describe(blob{data: config, mediaType: configType})
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        cfgDesc,
		Annotations:   map[string]string{AnnotationTitle: md.Name, AnnotationCreated: created.Format(time.RFC3339)},
	}
	for k, v := range map[string]string{AnnotationVersion: md.Version, AnnotationRevision: md.Revision, AnnotationSource: md.Source} {
		if v != "" {
			m.Annotations[k] = v
		}
	}
	for _, l := range layers {
		d, err := describe(l)
		if err != nil {
			return nil, err
		}
		m.Layers = append(m.Layers, d)
		a.layers[d.Digest] = l
	}
	if a.manifest, err = json.Marshal(m); err != nil {
		return nil, fmt.Errorf("oci: encode manifest: %w", err)
	}
	img, err := partial.CompressedToImage(a)
	if err != nil {
		return nil, fmt.Errorf("oci: image: %w", err)
	}
	return img, nil
}

// describe makes the descriptor of a blob.
func describe(b blob) (v1.Descriptor, error) {
	h, n, err := v1.SHA256(bytes.NewReader(b.data))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("oci: hash blob: %w", err)
	}
	d := v1.Descriptor{MediaType: b.mediaType, Size: n, Digest: h}
	if b.title != "" {
		d.Annotations = map[string]string{AnnotationTitle: b.title}
	}
	return d, nil
}

// RawConfigFile returns the config blob.
func (a *artifact) RawConfigFile() ([]byte, error) { return a.config, nil }

// MediaType is always an OCI image manifest: both fetchers require one.
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// RawManifest returns the manifest bytes.
func (a *artifact) RawManifest() ([]byte, error) { return a.manifest, nil }

// LayerByDigest returns a layer (or the config, which registries ask for by digest).
func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if b, ok := a.layers[h]; ok {
		return staticLayer{b: b, digest: h}, nil
	}
	return nil, fmt.Errorf("oci: no layer with digest %s", h)
}

// staticLayer serves a blob held in memory.
type staticLayer struct {
	b      blob
	digest v1.Hash
}

// Digest returns the blob's sha256.
func (l staticLayer) Digest() (v1.Hash, error) { return l.digest, nil }

// Compressed returns the blob as stored.
func (l staticLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.b.data)), nil
}

// Size returns the stored size.
func (l staticLayer) Size() (int64, error) { return int64(len(l.b.data)), nil }

// MediaType returns the blob's media type.
func (l staticLayer) MediaType() (types.MediaType, error) { return l.b.mediaType, nil }

// Extract returns the Wasm module of an image and its variant, accepting
// exactly what Istio's and Envoy Gateway's fetchers accept: an image whose
// last layer is a tar+gzip (OCI or Docker media type) holding plugin.wasm,
// or an image of exactly two layers one of which has the Wasm content type.
func Extract(img v1.Image) ([]byte, Variant, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, "", fmt.Errorf("oci: read manifest: %w", err)
	}
	if len(m.Layers) == 0 {
		return nil, "", errors.New("oci: the image has no layers")
	}
	last := m.Layers[len(m.Layers)-1]
	var errCompat error
	if last.MediaType == types.OCILayer || last.MediaType == types.DockerLayer {
		wasm, err := readPlugin(img, last.Digest)
		if err == nil {
			return wasm, Compat, nil
		}
		errCompat = err
	} else {
		errCompat = fmt.Errorf("last layer is %s, not a tar+gzip layer", last.MediaType)
	}
	var errOCI error
	if len(m.Layers) != 2 {
		errOCI = fmt.Errorf("%d layers, want exactly 2", len(m.Layers))
	} else {
		errOCI = fmt.Errorf("no %s layer", MediaTypeWasmContent)
		for _, d := range m.Layers {
			if d.MediaType != MediaTypeWasmContent {
				continue
			}
			wasm, err := readBlob(img, d.Digest)
			if err == nil {
				err = checkWasm(wasm)
			}
			if err == nil {
				return wasm, OCI, nil
			}
			errOCI = err
			break
		}
	}
	return nil, "", fmt.Errorf("oci: not a Wasm image: as compat: %w; as oci: %w", errCompat, errOCI)
}

// readBlob reads a layer's stored bytes.
func readBlob(img v1.Image, h v1.Hash) ([]byte, error) {
	l, err := img.LayerByDigest(h)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", h, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", h, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", h, err)
	}
	return b, nil
}

// maxPluginSize bounds the module read from an archive (Envoy's own limit
// for a Wasm module is far below it).
const maxPluginSize = 256 << 20

// readPlugin finds plugin.wasm in a tar+gzip layer.
func readPlugin(img v1.Image, h v1.Hash) ([]byte, error) {
	raw, err := readBlob(img, h)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("layer %s is not gzip: %w", h, err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s not found in layer %s", PluginFile, h)
		}
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", h, err)
		}
		if path.Base(hdr.Name) != PluginFile || hdr.Typeflag != tar.TypeReg {
			continue
		}
		if hdr.Size > maxPluginSize {
			return nil, fmt.Errorf("%s is %d bytes, more than %d", PluginFile, hdr.Size, maxPluginSize)
		}
		wasm, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", PluginFile, err)
		}
		if err := checkWasm(wasm); err != nil {
			return nil, err
		}
		return wasm, nil
	}
}
