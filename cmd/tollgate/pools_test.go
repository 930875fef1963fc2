package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/internal/jsontest"
	"github.com/tollgate/tollgate/keystore"
)

const poolExamples = "../../examples/pools.yaml"

// getPools reads the data-plane pools document the picker polls.
func getPools(t *testing.T, dataAddr, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+dataAddr+keystore.PoolsPath, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(raw)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestPoolsApply(t *testing.T) {
	const tok = "data-plane-token-0123456789"
	dir := t.TempDir()
	srv := startServe(t, map[string]string{keystore.DataTokenEnv: tok}, "--data-dir", dir)
	e := map[string]string{envAdminURL: "http://" + srv.admin, envDataDir: dir}

	r := cli(t, e, "", "pools", "apply", "-f", poolExamples)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "inferencepool/llama-3-8b created\ninferencepool/qwen-sglang created\n", r.stdout)
	r = cli(t, e, "", "pools", "apply", "-f", poolExamples)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 2, strings.Count(r.stdout, " unchanged\n"), "apply is idempotent")

	code, body := getPools(t, srv.data, tok)
	require.Equal(t, 200, code, body)
	assert.Equal(t, []string{"llama-3-8b", "qwen-sglang"}, jsontest.Get([]byte(body), "pools").Pluck("name"))
	assert.Equal(t, "[fd00:2::21]:30000", jsontest.Get([]byte(body), "pools.1.endpoints.1.address").Str())
	assert.Equal(t, "eu-west-1b", jsontest.Get([]byte(body), "pools.0.endpoints.1.labels.zone").Str())
	code, _ = getPools(t, srv.data, "")
	assert.Equal(t, 401, code, "the pools need the data-plane token")

	r = cli(t, e, "", "pools", "list")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `(?m)^llama-3-8b +llama-3-8b +sql-lora,chat-lora +10\.0\.1\.10:8000,10\.0\.1\.11:8000$`, r.stdout)
	assert.Contains(t, r.stdout, "10.0.2.20:30000(sglang)")
	r = cli(t, e, "", "pools", "get", "qwen-sglang")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "sglang", jsontest.Get([]byte(r.stdout), "endpoints.0.engine").Str())

	// A model moves from one pool to another: the order of the documents
	// does not matter (the taker is retried after the giver is applied).
	moved := writeFile(t, "moved.yaml", `apiVersion: tollgate.dev/v1
kind: InferencePool
metadata: {name: qwen-sglang}
spec:
  models: [qwen-2.5-7b, llama-3-8b]
  endpoints: [{address: "10.0.2.20:30000", engine: sglang}]
---
apiVersion: tollgate.dev/v1
kind: InferencePool
metadata: {name: llama-3-8b}
spec:
  models: [llama-3-70b]
  endpoints: [{address: "10.0.1.10:8000"}]
`)
	r = cli(t, e, "", "pools", "apply", "-f", moved)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "inferencepool/llama-3-8b configured\ninferencepool/qwen-sglang configured\n", r.stdout)

	// A real conflict is reported with the document's position.
	clash := writeFile(t, "clash.yaml", "apiVersion: tollgate.dev/v1\nkind: InferencePool\nmetadata: {name: third}\nspec:\n  models: [llama-3-70b]\n  endpoints: [{address: \"10.0.9.9:8000\"}]\n")
	r = cli(t, e, "", "pools", "apply", "-f", clash)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, `clash.yaml:2:7: inferencepool/third: pool "third": model "llama-3-70b" is already served by pool "llama-3-8b": conflict (HTTP 409 conflict)`)

	// --prune makes the files the whole set.
	r = cli(t, e, "", "pools", "apply", "--prune", "-f", writeFile(t, "one.yaml",
		"apiVersion: tollgate.dev/v1\nkind: InferencePool\nmetadata: {name: only}\nspec:\n  endpoints: [{address: \"127.0.0.1:9\"}]\n"))
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "inferencepool/llama-3-8b pruned\ninferencepool/qwen-sglang pruned\ninferencepool/only created\n", r.stdout)
	_, body = getPools(t, srv.data, tok)
	assert.JSONEq(t, `{"pools":[{"name":"only","endpoints":[{"address":"127.0.0.1:9","engine":"vllm"}]}]}`, body)

	r = cli(t, e, "", "pools", "delete", "only")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "pool only deleted\n", r.stdout)
	_, body = getPools(t, srv.data, tok)
	assert.JSONEq(t, `{"pools":[]}`, body)
	r = cli(t, e, "", "pools", "delete", "only")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "not found")
}

func TestPoolsApplyErrors(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, nil, "--data-dir", dir)
	e := map[string]string{envAdminURL: "http://" + srv.admin, envDataDir: dir}

	r := cli(t, e, "", "pools", "apply", "-f", "testdata/invalid-pools.yaml")
	assert.Equal(t, 1, r.code)
	for _, want := range []string{
		`testdata/invalid-pools.yaml:6:12: spec.models[0]: must be an exact model name, not a pattern`,
		`testdata/invalid-pools.yaml:8:16: spec.endpoints[0].address: "vllm-0.vllm:8000" is not ip:port`,
		`testdata/invalid-pools.yaml:10:15: spec.endpoints[1].engine: "ollama" is not an engine (want vllm, sglang, trtllm, triton)`,
		`testdata/invalid-pools.yaml:12:7: spec.endpoints[2]: unknown field "weight" (allowed: address, engine, labels)`,
		`testdata/invalid-pools.yaml:11:16: spec.endpoints[2].address: 10.0.0.1:8000 is listed twice (also endpoints[1])`,
		"nothing applied",
	} {
		assert.Contains(t, r.stderr, want)
	}
	assert.Empty(t, r.stdout)
	r = cli(t, e, "", "pools", "list", "-o", "json")
	assert.Equal(t, "[]\n", r.stdout, "a file with errors applies nothing")

	r = cli(t, e, "", "pools", "apply", "-f", examples)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "apiproduct/chat: apply kind APIProduct with 'tollgate products apply'")
	r = cli(t, e, "", "products", "apply", "-f", poolExamples)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "inferencepool/llama-3-8b: apply kind InferencePool with 'tollgate pools apply'")
	r = cli(t, e, "", "pools", "apply", "-f", os.DevNull)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "nothing to apply")
	r = cli(t, e, "", "pools", "apply", "-f", poolExamples, "--dry-run")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "inferencepool/qwen-sglang valid (dry run)")
	r = cli(t, e, "", "pools", "list", "-o", "json")
	assert.Equal(t, "[]\n", r.stdout, "a dry run applies nothing")
}
