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

// imageRef is a Tollgate image as `make oci` names it: the suite or a filter.
var imageRef = regexp.MustCompile(`^oci://[a-z0-9.-]+(?::\d+)?/[a-z0-9/._-]+/(tollgate|apikey|quota|modelroute|tokencount):[A-Za-z0-9._-]+$`)

// fusedRootID is the suite module's fused filter, whose configuration holds
// each filter's as a section named after it.
const fusedRootID = "tollgate"

// expand replaces a fused filter's configuration by its sections, so each
// is checked by its filter's own parser.
func expand(t *testing.T, cfgs []pluginConfig) []pluginConfig {
	t.Helper()
	var out []pluginConfig
	for _, c := range cfgs {
		if c.filter != fusedRootID {
			out = append(out, c)
			continue
		}
		var sections map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(c.raw, &sections), "%s: %s", c.where, c.raw)
		require.NotEmpty(t, sections, "%s: the fused filter configures no filter", c.where)
		for name, raw := range sections {
			out = append(out, pluginConfig{c.where + ":" + name, name, raw})
		}
	}
	return out
}

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
		assert.Equal(t, "FAIL_RELOAD", spec["failStrategy"], "%s: a crashed VM is replaced", where)
		if keystoreCallers[spec["pluginName"].(string)] {
			vm, _ := spec["vmConfig"].(map[string]any)
			assert.Equal(t, []any{map[string]any{"name": dataTokenEnv, "valueFrom": "HOST"}}, vm["env"], "%s: the token reaches the VM", where)
		}
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
			assert.Equal(t, "FAIL_RELOAD", c["failure_policy"], "%s: %s: a crashed VM is replaced", where, c["root_id"])
			assert.NotContains(t, c, "fail_open", "%s: fail_open is deprecated", where)
			if keystoreCallers[c["root_id"].(string)] || c["root_id"] == fusedRootID {
				ev := c["vm_config"].(map[string]any)["environment_variables"]
				assert.Equal(t, map[string]any{"host_env_keys": []any{dataTokenEnv}}, ev, "%s: the token reaches the VM", where)
			}
		}
	}
	return cfgs, images
}

// keystoreCallers are the filters that call the keystore's data plane and
// so must send its token.
var keystoreCallers = map[string]bool{"apikey": true, "quota": true, "tokencount": true}

// dataTokenEnv carries the data-plane token into the filters' VMs.
const dataTokenEnv = "TOLLGATE_DATA_TOKEN"

func TestDeployManifests(t *testing.T) {
	// The filters read their token from the VM's environment; here, the test's.
	t.Setenv(dataTokenEnv, "deploy-test-data-token")
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
			cfgs = expand(t, cfgs)
			for _, img := range images {
				assert.Regexp(t, imageRef, img, "%s: image reference", rel)
			}
			for _, c := range cfgs {
				parse, ok := parsers()[c.filter]
				require.True(t, ok, "%s: unknown filter %q", c.where, c.filter)
				assert.NoError(t, parse(c.raw), "%s: %s configuration %s", c.where, c.filter, c.raw)
				seen[c.filter]++
				if keystoreCallers[c.filter] {
					var ks struct {
						Keystore map[string]any `json:"keystore"`
					}
					require.NoError(t, json.Unmarshal(c.raw, &ks))
					assert.Equal(t, dataTokenEnv, ks.Keystore["token_env"], "%s: %s sends the data-plane token", c.where, c.filter)
				}
			}
		}
	}
	for f := range parsers() {
		assert.Equal(t, 2, seen[f], "%s is configured once for Istio and once for Envoy Gateway", f)
	}

	// Envoy Gateway cannot say FAIL_RELOAD or VM environment variables: the
	// patch policy sets both, on every filter of the extension policy.
	patches := yamlDocs(t, filepath.Join(root, "deploy", "envoy-gateway", "envoy-patch-policy.yaml"))[0]
	set := map[string]bool{}
	for _, p := range patches["spec"].(map[string]any)["jsonPatches"].([]any) {
		op := p.(map[string]any)["operation"].(map[string]any)
		jp, _ := op["jsonPath"].(string)
		m := regexp.MustCompile(`/tollgate/(\d)'\)\]`).FindStringSubmatch(jp)
		if m != nil {
			set[m[1]+" "+op["path"].(string)+" "+string(toJSON(t, op["value"]))] = true
		}
	}
	// The extension policy holds one filter, the fused one (index 0), which
	// reads the body and calls the keystore.
	ext := yamlDocs(t, filepath.Join(root, "deploy", "envoy-gateway", "extension-policy.yaml"))[0]
	wasm := ext["spec"].(map[string]any)["wasm"].([]any)
	require.Len(t, wasm, 1)
	assert.Equal(t, fusedRootID, wasm[0].(map[string]any)["rootID"])
	assert.True(t, set[`0 /failure_policy "FAIL_RELOAD"`], "FAIL_RELOAD")
	assert.True(t, set[`0 /allow_on_headers_stop_iteration true`], "the body reaches modelroute and tokencount")
	assert.True(t, set[`0 /environment_variables {"host_env_keys":["TOLLGATE_DATA_TOKEN"]}`], "data-plane token")

	// The keystore requires the token: it listens beyond loopback.
	ks := yamlDocs(t, filepath.Join(root, "deploy", "keystore.yaml"))
	assert.Contains(t, string(toJSON(t, ks)), `"name":"TOLLGATE_DATA_TOKEN"`)

	// The Service Extensions example is apikey's local mode.
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "gcp", "apikey-local.json"))
	require.NoError(t, err)
	require.NoError(t, parsers()["apikey"](raw))
	assert.True(t, strings.Contains(string(raw), `"local"`))
}

