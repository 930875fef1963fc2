package demo

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/picker/pick"
	"github.com/tollgate/tollgate/internal/tree"
	"github.com/tollgate/tollgate/keystore"
	"github.com/tollgate/tollgate/keystore/client"
	"github.com/tollgate/tollgate/keystore/store"
)

// TestRenderPicker: with Picker the picker runs after modelroute in
// modelroute's VM (the suite module): as the fused filter's last section, or
// as its own filter right after modelroute's. Its configuration is one the
// picker accepts, the model clusters go where it says, and its picks and
// labels reach the access log and the stats.
func TestRenderPicker(t *testing.T) {
	for _, tc := range []struct {
		example string
		chain   []string
	}{
		{"gateway.yaml", []string{"apikey", "quota", "modelroute", "tokencount", "picker"}},
		{"gateway-filters.yaml", []string{"apikey", "quota", "modelroute", "picker", "tokencount"}},
	} {
		t.Run(tc.example, func(t *testing.T) { testRenderPicker(t, tc.example, tc.chain) })
	}
}

func testRenderPicker(t *testing.T, example string, chain []string) {
	t.Setenv(DataTokenEnv, "demo-test-token-0123456789")
	doc := renderedFrom(t, example, RenderOptions{
		Listen: "127.0.0.1:18080", Keystore: "127.0.0.1:18420",
		Upstream: Upstream{Host: "127.0.0.1", Port: 18001}, BuildDir: "/opt/build", Picker: true,
	})
	h := hcm(t, doc)
	names, pols := policies(t, h)
	assert.Equal(t, append(chain, "envoy.filters.http.header_to_metadata", "envoy.filters.http.router"), names)
	var mr, pk policy
	for _, p := range pols {
		switch p.name {
		case "modelroute":
			mr = p
		case "picker":
			pk = p
		}
	}
	require.NotNil(t, pk.filter)
	if example != "gateway.yaml" {
		assert.Equal(t, "picker", pk.filter["root_id"])
	}
	assert.Equal(t, true, pk.filter["allow_on_headers_stop_iteration"])
	assert.Equal(t, mr.filter["vm_config"], pk.filter["vm_config"], "the picker shares the suite module's VM")
	assert.Equal(t, "tollgate", tree.Dig(t, pk.filter, "vm_config", "vm_id"))
	assert.Equal(t, "/opt/build/tollgate.wasm", tree.Dig(t, pk.filter, "vm_config", "code", "local", "filename"))
	pol, err := pick.Parse(pk.raw)
	require.NoError(t, err)
	assert.Equal(t, KeystoreCluster, pol.PoolsSource.Cluster)
	assert.Equal(t, "/v1/pools", pol.PoolsSource.Path)
	assert.NotEmpty(t, pol.PoolsSource.Token, "the pools call carries the data-plane token")
	assert.Equal(t, 0, pol.Fallbacks, "ORIGINAL_DST takes one address")

	for _, name := range ModelClusters() {
		c := clusterByName(t, doc, name)
		assert.Equal(t, "ORIGINAL_DST", c["type"], name)
		assert.Equal(t, "CLUSTER_PROVIDED", c["lb_policy"], name)
		assert.Equal(t, pickerDestination, tree.Dig(t, c, "original_dst_lb_config", "http_header_name"), name)
		assert.NotContains(t, c, "load_assignment", name)
	}
	assert.Equal(t, "pool_a", pol.ScrapeCluster)
	assert.Equal(t, "%FILTER_STATE(wasm.tollgate.picker.pick:PLAIN)%",
		tree.Dig(t, h, "access_log", 0, "typed_config", "log_format", "json_format", "pick"))
	var tags []string
	for _, st := range tree.Dig(t, doc, "stats_config", "stats_tags").([]any) {
		tags = append(tags, st.(map[string]any)["tag_name"].(string))
	}
	assert.Contains(t, tags, "endpoint")

	// Without Picker nothing changes.
	plain := renderedFrom(t, example, RenderOptions{Upstream: Upstream{Host: "127.0.0.1", Port: 18001}})
	assert.Equal(t, "STATIC", clusterByName(t, plain, "pool_a")["type"])
	plainNames, _ := policies(t, hcm(t, plain))
	assert.Equal(t, []string{"apikey", "quota", "modelroute", "tokencount", "envoy.filters.http.header_to_metadata", "envoy.filters.http.router"}, plainNames)
}

func TestApplyPickerPool(t *testing.T) {
	b, err := store.OpenBackend(context.Background(), store.BackendOptions{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	st, err := b.Keystore()
	require.NoError(t, err)
	svc, err := keystore.New(keystore.Config{Store: st, AdminToken: "demo-admin-token-0123456789"})
	require.NoError(t, err)
	srv := httptest.NewServer(svc.AdminHandler())
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, "demo-admin-token-0123456789")
	require.NoError(t, err)

	ctx := context.Background()
	require.NoError(t, ApplyPickerPool(ctx, c, []string{"127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"}))
	require.NoError(t, ApplyPickerPool(ctx, c, []string{"127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"}), "applying again is harmless")
	p, err := c.GetPool(ctx, PickerPool)
	require.NoError(t, err)
	require.Len(t, p.Endpoints, 3)
	assert.Equal(t, "127.0.0.1:8002", p.Endpoints[2].Address)
	assert.Equal(t, "sim-3", p.Endpoints[2].Labels["server"])
	assert.ErrorContains(t, ApplyPickerPool(ctx, c, []string{"localhost:8000"}), "not ip:port")
}
