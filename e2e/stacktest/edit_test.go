package stacktest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

func gateway(t *testing.T) map[string]any {
	t.Helper()
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	src, err := os.ReadFile(filepath.Join(root, "examples", "envoy", Example))
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(src, &doc))
	return doc
}

func names(t *testing.T, doc map[string]any) []string {
	t.Helper()
	var out []string
	for _, f := range HCM(t, doc)["http_filters"].([]any) {
		out = append(out, f.(map[string]any)["name"].(string))
	}
	return out
}

func TestEdits(t *testing.T) {
	doc := gateway(t)
	before := names(t, doc)
	require.Contains(t, before, "modelroute")
	InsertFilter(t, doc, "modelroute", map[string]any{"name": "x"})
	InsertFilter(t, doc, "", map[string]any{"name": "first"})
	after := names(t, doc)
	assert.Equal(t, "first", after[0])
	assert.Len(t, after, len(before)+2)
	for i, n := range after {
		if n == "modelroute" {
			assert.Equal(t, "x", after[i+1])
		}
	}

	AddCluster(t, doc, "extra", "127.0.0.1:9")
	clusters := Dig(t, doc, "static_resources", "clusters").([]any)
	assert.Equal(t, "extra", clusters[len(clusters)-1].(map[string]any)["name"])
	assert.Equal(t, 9, Dig(t, clusters[len(clusters)-1], "load_assignment", "endpoints", 0, "lb_endpoints", 0,
		"endpoint", "address", "socket_address", "port_value"))

	n := len(Dig(t, doc, "stats_config", "stats_tags").([]any))
	AddStatsTags(t, doc, [][2]string{{"a", "^x(\\.a\\.([^.]+))$"}})
	assert.Len(t, Dig(t, doc, "stats_config", "stats_tags").([]any), n+1)

	AddAccessLogField(t, doc, "extra", "%REQ(X)%")
	assert.Equal(t, "%REQ(X)%", Dig(t, HCM(t, doc), "access_log", 0, "typed_config", "log_format", "json_format", "extra"))
}

func TestFuseMakesOneFilterOfTheSuiteFilters(t *testing.T) {
	doc := gateway(t)
	Fuse(t, doc)
	assert.Equal(t, []string{"tollgate", "envoy.filters.http.header_to_metadata", "envoy.filters.http.router"}, names(t, doc))
	cfg := Dig(t, HCM(t, doc), "http_filters", 0, "typed_config", "config").(map[string]any)
	assert.Equal(t, "tollgate", cfg["root_id"])
	assert.Equal(t, true, cfg["allow_on_headers_stop_iteration"])
	var sections map[string]any
	require.NoError(t, json.Unmarshal([]byte(Dig(t, cfg, "configuration", "value").(string)), &sections))
	assert.ElementsMatch(t, []string{"apikey", "quota", "modelroute", "tokencount"}, keys(sections))
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
