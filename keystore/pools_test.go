package keystore

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/picker/pick"
	"github.com/tollgate/tollgate/internal/jsontest"
)

// pickerAccepts feeds a /v1/pools answer to the picker's own pools-source
// decoder: the keystore must never serve a document the picker refuses.
func pickerAccepts(t *testing.T, body []byte) *pick.Policy {
	t.Helper()
	pol, err := pick.Parse([]byte(`{"scrape_cluster":"s","pools_source":{"cluster":"keystore","path":"/v1/pools"}}`))
	require.NoError(t, err)
	require.NoError(t, pol.SetPools(body), "the picker refuses the keystore's pools: %s", body)
	return pol
}

func TestPoolsApplyAndServe(t *testing.T) {
	const dataToken = "data-plane-token-0123456789"
	h := newHarness(t, func(c *Config) { c.DataToken = dataToken })
	pools := func(auth string) []byte {
		t.Helper()
		rec := do(t, h.svc.DataHandler(), "GET", PoolsPath, nil, auth)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		return rec.Body.Bytes()
	}

	assert.JSONEq(t, `{"pools":[]}`, string(pools("Bearer "+dataToken)), "no pools yet: an empty list, not null")
	assertError(t, do(t, h.svc.DataHandler(), "GET", PoolsPath, nil, ""), 401, CodeMissingDataToken, "token")
	assertError(t, do(t, h.svc.DataHandler(), "GET", PoolsPath, nil, "Bearer "+testToken), 401, CodeInvalidDataToken, "not valid")

	llama := `{"models":["llama"],"adapters":["sql-lora"],"endpoints":[` +
		`{"address":"10.0.0.1:8000","labels":{"zone":"a"}},{"address":"[fd00::0:2]:8000","engine":"TensorRT-LLM"}]}`
	rec := h.admin(t, "PUT", "/admin/v1/pools/llama", llama)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	assert.Equal(t, "created", rec.Header().Get(ResultHeader))
	assert.Equal(t, "vllm", jsontest.Get(rec.Body.Bytes(), "endpoints.0.engine").Str(), "the default engine is stored")
	assert.Equal(t, "trtllm", jsontest.Get(rec.Body.Bytes(), "endpoints.1.engine").Str())
	assert.Equal(t, "[fd00::2]:8000", jsontest.Get(rec.Body.Bytes(), "endpoints.1.address").Str(), "addresses are stored canonically")

	rec = h.admin(t, "PUT", "/admin/v1/pools/llama", llama)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, "unchanged", rec.Header().Get(ResultHeader))

	require.Equal(t, http.StatusCreated, h.admin(t, "POST", "/admin/v1/pools",
		`{"name":"gemma","models":["gemma"],"endpoints":[{"address":"10.0.0.3:8000","engine":"sglang"}]}`).Code)
	body := pools("Bearer " + dataToken)
	assert.JSONEq(t, `{"pools":[
		{"name":"gemma","models":["gemma"],"endpoints":[{"address":"10.0.0.3:8000","engine":"sglang"}]},
		{"name":"llama","models":["llama"],"adapters":["sql-lora"],"endpoints":[
			{"address":"10.0.0.1:8000","engine":"vllm","labels":{"zone":"a"}},{"address":"[fd00::2]:8000","engine":"trtllm"}]}]}`, string(body))
	pol := pickerAccepts(t, body)
	require.Len(t, pol.Pools, 2)
	assert.Len(t, pol.Endpoints(), 3)

	rec = h.admin(t, "GET", "/admin/v1/pools", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, 2, jsontest.Get(rec.Body.Bytes(), "items").Len())
	assert.NotEmpty(t, jsontest.Get(rec.Body.Bytes(), "items.0.createdAt").Str())

	// A change is served at once: the picker adopts it on its next poll.
	require.Equal(t, http.StatusOK, h.admin(t, "PUT", "/admin/v1/pools/gemma",
		`{"models":["gemma"],"endpoints":[{"address":"10.0.0.4:8000","engine":"sglang"}]}`).Code)
	assert.Contains(t, string(pools("Bearer "+dataToken)), "10.0.0.4:8000")

	require.Equal(t, http.StatusNoContent, h.admin(t, "DELETE", "/admin/v1/pools/gemma", nil).Code)
	assertError(t, h.admin(t, "DELETE", "/admin/v1/pools/gemma", nil), 404, CodeNotFound, "gemma")
	assertError(t, h.admin(t, "GET", "/admin/v1/pools/gemma", nil), 404, CodeNotFound, "gemma")
	pol = pickerAccepts(t, pools("Bearer "+dataToken))
	assert.Len(t, pol.Pools, 1)
	assertError(t, h.admin(t, "POST", "/admin/v1/pools", `{"name":"llama","endpoints":[{"address":"10.0.0.9:1"}]}`), 409, CodeAlreadyExists, "llama")
	assertError(t, do(t, h.svc.AdminHandler(), "GET", "/admin/v1/pools", nil, ""), 401, CodeMissingToken, "admin token")
}

