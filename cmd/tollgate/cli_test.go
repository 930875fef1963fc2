package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/internal/jsontest"
	"github.com/tollgate/tollgate/internal/logbuf"
	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/keystore"
	"github.com/tollgate/tollgate/keystore/model"
)

// server is a `tollgate serve` running in-process on loopback port 0.
type server struct {
	data, admin, portal string
	logs                *logbuf.Buffer
	stop                func() int
}

func startServe(t *testing.T, environ map[string]string, args ...string) *server {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready.json")
	logs := &logbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	full := append([]string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--ready-file", ready, "--log-level", "debug"}, args...)
	go func() {
		done <- run(ctx, full, env{getenv: mapEnv(environ), stdin: strings.NewReader(""), stdout: logs, stderr: logs})
	}()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var addrs map[string]string
	for addrs == nil {
		select {
		case code := <-done:
			cancel()
			t.Fatalf("serve exited with %d before it was ready:\n%s", code, logs.String())
		case <-deadline:
			cancel()
			t.Fatalf("serve not ready after 10s:\n%s", logs.String())
		case <-tick.C:
			if raw, err := os.ReadFile(ready); err == nil {
				require.NoError(t, json.Unmarshal(raw, &addrs))
			}
		}
	}
	stopped := false
	var code int
	stop := func() int {
		if stopped {
			return code
		}
		stopped = true
		cancel()
		select {
		case code = <-done:
		case <-time.After(keystore.ShutdownTimeout + 5*time.Second):
			t.Fatal("serve did not stop after cancel")
		}
		return code
	}
	t.Cleanup(func() { stop() })
	return &server{data: addrs["data"], admin: addrs["admin"], portal: addrs["portal"], logs: logs, stop: stop}
}

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

type result struct {
	stdout, stderr string
	code           int
}

func cli(t *testing.T, environ map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, env{getenv: mapEnv(environ), stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb})
	return result{out.String(), errb.String(), code}
}

