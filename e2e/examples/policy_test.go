package examples

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/scripts/run-demo/demo"
)

// identityHeaders are the headers the filters pass on inside the gateway;
// none may reach a model server.
var identityHeaders = []string{
	"x-tollgate-app", "x-tollgate-developer", "x-tollgate-product", "x-tollgate-key-id",
	"x-tollgate-allowed-models", "x-tollgate-request-quota", "x-tollgate-token-quota",
	"x-tollgate-model", "x-tollgate-public-model",
}

// shippedConfigs are every Envoy configuration users run: the examples as
// written and the gateway as `make run` renders it (own mock, or an
// external TLS upstream with its API key).
func shippedConfigs(t *testing.T) map[string]map[string]any {
	t.Helper()
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	out := map[string]map[string]any{}
	files, err := filepath.Glob(filepath.Join(root, "examples", "envoy", "*.yaml"))
	require.NoError(t, err)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var doc map[string]any
		require.NoError(t, yaml.Unmarshal(raw, &doc), f)
		out[filepath.Base(f)] = doc
		if filepath.Base(f) != "gateway.yaml" {
			continue
		}
		for name, o := range map[string]demo.RenderOptions{
			"make run": {Listen: "127.0.0.1:8080", Admin: "127.0.0.1:9901", Keystore: "127.0.0.1:8420",
				Upstream: demo.Upstream{Host: "127.0.0.1", Port: 8000}, BuildDir: "/b", AccessLog: "/tmp/a.log"},
			"make run UPSTREAM=https://…": {Upstream: demo.Upstream{TLS: true, Host: "api.example.com", Port: 443, APIKey: "sk-x"}, AnyModel: true},
		} {
			r, err := demo.Render(raw, o)
			require.NoError(t, err)
			var doc map[string]any
			require.NoError(t, yaml.Unmarshal(r, &doc))
			out[name] = doc
		}
	}
	return out
}

