package oci_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/e2e/envoytest"
	akpolicy "github.com/tollgate/tollgate/filters/apikey/policy"
	"github.com/tollgate/tollgate/filters/modelroute/route"
	qpolicy "github.com/tollgate/tollgate/filters/quota/policy"
	"github.com/tollgate/tollgate/filters/tokencount/meter"
)

// parsers check a plugin configuration with the filter's own parser, so the
// manifests can never ship a configuration the filter would refuse.
func parsers() map[string]func([]byte) error {
	return map[string]func([]byte) error{
		"apikey":     func(b []byte) error { _, err := akpolicy.ParseConfig(b); return err },
		"quota":      func(b []byte) error { _, err := qpolicy.ParseConfig(b); return err },
		"modelroute": func(b []byte) error { _, err := route.Parse(b); return err },
		"tokencount": func(b []byte) error { _, err := meter.Parse(b); return err },
	}
}

// imageRef is a Tollgate filter image as `make oci` names it.
var imageRef = regexp.MustCompile(`^oci://[a-z0-9.-]+(?::\d+)?/[a-z0-9/._-]+/(apikey|quota|modelroute|tokencount):[A-Za-z0-9._-]+$`)

// pluginConfig is one filter configuration found in a manifest.
type pluginConfig struct {
	where, filter string
	raw           []byte
}

// yamlDocs decodes every document of a multi-document YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var out []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err, path)
		if d != nil {
			out = append(out, d)
		}
	}
}

// toJSON re-encodes a YAML object as the JSON the filter receives.
func toJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// collect finds the filter configurations and image references of a manifest.
func collect(t *testing.T, file string, doc map[string]any) ([]pluginConfig, []string) {
	t.Helper()
	var cfgs []pluginConfig
	var images []string
	spec, _ := doc["spec"].(map[string]any)
	where := file + ":" + doc["kind"].(string)
	switch doc["kind"] {
	case "WasmPlugin":
		images = append(images, spec["url"].(string))
		cfgs = append(cfgs, pluginConfig{where, spec["pluginName"].(string), toJSON(t, spec["pluginConfig"])})
	case "EnvoyExtensionPolicy":
		for _, w := range spec["wasm"].([]any) {
			wm := w.(map[string]any)
			img := wm["code"].(map[string]any)["image"].(map[string]any)
			images = append(images, img["url"].(string))
			cfgs = append(cfgs, pluginConfig{where, wm["rootID"].(string), toJSON(t, wm["config"])})
		}
	case "EnvoyFilter":
		for _, p := range spec["configPatches"].([]any) {
			pm := p.(map[string]any)
			if pm["applyTo"] != "EXTENSION_CONFIG" {
				continue
			}
			v := pm["patch"].(map[string]any)["value"].(map[string]any)
			c := v["typed_config"].(map[string]any)["config"].(map[string]any)
			remote := c["vm_config"].(map[string]any)["code"].(map[string]any)["remote"].(map[string]any)
			images = append(images, remote["http_uri"].(map[string]any)["uri"].(string))
			cfgs = append(cfgs, pluginConfig{where, c["root_id"].(string), []byte(c["configuration"].(map[string]any)["value"].(string))})
			assert.Equal(t, true, c["allow_on_headers_stop_iteration"], "%s: %s reads the body", where, c["root_id"])
		}
	}
	return cfgs, images
}

func TestDeployManifests(t *testing.T) {
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	files, err := filepath.Glob(filepath.Join(root, "deploy", "*", "*.yaml"))
	require.NoError(t, err)
	more, err := filepath.Glob(filepath.Join(root, "deploy", "*.yaml"))
	require.NoError(t, err)
	files = append(files, more...)
	require.NotEmpty(t, files)
	seen := map[string]int{}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		for _, doc := range yamlDocs(t, f) {
			require.NotEmpty(t, doc["apiVersion"], rel)
			require.NotEmpty(t, doc["kind"], rel)
			cfgs, images := collect(t, rel, doc)
			for _, img := range images {
				assert.Regexp(t, imageRef, img, "%s: image reference", rel)
			}
			for _, c := range cfgs {
				parse, ok := parsers()[c.filter]
				require.True(t, ok, "%s: unknown filter %q", c.where, c.filter)
				assert.NoError(t, parse(c.raw), "%s: %s configuration %s", c.where, c.filter, c.raw)
				seen[c.filter]++
			}
		}
	}
	for f := range parsers() {
		assert.Equal(t, 2, seen[f], "%s is configured once for Istio and once for Envoy Gateway", f)
	}

	// The Service Extensions example is apikey's local mode.
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "gcp", "apikey-local.json"))
	require.NoError(t, err)
	require.NoError(t, parsers()["apikey"](raw))
	assert.True(t, strings.Contains(string(raw), `"local"`))
}