func verify(t *testing.T, dataAddr string, req map[string]string) (int, string) {
	t.Helper()
	raw, err := json.Marshal(req)
	require.NoError(t, err)
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post("http://"+dataAddr+"/v1/verify", "application/json", bytes.NewReader(raw))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

const examples = "../../examples/products.yaml"

func TestCLIFlow(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, nil, "--data-dir", dir)
	e := map[string]string{envAdminURL: "http://" + srv.admin, envDataDir: dir} // token read from the data dir

	r := cli(t, e, "", "products", "apply", "-f", examples)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "apioperationset/openai-inference created\napioperationset/openai-discovery created\napiproduct/chat created\napiproduct/chat-premium created\n", r.stdout)
	r = cli(t, e, "", "products", "apply", "-f", examples)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 4, strings.Count(r.stdout, " unchanged\n"), "apply is idempotent")

	changed := strings.Replace(mustRead(t, examples), "limit: 60\n", "limit: 61\n", 1)
	r = cli(t, e, changed, "products", "apply", "-f", "-")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "apiproduct/chat configured\n")
	assert.Contains(t, r.stdout, "apiproduct/chat-premium unchanged\n")

	r = cli(t, e, "", "products", "list")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "61/1minute calendar")
	r = cli(t, e, "", "products", "get", "chat")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, int64(61), jsontest.Get([]byte(r.stdout), "requestQuota.limit").Int())
	r = cli(t, e, "", "operationsets", "list", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, []string{"openai-discovery", "openai-inference"}, jsontest.Get([]byte(r.stdout), "").Pluck("name"))

	r = cli(t, e, "", "developers", "create", "--email", "ada@example.com", "--name", "Ada Lovelace", "--attr", "team=ml")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, e, "", "developers", "list")
	assert.Contains(t, r.stdout, "Ada Lovelace")
	r = cli(t, e, "", "apps", "create", "demo", "--developer", "ada@example.com", "--products", "chat,chat-premium")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "app demo created for ada@example.com (products: chat,chat-premium)\n", r.stdout)
	r = cli(t, e, "", "apps", "list", "--developer", "ada@example.com")
	assert.Contains(t, r.stdout, "demo")

	r = cli(t, e, "", "keys", "create", "--app", "demo", "--expires", "720h", "--products", "chat")
	require.Equal(t, 0, r.code, r.stderr)
	key := strings.TrimSpace(r.stdout)
	require.True(t, model.WellFormedKey(key), "stdout is exactly the key: %q", r.stdout)
	assert.Contains(t, r.stderr, "only time the key is shown")

	status, body := verify(t, srv.data, map[string]string{"key": key, "method": "POST", "path": "/v1/chat/completions", "model": "llama-3"})
	require.Equal(t, 200, status, body)
	assert.Equal(t, "chat", jsontest.Get([]byte(body), "product").Str())
	assert.Equal(t, int64(61), jsontest.Get([]byte(body), "request_quota.limit").Int())
	status, body = verify(t, srv.data, map[string]string{"key": key, "method": "POST", "path": "/v1/chat/completions", "model": "gpt-4o"})
	assert.Equal(t, 403, status)
	assert.Equal(t, "model_not_allowed", jsontest.Get([]byte(body), "reason").Str())

	r = cli(t, e, "", "keys", "list", "--app", "demo")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stdout, key)
	assert.Contains(t, r.stdout, key[:9]+"…")
	r = cli(t, e, "", "keys", "list", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stdout, key)
	id := jsontest.Get([]byte(r.stdout), "0.id").Str()
	assert.Equal(t, model.HashKey(key), jsontest.Get([]byte(r.stdout), "0.hash").Str(), "the hash is listed for local-mode configs")

	r = cli(t, e, "", "keys", "revoke", id)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "key "+id+" revoked\n", r.stdout)
	status, body = verify(t, srv.data, map[string]string{"key": key})
	assert.Equal(t, 401, status)
	assert.Equal(t, "revoked", jsontest.Get([]byte(body), "reason").Str())
	require.Equal(t, 0, cli(t, e, "", "keys", "approve", id).code)
	status, _ = verify(t, srv.data, map[string]string{"key": key})
	assert.Equal(t, 200, status)

	r = cli(t, e, "", "keys", "create", "--app", "demo", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	second := jsontest.Get([]byte(r.stdout), "key").Str()
	require.True(t, model.WellFormedKey(second))
	require.Equal(t, 0, cli(t, e, "", "keys", "delete", jsontest.Get([]byte(r.stdout), "id").Str()).code)
	status, _ = verify(t, srv.data, map[string]string{"key": second})
	assert.Equal(t, 401, status)

	r = cli(t, e, "", "products", "delete", "chat")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, `used by app(s) "demo"`)
	require.Equal(t, 0, cli(t, e, "", "apps", "delete", "demo").code)
	status, _ = verify(t, srv.data, map[string]string{"key": key})
	assert.Equal(t, 401, status, "deleting the app removed its keys")
	require.Equal(t, 0, cli(t, e, "", "developers", "delete", "ada@example.com").code)
	require.Equal(t, 0, cli(t, e, "", "products", "delete", "chat").code)
	r = cli(t, e, "", "operationsets", "delete", "openai-inference")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "chat-premium")

	assert.Equal(t, 0, srv.stop(), srv.logs.String())
	assert.NotContains(t, srv.logs.String(), key, "keys never appear in logs")
	assert.NotContains(t, srv.logs.String(), key[3:])
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(raw)
}

func TestKeysSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, nil, "--data-dir", dir)
	e := map[string]string{envAdminURL: "http://" + srv.admin, envDataDir: dir}
	require.Equal(t, 0, cli(t, e, "", "products", "apply", "-f", examples).code)
	require.Equal(t, 0, cli(t, e, "", "developers", "create", "ada@example.com").code)
	require.Equal(t, 0, cli(t, e, "", "apps", "create", "demo", "--developer", "ada@example.com", "--products", "chat").code)
	var keys []string
	for range 3 {
		r := cli(t, e, "", "keys", "create", "--app", "demo")
		require.Equal(t, 0, r.code, r.stderr)
		keys = append(keys, strings.TrimSpace(r.stdout))
	}
	token, err := keystore.ReadAdminTokenFile(dir)
	require.NoError(t, err)
	require.Equal(t, 0, srv.stop())

	srv2 := startServe(t, nil, "--data-dir", dir)
	for _, k := range keys {
		status, body := verify(t, srv2.data, map[string]string{"key": k, "method": "GET", "path": "/v1/models"})
		assert.Equal(t, 200, status, body)
	}
	token2, err := keystore.ReadAdminTokenFile(dir)
	require.NoError(t, err)
	assert.Equal(t, token, token2, "the generated admin token is kept")
	r := cli(t, map[string]string{envAdminURL: "http://" + srv2.admin, keystore.AdminTokenEnv: token}, "", "keys", "list")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 4, strings.Count(r.stdout, "\n"), "header plus three keys")
}