// at walks maps and lists ("" when a step is missing).
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// TestShippedConfigPolicy holds every shipped configuration to what a
// security review signs: loopback admin, path normalisation, timeouts and
// limits, OpenAI-shaped local replies that leave the filters' own replies
// alone, identity headers removed before the upstream, and VMs that heal.
// e2e/shipped shows each of these in a running Envoy.
func TestShippedConfigPolicy(t *testing.T) {
	for name, doc := range shippedConfigs(t) {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, "127.0.0.1", at(doc, "admin", "address", "socket_address", "address"), "admin on loopback")
			monitor := at(doc, "overload_manager", "resource_monitors", 0)
			assert.Equal(t, "envoy.resource_monitors.global_downstream_max_connections", at(monitor, "name"))
			assert.NotNil(t, at(monitor, "typed_config", "max_active_downstream_connections"), "a downstream connection limit")
			// V8's start-up compile leaves tens of MiB free in tcmalloc;
			// without a release rate Envoy keeps them for its lifetime.
			release, _ := at(doc, "memory_allocator_manager", "bytes_to_release").(int)
			assert.Positive(t, release, "free memory released to the system (memory_allocator_manager)")

			listeners := at(doc, "static_resources", "listeners").([]any)
			require.NotEmpty(t, listeners)
			for _, l := range listeners {
				hcm := at(l, "filter_chains", 0, "filters", 0, "typed_config").(map[string]any)
				for field, want := range map[string]any{
					"normalize_path": true, "merge_slashes": true, "path_with_escaped_slashes_action": "REJECT_REQUEST",
					"use_remote_address": true, "request_headers_timeout": "10s", "request_timeout": "60s",
					"stream_idle_timeout": "300s", "max_request_headers_kb": 32,
				} {
					assert.Equal(t, want, hcm[field], field)
				}
				assert.Equal(t, "REJECT_REQUEST", at(hcm, "common_http_protocol_options", "headers_with_underscores_action"))
				assert.NotNil(t, at(hcm, "common_http_protocol_options", "idle_timeout"))
				assert.NotNil(t, at(hcm, "common_http_protocol_options", "max_headers_count"))
				assert.NotNil(t, at(hcm, "http2_protocol_options", "max_concurrent_streams"))

				lr := at(hcm, "local_reply_config").(map[string]any)
				assert.NotContains(t, lr, "body_format", "a top-level body_format would wrap the filters' JSON errors again")
				mappers := lr["mappers"].([]any)
				require.NotEmpty(t, mappers)
				for i, m := range mappers {
					expr, _ := at(m, "filter", "extension_filter", "typed_config", "expression").(string)
					assert.Contains(t, expr, "!response.code_details.startsWith('tollgate_')", "mapper %d must skip the filters' replies", i)
					assert.NotNil(t, at(m, "body_format_override", "json_format", "error", "message"), "mapper %d: OpenAI shape", i)
				}

				vhosts := at(hcm, "route_config", "virtual_hosts").([]any)
				for _, vh := range vhosts {
					removed := map[string]bool{}
					hs, _ := at(vh, "request_headers_to_remove").([]any)
					for _, h := range hs {
						removed[h.(string)] = true
					}
					wasm := wasmFilters(hcm)
					for _, h := range identityHeaders {
						if usesIdentity(wasm, h) {
							assert.True(t, removed[h], "%s reaches the upstream", h)
						}
					}
					for _, r := range at(vh, "routes").([]any) {
						route := at(r, "route").(map[string]any)
						assert.Contains(t, route, "timeout", "every route sets its timeout")
						if route["timeout"] == "0s" {
							assert.NotNil(t, route["idle_timeout"], "a route without a total timeout needs an idle timeout")
							assert.NotNil(t, at(route, "max_stream_duration", "max_stream_duration"))
						}
					}
				}
				for _, f := range wasmFilters(hcm) {
					cfg := at(f, "typed_config", "config").(map[string]any)
					assert.Equal(t, "FAIL_RELOAD", cfg["failure_policy"], "%v: a crashed VM is replaced", f["name"])
					assert.NotContains(t, cfg, "fail_open", "deprecated")
					assert.NotNil(t, at(cfg, "reload_config", "backoff", "base_interval"))
					conf, _ := at(cfg, "configuration", "value").(string)
					for where, ks := range keystores(t, cfg["root_id"], conf) {
						assert.Equal(t, "TOLLGATE_DATA_TOKEN", at(ks, "token_env"), "%v sends the data-plane token", where)
					}
				}
			}
		})
	}
}

// keystores are the keystore blocks of a filter's configuration, by filter:
// its own, or each section's of the fused filter (root_id tollgate).
func keystores(t *testing.T, rootID any, conf string) map[string]any {
	t.Helper()
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(conf), &doc), conf)
	sections := map[string]any{fmt.Sprint(rootID): doc}
	if rootID == "tollgate" {
		sections = doc
	}
	out := map[string]any{}
	for name, sec := range sections {
		if ks := at(sec, "keystore"); ks != nil {
			out[name] = ks
		}
	}
	return out
}

// wasmFilters are the HTTP filters that run a Wasm module.
func wasmFilters(hcm map[string]any) []map[string]any {
	var out []map[string]any
	for _, f := range at(hcm, "http_filters").([]any) {
		fm := f.(map[string]any)
		if at(fm, "typed_config", "config", "vm_config") != nil {
			out = append(out, fm)
		}
	}
	return out
}

// usesIdentity reports whether the chain sets header h: modelroute sets the
// routing headers, apikey the rest; in the fused filter (root_id tollgate)
// they are sections of its configuration.
func usesIdentity(wasm []map[string]any, h string) bool {
	for _, f := range wasm {
		names := []string{fmt.Sprint(f["name"])}
		if at(f, "typed_config", "config", "root_id") == "tollgate" {
			var sections map[string]any
			conf, _ := at(f, "typed_config", "config", "configuration", "value").(string)
			if json.Unmarshal([]byte(conf), &sections) == nil {
				for n := range sections {
					names = append(names, n)
				}
			}
		}
		for _, name := range names {
			if name == "apikey" || (name == "modelroute" && (h == "x-tollgate-model" || h == "x-tollgate-public-model")) {
				return true
			}
		}
	}
	return false
}
