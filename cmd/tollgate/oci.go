package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/tollgate/tollgate/oci"
)

// envSourceDateEpoch is the reproducible-builds convention for timestamps.
const envSourceDateEpoch = "SOURCE_DATE_EPOCH"

// ociMeta holds the metadata flags the oci commands share.
type ociMeta struct {
	version, revision, source, created string
}

func addOCIMetaFlags(fs *flag.FlagSet) *ociMeta {
	m := &ociMeta{}
	fs.StringVar(&m.version, "version", "", "org.opencontainers.image.version annotation")
	fs.StringVar(&m.revision, "revision", "", "org.opencontainers.image.revision annotation (e.g. the git commit)")
	fs.StringVar(&m.source, "source", "", "org.opencontainers.image.source annotation (repository URL)")
	fs.StringVar(&m.created, "created", "", "image timestamp, RFC 3339 (default: $"+envSourceDateEpoch+", else the Unix epoch, for reproducible digests)")
	return m
}

// metadata turns the flags into oci.Metadata for the module at path.
func (m *ociMeta) metadata(e env, path string) (oci.Metadata, error) {
	md := oci.Metadata{Name: strings.TrimSuffix(filepath.Base(path), ".wasm"), Version: m.version, Revision: m.revision, Source: m.source}
	switch {
	case m.created != "":
		t, err := time.Parse(time.RFC3339, m.created)
		if err != nil {
			return md, usagef("--created %q: want RFC 3339, e.g. 2026-01-02T15:04:05Z", m.created)
		}
		md.Created = t
	case e.getenv(envSourceDateEpoch) != "":
		s, err := strconv.ParseInt(e.getenv(envSourceDateEpoch), 10, 64)
		if err != nil {
			return md, usagef("$%s %q: want Unix seconds", envSourceDateEpoch, e.getenv(envSourceDateEpoch))
		}
		md.Created = time.Unix(s, 0)
	}
	return md, nil
}

// runOCIBuild writes an OCI image layout per module with both variants.
func runOCIBuild(_ context.Context, e env, args []string) error {
	fs := newFlags(e, "oci build")
	out := fs.String("out", filepath.Join("build", "oci"), "directory receiving one OCI image layout per module")
	meta := addOCIMetaFlags(fs)
	files, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return usagef("give one or more .wasm files")
	}
	for _, f := range files {
		wasm, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read module: %w", err)
		}
		md, err := meta.metadata(e, f)
		if err != nil {
			return err
		}
		images := map[string]v1.Image{}
		for _, v := range oci.Variants() {
			img, err := oci.Image(wasm, v, md)
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			images[string(v)] = img
		}
		dir := filepath.Join(*out, md.Name)
		if err := oci.WriteLayout(dir, images); err != nil {
			return err
		}
		for _, v := range oci.Variants() {
			d, err := images[string(v)].Digest()
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			fmt.Fprintf(e.stdout, "%-12s %-7s %s  %s:%s\n", md.Name, v, d, dir, v)
		}
	}
	return nil
}

// runOCIPush packages one module and pushes it to a registry.
func runOCIPush(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "oci push")
	variant := fs.String("variant", string(oci.Compat), `image layout: "compat" (one tar+gzip layer holding plugin.wasm) or "oci" (Wasm media types)`)
	insecure := fs.Bool("insecure", false, "allow plain HTTP to the registry (loopback and private addresses use it anyway)")
	meta := addOCIMetaFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("want FILE.wasm REGISTRY/REPOSITORY:TAG")
	}
	v, err := oci.ParseVariant(*variant)
	if err != nil {
		return usagef("--variant: %v", err)
	}
	wasm, err := os.ReadFile(pos[0])
	if err != nil {
		return fmt.Errorf("read module: %w", err)
	}
	md, err := meta.metadata(e, pos[0])
	if err != nil {
		return err
	}
	img, err := oci.Image(wasm, v, md)
	if err != nil {
		return err
	}
	d, err := oci.Push(ctx, pos[1], img, oci.RemoteOptions{Insecure: *insecure})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s@%s\n", pos[1], d)
	return nil
}

// runOCIPull fetches an image as Istio and Envoy Gateway do and writes the module.
func runOCIPull(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "oci pull")
	out := fs.String("o", "", "file to write the module to (required)")
	insecure := fs.Bool("insecure", false, "allow plain HTTP to the registry")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *out == "" {
		return usagef("want -o FILE.wasm REGISTRY/REPOSITORY:TAG")
	}
	wasm, v, d, err := oci.Pull(ctx, pos[0], oci.RemoteOptions{Insecure: *insecure})
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, wasm, 0o644); err != nil {
		return fmt.Errorf("write module: %w", err)
	}
	fmt.Fprintf(e.stdout, "%s: %s variant, %s, %d bytes -> %s\n", pos[0], v, d, len(wasm), *out)
	return nil
}