func TestServeRedisReplicasShareState(t *testing.T) {
	rs := redistest.Start(t)
	token := "shared-admin-token-0123456789"
	environ := map[string]string{envRedis: rs.URL(), keystore.AdminTokenEnv: token}
	a := startServe(t, environ, "--data-dir", t.TempDir())
	b := startServe(t, nil, "--redis", rs.URL(), "--admin-token", token, "--data-dir", t.TempDir())
	assert.Contains(t, a.logs.String(), "backend=redis")

	ea := map[string]string{envAdminURL: "http://" + a.admin, keystore.AdminTokenEnv: token}
	require.Equal(t, 0, cli(t, ea, "", "products", "apply", "-f", examples).code)
	require.Equal(t, 0, cli(t, ea, "", "developers", "create", "ada@example.com").code)
	require.Equal(t, 0, cli(t, ea, "", "apps", "create", "demo", "--developer", "ada@example.com", "--products", "chat").code)
	r := cli(t, ea, "", "keys", "create", "--app", "demo", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	key, id := jsontest.Get([]byte(r.stdout), "key").Str(), jsontest.Get([]byte(r.stdout), "id").Str()

	status, body := verify(t, b.data, map[string]string{"key": key, "method": "POST", "path": "/v1/completions"})
	require.Equal(t, 200, status, "replica b sees the key created through a: %s", body)
	eb := map[string]string{envAdminURL: "http://" + b.admin, keystore.AdminTokenEnv: token}
	require.Equal(t, 0, cli(t, eb, "", "keys", "revoke", id).code)
	status, body = verify(t, a.data, map[string]string{"key": key})
	assert.Equal(t, 401, status)
	assert.Equal(t, "revoked", jsontest.Get([]byte(body), "reason").Str())
	assert.NotContains(t, a.logs.String()+b.logs.String(), token, "the admin token is never logged")
}

func TestApplyErrors(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, nil, "--data-dir", dir)
	e := map[string]string{envAdminURL: "http://" + srv.admin, envDataDir: dir}

	r := cli(t, e, "", "products", "apply", "-f", "testdata/invalid.yaml")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "testdata/invalid.yaml:9:13: spec.operations[0].path: \"chat\" must start with '/'")
	assert.Contains(t, r.stderr, "testdata/invalid.yaml:12:12: spec.requestQuota.limit must be an integer, got a string")
	assert.Contains(t, r.stderr, "nothing applied")
	assert.Empty(t, r.stdout)
	products := cli(t, e, "", "products", "list", "-o", "json")
	assert.Equal(t, "[]\n", products.stdout, "a file with errors applies nothing")

	r = cli(t, e, "", "products", "apply", "-f", "testdata/unknown-set.yaml")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, `testdata/unknown-set.yaml:2:7: apiproduct/orphan: product "orphan" names operation set(s) "missing": unknown reference (HTTP 422 unknown_reference)`)
	assert.Contains(t, r.stdout, "apiproduct/fine created")

	r = cli(t, e, "", "products", "apply", "-f", examples, "-f", examples)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "is defined twice")

	r = cli(t, e, "", "products", "apply", "-f", "testdata/unknown-set.yaml", "--dry-run")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "apiproduct/orphan valid (dry run)")

	r = cli(t, e, "", "products", "apply", "-f", "testdata/nope.yaml")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "no such file")
}

