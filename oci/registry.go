package oci

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RemoteOptions control how Push and Pull reach a registry.
type RemoteOptions struct {
	// Insecure allows plain HTTP (registries on loopback and private
	// addresses use it anyway).
	Insecure bool
	// Transport overrides the HTTP transport (tests, proxies).
	Transport http.RoundTripper
}

// remoteOptions turns RemoteOptions into go-containerregistry options, with
// credentials from the Docker config (~/.docker/config.json) as docker and
// crane use them.
func (o RemoteOptions) remoteOptions(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	if o.Transport != nil {
		opts = append(opts, remote.WithTransport(o.Transport))
	}
	return opts
}

// parseRef parses an image reference such as registry.example.com/tollgate/apikey:v1.
func (o RemoteOptions) parseRef(ref string) (name.Reference, error) {
	var opts []name.Option
	if o.Insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("oci: image reference %q: %w", ref, err)
	}
	return r, nil
}

// Push uploads img to ref and returns its manifest digest, which WasmPlugin's
// sha256 field and EnvoyExtensionPolicy's image sha256 pin.
func Push(ctx context.Context, ref string, img v1.Image, o RemoteOptions) (v1.Hash, error) {
	r, err := o.parseRef(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Write(r, img, o.remoteOptions(ctx)...); err != nil {
		return v1.Hash{}, fmt.Errorf("oci: push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("oci: digest: %w", err)
	}
	return d, nil
}

// Pull fetches ref as the Wasm fetchers do and returns the module, the
// variant it was stored in and the manifest digest.
func Pull(ctx context.Context, ref string, o RemoteOptions) ([]byte, Variant, v1.Hash, error) {
	r, err := o.parseRef(ref)
	if err != nil {
		return nil, "", v1.Hash{}, err
	}
	desc, err := remote.Get(r, o.remoteOptions(ctx)...)
	if err != nil {
		return nil, "", v1.Hash{}, fmt.Errorf("oci: fetch manifest of %s: %w", ref, err)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, "", v1.Hash{}, fmt.Errorf("oci: %s is not an image: %w", ref, err)
	}
	wasm, v, err := Extract(img)
	if err != nil {
		return nil, "", v1.Hash{}, fmt.Errorf("oci: %s: %w", ref, err)
	}
	return wasm, v, desc.Digest, nil
}

// WriteLayout stores images in an OCI image layout directory (created if
// missing, replaced if present), each tagged with its
// org.opencontainers.image.ref.name, so `crane push` or `oras` can upload
// them later and nothing needs a registry at build time.
func WriteLayout(dir string, images map[string]v1.Image) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("oci: layout %s: %w", dir, err)
	}
	for _, tag := range sortedKeys(images) {
		if err := p.AppendImage(images[tag], layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
			return fmt.Errorf("oci: layout %s: add %s: %w", dir, tag, err)
		}
	}
	return nil
}

// ReadLayout returns the images of a layout directory by ref name.
func ReadLayout(dir string) (map[string]v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("oci: layout %s: %w", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("oci: layout %s: %w", dir, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("oci: layout %s: %w", dir, err)
	}
	out := map[string]v1.Image{}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("oci: layout %s: %w", dir, err)
		}
		out[d.Annotations["org.opencontainers.image.ref.name"]] = img
	}
	return out, nil
}