func TestPoolsValidation(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, http.StatusCreated, h.admin(t, "PUT", "/admin/v1/pools/home",
		`{"models":["llama"],"endpoints":[{"address":"10.0.0.1:8000","engine":"vllm"}]}`).Code)
	tests := []struct {
		name, body  string
		status      int
		code, param string
		msgContains string
	}{
		{"no endpoints", `{"models":["x"]}`, 422, CodeValidationFailed, "endpoints", "at least one endpoint"},
		{"host name", `{"endpoints":[{"address":"vllm-0:8000"}]}`, 422, CodeValidationFailed, "endpoints[0].address", "not ip:port"},
		{"no port", `{"endpoints":[{"address":"10.0.0.5"}]}`, 422, CodeValidationFailed, "endpoints[0].address", "not ip:port"},
		{"port 0", `{"endpoints":[{"address":"10.0.0.5:0"}]}`, 422, CodeValidationFailed, "endpoints[0].address", "port"},
		{"port too big", `{"endpoints":[{"address":"10.0.0.5:65536"}]}`, 422, CodeValidationFailed, "endpoints[0].address", "not ip:port"},
		{"unspecified", `{"endpoints":[{"address":"0.0.0.0:80"}]}`, 422, CodeValidationFailed, "endpoints[0].address", "unicast"},
		{"zone", `{"endpoints":[{"address":"[fe80::1%eth0]:80"}]}`, 422, CodeValidationFailed, "endpoints[0].address", "zone"},
		{"duplicate endpoint", `{"endpoints":[{"address":"10.0.0.5:80"},{"address":"10.0.0.5:080"}]}`, 422, CodeValidationFailed, "endpoints[1].address", "listed twice"},
		{"unknown engine", `{"endpoints":[{"address":"10.0.0.5:80","engine":"ollama"}]}`, 422, CodeValidationFailed, "endpoints[0].engine", "not an engine"},
		{"model pattern", `{"models":["llama-*"],"endpoints":[{"address":"10.0.0.5:80"}]}`, 422, CodeValidationFailed, "models[0]", "exact model name"},
		{"model twice", `{"models":["a"],"adapters":["a"],"endpoints":[{"address":"10.0.0.5:80"}]}`, 422, CodeValidationFailed, "adapters[0]", "listed twice"},
		{"bad name", `{"name":"Bad Name","endpoints":[{"address":"10.0.0.5:80"}]}`, 400, CodeInvalidRequest, "name", "does not match"},
		{"unknown field", `{"endpoints":[{"address":"10.0.0.5:80","weight":2}]}`, 400, CodeUnknownField, "", "weight"},
		{"model of another pool", `{"models":["llama"],"endpoints":[{"address":"10.0.0.5:80"}]}`, 409, CodeConflict, "", `already served by pool "home"`},
		{"address with another engine", `{"endpoints":[{"address":"10.0.0.1:8000","engine":"sglang"}]}`, 409, CodeConflict, "", "runs vllm in another pool"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := h.admin(t, "PUT", "/admin/v1/pools/other", tc.body)
			assertError(t, rec, tc.status, tc.code, tc.msgContains)
			if tc.param != "" {
				assert.Equal(t, tc.param, jsontest.Get(rec.Body.Bytes(), "error.param").Str())
			}
			assertError(t, h.admin(t, "GET", "/admin/v1/pools/other", nil), 404, CodeNotFound, "other")
		})
	}
	// The same address with the same engine may serve two pools.
	require.Equal(t, http.StatusCreated, h.admin(t, "PUT", "/admin/v1/pools/other",
		`{"models":["gemma"],"endpoints":[{"address":"10.0.0.1:8000"}]}`).Code)
}
