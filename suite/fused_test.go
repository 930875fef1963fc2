//go:build !wasip1

package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/apikey/policy"
	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

// fusedKey is the API key of the local key table below.
const fusedKey = "fused-test-key-0123456789"

// fusedConfig is a fused filter without keystore: apikey's local keys
// (identity and a 2-per-minute request quota for the product), quota in
// local mode keyed on that identity, and modelroute.
func fusedConfig() string {
	return `{
 "modelroute": {"models": [{"name": "llama-3.1-8b", "route": "pool-a"},
                           {"name": "gemma-3-1b-it", "aliases": ["gemma"], "backend_model": "/gcs/gemma", "route": "pool-b"}]},
 "apikey": {"local": {"keys": [{"hash": "` + policy.HashKey(fusedKey) + `", "app": "demo", "products": ["p"]}],
            "products": [{"name": "p", "operations": [{"path": "/v1/**"}],
                          "requestQuota": {"limit": 2, "timeUnit": "minute"}}]}},
 "quota": {"mode": "local", "key_sources": [{"identity": true}]}}`
}

func chat(model string, key bool) hosttest.Request {
	r := hosttest.Request{Method: "POST", Path: "/v1/chat/completions",
		Headers: [][2]string{{"content-type", "application/json"}},
		Body:    []byte(`{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`)}
	if key {
		r.Headers = append(r.Headers, [2]string{"x-api-key", fusedKey})
	}
	return r
}

func errCode(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &e), string(body))
	return e.Error.Code
}

// TestFusedFilterRunsTheShippedPolicies runs the real filters as the suite's
// fused filter natively: apikey's identity reaches quota and modelroute in
// the same context, each refusal ends the chain, and modelroute's body
// rewrite reaches the upstream.
func TestFusedFilterRunsTheShippedPolicies(t *testing.T) {
	h := hosttest.New(t, hosttest.Config{Plugin: proxywasm.NewChain(FusedLinks()), RootID: FusedRootID,
		PluginConfig: []byte(fusedConfig()), AllowOnHeadersStopIteration: true})

	res := h.Do(chat("llama-3.1-8b", false))
	assert.Equal(t, 401, res.Status, "apikey refuses first")
	assert.Nil(t, res.Upstream)

	res = h.Do(chat("nope", true))
	assert.Equal(t, 404, res.Status)
	assert.Equal(t, "model_not_found", errCode(t, res.Body), "modelroute refuses after apikey and quota let it through")
	assert.Nil(t, res.Upstream)

	res = h.Do(chat("gemma", true))
	require.Equal(t, 200, res.Status, string(res.Body))
	require.NotNil(t, res.Upstream)
	assert.Equal(t, "pool-b", res.Upstream.Header("x-tollgate-model"))
	assert.Equal(t, "demo", res.Upstream.Header("x-tollgate-app"), "apikey's identity")
	assert.Empty(t, res.Upstream.Header("x-api-key"), "the key never reaches the upstream")
	assert.Contains(t, string(res.Upstream.Body), `"model":"/gcs/gemma"`, "modelroute's rewrite")
	assert.Equal(t, "2", res.Header("x-ratelimit-limit-requests"), "quota read the identity's quota")

	res = h.Do(chat("llama-3.1-8b", true))
	assert.Equal(t, 429, res.Status, "the third request of the minute (the 404 counted too)")
	assert.Nil(t, res.Upstream)
}

func TestFusedFilterConfiguration(t *testing.T) {
	for _, tc := range []struct{ config, err string }{
		{`{"apikey": {"mode": "strip"}, "ratelimit": {}}`, `unknown section "ratelimit"`},
		{`{"quota": {"mode": "nope"}}`, "quota: "},
		{`{}`, "no filter section"},
		{`[]`, "must be a JSON object"},
	} {
		_, err := hosttest.Start(t, hosttest.Config{Plugin: proxywasm.NewChain(FusedLinks()), RootID: FusedRootID,
			PluginConfig: []byte(tc.config), AllowOnHeadersStopIteration: true})
		require.Error(t, err, tc.config)
		assert.True(t, strings.Contains(err.Error(), tc.err), "%s: %v", tc.config, err)
	}
}

// TestFusedFilterWithGuard adds the optional guard section: it runs after
// modelroute (it sees the rewritten body) and its masked body is what the
// upstream gets; a blocked request never reaches it.
func TestFusedFilterWithGuard(t *testing.T) {
	cfg := strings.TrimSuffix(fusedConfig(), "}") +
		`, "guard": {"default": {"request": {"detectors": {"email": "mask", "secrets": "block"}}}}}`
	h := hosttest.New(t, hosttest.Config{Plugin: proxywasm.NewChain(FusedLinks()), RootID: FusedRootID,
		PluginConfig: []byte(cfg), AllowOnHeadersStopIteration: true})

	r := chat("gemma", true)
	r.Body = []byte(`{"model":"gemma","messages":[{"role":"user","content":"mail ada@example.com please"}]}`)
	res := h.Do(r)
	require.Equal(t, 200, res.Status, string(res.Body))
	require.NotNil(t, res.Upstream)
	assert.NotContains(t, string(res.Upstream.Body), "ada@example.com", "guard masked the body")
	assert.Contains(t, string(res.Upstream.Body), `"model":"/gcs/gemma"`, "guard saw modelroute's rewrite")

	r.Body = []byte(`{"model":"gemma","messages":[{"role":"user","content":"key AKIAIOSFODNN7EXAMPLE secret"}]}`)
	res = h.Do(r)
	assert.Equal(t, 400, res.Status, string(res.Body))
	assert.Equal(t, "guard_aws_access_key", errCode(t, res.Body))
	assert.Nil(t, res.Upstream, "a blocked request never reaches the upstream")
}