func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, nil, "--data-dir", dir)
	good := map[string]string{envAdminURL: "http://" + srv.admin, envDataDir: dir}
	wrong := map[string]string{envAdminURL: "http://" + srv.admin, keystore.AdminTokenEnv: "wrong-token-0123456789"}
	noToken := map[string]string{envAdminURL: "http://" + srv.admin, envDataDir: t.TempDir()}
	down := map[string]string{envAdminURL: "http://127.0.0.1:1", keystore.AdminTokenEnv: "whatever-0123456789"}
	tests := []struct {
		name    string
		environ map[string]string
		args    []string
		code    int
		stderr  string
	}{
		{"no command", good, nil, 2, ""},
		{"unknown command", good, []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown subcommand", good, []string{"keys", "rotate"}, 2, `unknown command "keys rotate"`},
		{"unknown flag", good, []string{"keys", "list", "--colour"}, 2, "flag provided but not defined: -colour"},
		{"missing app", good, []string{"keys", "create"}, 2, "want --app NAME"},
		{"missing key id", good, []string{"keys", "revoke"}, 2, "want a key ID"},
		{"apps create without developer", good, []string{"apps", "create", "demo"}, 2, "want NAME --developer"},
		{"apply without file", good, []string{"products", "apply"}, 2, "need at least one -f"},
		{"bad output", good, []string{"keys", "list", "-o", "yaml"}, 2, `-o "yaml"`},
		{"wrong token", wrong, []string{"products", "list"}, 1, "the admin token is not valid (HTTP 401 invalid_admin_token)"},
		{"no token", noToken, []string{"products", "list"}, 1, "no admin token"},
		{"keystore down", down, []string{"products", "list"}, 1, "connection refused"},
		{"bad admin url", map[string]string{envAdminURL: "ftp://x", keystore.AdminTokenEnv: "whatever-0123456789"}, []string{"products", "list"}, 1, "want http://host:port"},
		{"unknown app", good, []string{"keys", "create", "--app", "nope"}, 1, `app "nope": not found (HTTP 404 not_found)`},
		{"bad lifetime", good, []string{"keys", "create", "--app", "nope", "--expires", "soon"}, 1, "expiresIn"},
		{"unknown key", good, []string{"keys", "revoke", "key_0000000000000000"}, 1, "HTTP 404"},
		{"bad developer", good, []string{"developers", "create", "--email", "not-an-email"}, 1, "valid e-mail"},
		{"bad attr", good, []string{"developers", "create", "--email", "a@b.c", "--attr", "novalue"}, 2, "want key=value"},
		{"serve bad log level", good, []string{"serve", "--log-level", "loud"}, 2, "--log-level"},
		{"serve bad ttl", good, []string{"serve", "--cache-ttl", "10ms"}, 2, "at least 1s"},
		{"serve extra arg", good, []string{"serve", "now"}, 2, `unexpected argument "now"`},
		{"serve locked data dir", good, []string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, 1, "locked by another process"},
		{"serve public data plane without token", good, []string{"serve", "--data-dir", t.TempDir(), "--listen", "0.0.0.0:0", "--admin-listen", "127.0.0.1:0"}, 2, "beyond loopback, without a token"},
		{"serve short data token", map[string]string{keystore.DataTokenEnv: "short"}, []string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, 1, "shorter than 16"},
		{"serve short token", good, []string{"serve", "--data-dir", t.TempDir(), "--admin-token", "short"}, 1, "shorter than 16"},
		{"serve bad redis", good, []string{"serve", "--redis", "redis://:secretpw@127.0.0.1:1/0"}, 1, "connect to redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, tt.environ, "", tt.args...)
			assert.Equal(t, tt.code, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
			assert.Contains(t, r.stderr+r.stdout, tt.stderr)
			assert.NotContains(t, r.stderr, "secretpw")
		})
	}
	r := cli(t, good, "", "help")
	assert.Equal(t, 0, r.code)
	assert.Contains(t, r.stdout, "products apply")
	r = cli(t, good, "", "keys", "create", "-h")
	assert.Equal(t, 0, r.code)
	assert.Contains(t, r.stdout, "-expires", "asked-for help is on stdout")
}

func TestServeFailsOnBusyPort(t *testing.T) {
	srv := startServe(t, nil, "--data-dir", t.TempDir())
	r := cli(t, nil, "", "serve", "--data-dir", t.TempDir(), "--listen", srv.data, "--admin-listen", "127.0.0.1:0")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "data plane")
}

func TestWriteReadyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ready.json")
	require.NoError(t, writeReadyFile(path, "127.0.0.1:1", "127.0.0.1:2"))
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.JSONEq(t, `{"data":"127.0.0.1:1","admin":"127.0.0.1:2"}`, string(raw))
	err = writeReadyFile(filepath.Join(t.TempDir(), "missing", "ready.json"), "a", "b")
	require.Error(t, err)
	assert.True(t, errors.Is(err, os.ErrNotExist))
}

