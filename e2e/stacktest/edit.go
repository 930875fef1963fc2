package stacktest

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// Dig walks a parsed YAML document by map keys (string) and list indexes
// (int), failing the test when the path does not exist.
func Dig(t testing.TB, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			require.True(t, ok, "not a map at %q", k)
			v, ok = m[k]
			require.True(t, ok, "no key %q", k)
		case int:
			l, ok := v.([]any)
			require.True(t, ok, "not a list at %d", k)
			require.Less(t, k, len(l))
			v = l[k]
		}
	}
	return v
}

// HCM is the gateway listener's HTTP connection manager configuration.
func HCM(t testing.TB, doc map[string]any) map[string]any {
	t.Helper()
	return Dig(t, doc, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config").(map[string]any)
}

// WasmFilter is an envoy.filters.http.wasm entry for build/<module>.wasm
// (envoytest.WasmPath: absolute, built and fresh) with its own vm_id,
// copying the failure policy of the chain's first filter so it behaves
// like the shipped ones.
func WasmFilter(t testing.TB, doc map[string]any, name, module, config string, stopIteration bool) map[string]any {
	t.Helper()
	path, err := filepath.Abs(envoytest.WasmPath(t, module))
	require.NoError(t, err)
	first := Dig(t, HCM(t, doc), "http_filters", 0, "typed_config", "config").(map[string]any)
	cfg := map[string]any{
		"name": name, "root_id": name,
		"vm_config": map[string]any{"vm_id": "tollgate-" + name, "runtime": "envoy.wasm.runtime.v8",
			"code": map[string]any{"local": map[string]any{"filename": path}}},
		"configuration": map[string]any{"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config},
	}
	for _, k := range []string{"failure_policy", "reload_config"} {
		if v, ok := first[k]; ok {
			cfg[k] = v
		}
	}
	if stopIteration {
		cfg["allow_on_headers_stop_iteration"] = true
	}
	return map[string]any{"name": name, "typed_config": map[string]any{
		"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": cfg}}
}

// InsertFilter puts f into the HTTP filter chain right after the filter
// named after ("" puts it first).
func InsertFilter(t testing.TB, doc map[string]any, after string, f map[string]any) {
	t.Helper()
	hcm := HCM(t, doc)
	filters := hcm["http_filters"].([]any)
	if after == "" {
		hcm["http_filters"] = append([]any{f}, filters...)
		return
	}
	for i, g := range filters {
		if g.(map[string]any)["name"] == after {
			out := append(append(append([]any{}, filters[:i+1]...), f), filters[i+1:]...)
			hcm["http_filters"] = out
			return
		}
	}
	t.Fatalf("stacktest: no filter %q in the chain", after)
}

// AddCluster adds a STATIC cluster on a loopback host:port.
func AddCluster(t testing.TB, doc map[string]any, name, addr string) {
	t.Helper()
	host, port := HostPort(t, addr)
	static := Dig(t, doc, "static_resources").(map[string]any)
	static["clusters"] = append(static["clusters"].([]any), map[string]any{
		"name": name, "type": "STATIC", "connect_timeout": "1s",
		"load_assignment": map[string]any{"cluster_name": name, "endpoints": []any{map[string]any{
			"lb_endpoints": []any{map[string]any{"endpoint": map[string]any{"address": map[string]any{
				"socket_address": map[string]any{"address": host, "port_value": port}}}}}}}},
	})
}

// AddStatsTags appends stats_tags (name, regex) to the bootstrap.
func AddStatsTags(t testing.TB, doc map[string]any, tags [][2]string) {
	t.Helper()
	sc, ok := doc["stats_config"].(map[string]any)
	if !ok {
		sc = map[string]any{}
		doc["stats_config"] = sc
	}
	list, _ := sc["stats_tags"].([]any)
	for _, tg := range tags {
		list = append(list, map[string]any{"tag_name": tg[0], "regex": tg[1]})
	}
	sc["stats_tags"] = list
}

// AddAccessLogField adds a field to the gateway's JSON access log.
func AddAccessLogField(t testing.TB, doc map[string]any, key, format string) {
	t.Helper()
	f := Dig(t, HCM(t, doc), "access_log", 0, "typed_config", "log_format", "json_format").(map[string]any)
	f[key] = format
}

// FusedOrder is the order of the fused filter's sections (suite/main.go's
// FusedLinks): the order a chain of separate filters must have to be fused.
func FusedOrder() []string {
	return []string{"apikey", "quota", "modelroute", "guard", "tokencount", "picker"}
}

// Fuse turns a chain of separate Tollgate filters loaded from the suite
// module (build/tollgate.wasm) into the one fused filter (root_id
// "tollgate") configured with their configurations as sections, in place of
// the first of them. The filters must be in the fused order; the fused
// filter keeps the first one's VM and failure policy.
func Fuse(t testing.TB, doc map[string]any) {
	t.Helper()
	hcm := HCM(t, doc)
	filters := hcm["http_filters"].([]any)
	sections := map[string]json.RawMessage{}
	var out []any
	var fused map[string]any
	next := 0
	for _, f := range filters {
		cfg, _ := Dig(t, f, "typed_config").(map[string]any)["config"].(map[string]any)
		root, _ := cfg["root_id"].(string)
		order := FusedOrder()
		at := slices.Index(order, root)
		if at < 0 || !strings.HasSuffix(suiteCode(cfg), "tollgate.wasm") {
			out = append(out, f)
			continue
		}
		require.GreaterOrEqual(t, at, next, "stacktest: %s is out of the fused order %v", root, order)
		next = at + 1
		raw := Dig(t, cfg, "configuration", "value").(string)
		require.True(t, json.Valid([]byte(raw)), "stacktest: %s configuration is not JSON", root)
		sections[root] = json.RawMessage(raw)
		if fused != nil {
			continue
		}
		fc := map[string]any{}
		for k, v := range cfg {
			fc[k] = v
		}
		fc["name"], fc["root_id"], fc["allow_on_headers_stop_iteration"] = "tollgate", "tollgate", true
		fused = map[string]any{"name": "tollgate", "typed_config": map[string]any{
			"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": fc}}
		out = append(out, fused)
	}
	require.NotNil(t, fused, "stacktest: no suite filter to fuse")
	value, err := json.Marshal(sections)
	require.NoError(t, err)
	fc := fused["typed_config"].(map[string]any)["config"].(map[string]any)
	fc["configuration"] = map[string]any{"@type": "type.googleapis.com/google.protobuf.StringValue", "value": string(value)}
	hcm["http_filters"] = out
}

// suiteCode is the local file a Wasm filter's VM loads, or "".
func suiteCode(cfg map[string]any) string {
	vmc, _ := cfg["vm_config"].(map[string]any)
	code, _ := vmc["code"].(map[string]any)
	local, _ := code["local"].(map[string]any)
	name, _ := local["filename"].(string)
	return name
}