// hardenedHCM are the connection-manager settings every shipped
// configuration shares (docs/configuration.md, "Limits and timeouts").
var hardenedHCM = []string{"normalize_path", "merge_slashes", "path_with_escaped_slashes_action", "use_remote_address",
	"request_headers_timeout", "request_timeout", "stream_idle_timeout", "max_request_headers_kb",
	"common_http_protocol_options", "http2_protocol_options", "local_reply_config"}

// TestDeployHardening holds the Istio and Envoy Gateway manifests to the
// shipped gateway's limits: the same connection-manager settings as
// examples/envoy/gateway.yaml (compared as JSON, so they cannot drift) and
// every route removing the identity and routing headers.
func TestDeployHardening(t *testing.T) {
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	gw := yamlDocs(t, filepath.Join(root, "examples", "envoy", "gateway.yaml"))[0]
	hcm := gw["static_resources"].(map[string]any)["listeners"].([]any)[0].(map[string]any)["filter_chains"].([]any)[0].(map[string]any)["filters"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)
	vhost := hcm["route_config"].(map[string]any)["virtual_hosts"].([]any)[0].(map[string]any)
	var identity []string
	for _, h := range vhost["request_headers_to_remove"].([]any) {
		identity = append(identity, h.(string))
	}
	require.NotEmpty(t, identity)

	// Istio: one EnvoyFilter merges the settings into the gateway's HCM.
	ef := yamlDocs(t, filepath.Join(root, "deploy", "istio", "gateway-hardening.yaml"))[0]
	patch := ef["spec"].(map[string]any)["configPatches"].([]any)[0].(map[string]any)
	assert.Equal(t, "NETWORK_FILTER", patch["applyTo"])
	assert.Equal(t, "MERGE", patch["patch"].(map[string]any)["operation"])
	merged := patch["patch"].(map[string]any)["value"].(map[string]any)["typed_config"].(map[string]any)
	for _, k := range hardenedHCM {
		require.Contains(t, merged, k, "istio: %s", k)
		assert.JSONEq(t, string(toJSON(t, hcm[k])), string(toJSON(t, merged[k])), "istio: %s differs from gateway.yaml", k)
	}

	// Envoy Gateway: the patch policy adds each setting to the listener's HCM.
	patched := map[string]any{}
	pp := yamlDocs(t, filepath.Join(root, "deploy", "envoy-gateway", "envoy-patch-policy.yaml"))[0]
	for _, p := range pp["spec"].(map[string]any)["jsonPatches"].([]any) {
		op := p.(map[string]any)["operation"].(map[string]any)
		if jp, _ := op["jsonPath"].(string); strings.Contains(jp, "envoy.filters.network.http_connection_manager") {
			patched[strings.TrimPrefix(op["path"].(string), "/")] = op["value"]
		}
	}
	for _, k := range hardenedHCM {
		require.Contains(t, patched, k, "envoy gateway: %s", k)
		assert.JSONEq(t, string(toJSON(t, hcm[k])), string(toJSON(t, patched[k])), "envoy gateway: %s differs from gateway.yaml", k)
	}

	// Every route removes the identity and routing headers.
	for _, d := range yamlDocs(t, filepath.Join(root, "deploy", "istio", "routes.yaml")) {
		if d["kind"] != "VirtualService" {
			continue
		}
		for i, r := range d["spec"].(map[string]any)["http"].([]any) {
			req := r.(map[string]any)["headers"].(map[string]any)["request"].(map[string]any)
			assert.ElementsMatch(t, identity, toStrings(req["remove"]), "istio route %d", i)
		}
	}
	for _, d := range yamlDocs(t, filepath.Join(root, "deploy", "envoy-gateway", "extension-policy.yaml")) {
		if d["kind"] != "HTTPRoute" {
			continue
		}
		for i, r := range d["spec"].(map[string]any)["rules"].([]any) {
			f := r.(map[string]any)["filters"].([]any)[0].(map[string]any)
			assert.Equal(t, "RequestHeaderModifier", f["type"])
			assert.ElementsMatch(t, identity, toStrings(f["requestHeaderModifier"].(map[string]any)["remove"]), "envoy gateway rule %d", i)
		}
	}
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}