// consume charges one request through the counter endpoints mounted on the data plane.
func consume(t *testing.T, dataAddr string, limit int) (int, string) {
	t.Helper()
	body := `{"items":[{"key":{"app":"demo","product":"chat","kind":"requests"},"spec":{"limit":` +
		strconv.Itoa(limit) + `,"interval":1,"timeUnit":"day","window":"calendar"},"n":1}]}`
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post("http://"+dataAddr+"/v1/quota/consume", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(raw)
}

func TestServeMountsQuotaCounters(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		dir := t.TempDir()
		srv := startServe(t, nil, "--data-dir", dir)
		for i := 1; i <= 2; i++ {
			status, body := consume(t, srv.data, 2)
			require.Equal(t, 200, status, body)
			assert.True(t, jsontest.Get([]byte(body), "allowed").Bool(), body)
		}
		status, body := consume(t, srv.data, 2)
		require.Equal(t, 200, status, body)
		assert.False(t, jsontest.Get([]byte(body), "allowed").Bool(), "the third request over a limit of 2 is denied")
		resp, err := http.Get("http://" + srv.data + "/metrics")
		require.NoError(t, err)
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Contains(t, string(m), "tollgate_quota_items_total")
		assert.Contains(t, string(m), "tollgate_keystore_info")
		assert.Contains(t, string(m), `tollgate_keystore_http_requests_total{server="data",route="POST /v1/quota/consume",code="200"} 3`,
			"data-plane calls are counted per endpoint")

		status, raw := leaseCall(t, srv.data, "", 0, 40)
		require.Equal(t, 200, status, string(raw))
		assert.EqualValues(t, 40, jsontest.Get(raw, "results.0.held").Int(), string(raw))
		resp, err = http.Get("http://" + srv.data + "/metrics")
		require.NoError(t, err)
		m, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Contains(t, string(m), `tollgate_keystore_http_requests_total{server="data",route="POST /v1/quota/lease",code="200"} 1`)
		assert.Contains(t, string(m), `tollgate_quota_items_total{endpoint="lease",outcome="ok"} 1`)
		require.Equal(t, 0, srv.stop())

		srv2 := startServe(t, nil, "--data-dir", dir)
		_, body = consume(t, srv2.data, 2)
		assert.False(t, jsontest.Get([]byte(body), "allowed").Bool(), "counts survive a clean restart: %s", body)
	})
	t.Run("redis replicas share counts", func(t *testing.T) {
		rs := redistest.Start(t)
		a := startServe(t, nil, "--redis", rs.URL(), "--admin-token", "shared-admin-token-0123456789", "--data-dir", t.TempDir())
		b := startServe(t, nil, "--redis", rs.URL(), "--admin-token", "shared-admin-token-0123456789", "--data-dir", t.TempDir())
		_, body := consume(t, a.data, 1)
		require.True(t, jsontest.Get([]byte(body), "allowed").Bool(), body)
		_, body = consume(t, b.data, 1)
		assert.False(t, jsontest.Get([]byte(body), "allowed").Bool(), "replica b sees a's count: %s", body)

		// A lease opened on replica a is continued on replica b.
		status, raw := leaseCall(t, a.data, "", 0, 60)
		require.Equal(t, 200, status, raw)
		id := jsontest.Get(raw, "results.0.id").Str()
		require.NotEmpty(t, id, string(raw))
		assert.EqualValues(t, 60, jsontest.Get(raw, "results.0.held").Int(), string(raw))
		status, raw = leaseCall(t, b.data, id, 25, 60)
		require.Equal(t, 200, status, string(raw))
		assert.Equal(t, id, jsontest.Get(raw, "results.0.id").Str(), "the same lease: %s", raw)
		assert.False(t, jsontest.Get(raw, "results.0.lost").Bool(), string(raw))
		assert.EqualValues(t, 60, jsontest.Get(raw, "results.0.held").Int(), string(raw))
		assert.EqualValues(t, 85, jsontest.Get(raw, "results.0.used").Int(), "25 drawn + 60 held: %s", raw)
	})
}

// leaseCall reports used on lease id and asks for want, on a token counter
// limited to 100 a day.
func leaseCall(t *testing.T, dataAddr, id string, used, want int) (int, []byte) {
	t.Helper()
	body := `{"items":[{"key":{"app":"demo","product":"chat","kind":"tokens"},"spec":{"limit":100,"interval":1,"timeUnit":"day"},` +
		`"id":"` + id + `","used":` + strconv.Itoa(used) + `,"want":` + strconv.Itoa(want) + `}]}`
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post("http://"+dataAddr+"/v1/quota/lease", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, raw
}

func TestServeDataToken(t *testing.T) {
	const tok = "data-plane-token-0123456789"
	srv := startServe(t, map[string]string{keystore.DataTokenEnv: tok}, "--data-dir", t.TempDir())
	code, body := verify(t, srv.data, map[string]string{"key": "tg_nope"})
	assert.Equal(t, 401, code)
	assert.Contains(t, body, "missing_data_token")

	req, err := http.NewRequest(http.MethodPost, "http://"+srv.data+"/v1/verify", strings.NewReader(`{"key":"tg_nope"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	require.NoError(t, err)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(raw), `"valid":false`, "with the token the keystore answers the verify itself")
	assert.Contains(t, srv.logs.String(), "the data plane requires a token")
	assert.NotContains(t, srv.logs.String(), tok)
}
