package keystore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/internal/jsontest"
	"github.com/tollgate/tollgate/internal/logbuf"
	"github.com/tollgate/tollgate/keystore/analytics"
	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/keystore/store"
)

const testToken = "test-admin-token-0123456789"

// clock is a settable time source shared by the service and the store.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type harness struct {
	svc   *Service
	store store.Store
	clock *clock
	logs  *logbuf.Buffer
}

func newHarness(t *testing.T, mutate ...func(*Config)) *harness {
	t.Helper()
	b, err := store.OpenBackend(context.Background(), store.BackendOptions{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	clk := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	st, err := b.Keystore(store.WithClock(clk.Now))
	require.NoError(t, err)
	usage, err := analytics.Open(b, analytics.Config{Now: clk.Now})
	require.NoError(t, err)
	logs := &logbuf.Buffer{}
	cfg := Config{
		Store:      st,
		Backend:    b.Kind(),
		AdminToken: testToken,
		Logger:     slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:        clk.Now,
		Analytics:  usage,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	svc, err := New(cfg)
	require.NoError(t, err)
	return &harness{svc: svc, store: cfg.Store, clock: clk, logs: logs}
}

func (h *harness) admin(t *testing.T, method, path string, body any) *httptest.ResponseRecorder {
	t.Helper()
	return do(t, h.svc.AdminHandler(), method, path, body, "Bearer "+testToken)
}

func (h *harness) verify(t *testing.T, body any) *httptest.ResponseRecorder {
	t.Helper()
	return do(t, h.svc.DataHandler(), http.MethodPost, "/v1/verify", body, "")
}

func do(t *testing.T, h http.Handler, method, path string, body any, auth string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		r = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, r)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return raw
}

// seedDemo creates the operation set, the chat product, a developer and an app.
func (h *harness) seedDemo(t *testing.T) {
	t.Helper()
	require.Equal(t, http.StatusCreated, h.admin(t, "POST", "/admin/v1/operationsets", fixture(t, "openai-opset.json")).Code)
	rec := h.admin(t, "POST", "/admin/v1/products", fixture(t, "chat-product.json"))
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	require.Equal(t, http.StatusCreated, h.admin(t, "POST", "/admin/v1/products", `{"name":"embed","operations":[{"path":"/v1/embeddings","methods":["POST"]}],"allowedModels":["text-embed-*"]}`).Code)
	require.Equal(t, http.StatusCreated, h.admin(t, "POST", "/admin/v1/developers", `{"email":"Ada@Example.com","name":"Ada"}`).Code)
	rec = h.admin(t, "POST", "/admin/v1/apps", `{"name":"demo","developer":"ada@example.com","products":["chat","embed"]}`)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
}

func (h *harness) newKey(t *testing.T, app string, body any) model.IssuedKey {
	t.Helper()
	rec := h.admin(t, "POST", "/admin/v1/apps/"+app+"/keys", body)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	var k model.IssuedKey
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &k))
	return k
}

func assertError(t *testing.T, rec *httptest.ResponseRecorder, status int, code, msgContains string) {
	t.Helper()
	require.Equal(t, status, rec.Code, rec.Body.String())
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	body := rec.Body.String()
	assert.Equal(t, code, jsontest.Get([]byte(body), "error.code").Str(), body)
	assert.NotEmpty(t, jsontest.Get([]byte(body), "error.type").Str(), body)
	assert.Contains(t, jsontest.Get([]byte(body), "error.message").Str(), msgContains, body)
}

func TestVerifyDecisions(t *testing.T) {
	h := newHarness(t)
	h.seedDemo(t)
	good := h.newKey(t, "demo", nil)
	chatOnly := h.newKey(t, "demo", `{"products":["chat"]}`)
	expiring := h.newKey(t, "demo", `{"expiresIn":"10s"}`)
	revoked := h.newKey(t, "demo", nil)
	require.Equal(t, http.StatusOK, h.admin(t, "POST", "/admin/v1/keys/"+revoked.ID+"/revoke", nil).Code)
	expired := h.newKey(t, "demo", `{"expiresIn":"1h"}`)
	h.clock.Advance(2 * time.Second)
	unknown, err := model.GenerateKey(nil)
	require.NoError(t, err)

	tests := []struct {
		name      string
		req       map[string]string
		setup     func()
		status    int
		reason    string
		product   string
		ttl       int64
		reqLimit  int64
		reqScope  string
		tokLimit  int64
		opPath    string
		modelsLen int64
	}{
		{name: "chat ok", req: map[string]string{"key": good.Secret, "method": "POST", "path": "/v1/chat/completions", "model": "gemma-3-1b-it"},
			status: 200, product: "chat", ttl: 30, reqLimit: 60, reqScope: "chat", tokLimit: 100000, opPath: "/v1/chat/completions", modelsLen: 2},
		{name: "by hash", req: map[string]string{"key_hash": model.HashKey(good.Secret), "method": "GET", "path": "/v1/models/gemma-3-1b-it?x=1"},
			status: 200, product: "chat", ttl: 30, reqLimit: 60, reqScope: "chat", tokLimit: 100000, opPath: "/v1/models/**", modelsLen: 2},
		{name: "operation quota override", req: map[string]string{"key": good.Secret, "method": "post", "path": "/v1/embeddings", "model": "llama-3"},
			status: 200, product: "chat", ttl: 30, reqLimit: 600, reqScope: "chat:POST:/v1/embeddings", tokLimit: 100000, opPath: "/v1/embeddings", modelsLen: 2},
		{name: "second product by model", req: map[string]string{"key": good.Secret, "method": "POST", "path": "/v1/embeddings", "model": "text-embed-3"},
			status: 200, product: "embed", ttl: 30, opPath: "/v1/embeddings", modelsLen: 1},
		{name: "ttl capped by expiry", req: map[string]string{"key": expiring.Secret, "method": "POST", "path": "/v1/completions"},
			status: 200, product: "chat", ttl: 8, reqLimit: 60, reqScope: "chat", tokLimit: 100000, opPath: "/v1/completions", modelsLen: 2},
		{name: "missing", req: map[string]string{"method": "POST", "path": "/v1/chat/completions"}, status: 401, reason: "missing"},
		{name: "malformed key", req: map[string]string{"key": "sk-not-ours"}, status: 401, reason: "unknown_key", ttl: 5},
		{name: "unknown well-formed key", req: map[string]string{"key": unknown}, status: 401, reason: "unknown_key", ttl: 5},
		{name: "unknown hash", req: map[string]string{"key_hash": model.HashKey(unknown)}, status: 401, reason: "unknown_key", ttl: 5},
		{name: "revoked", req: map[string]string{"key": revoked.Secret, "method": "POST", "path": "/v1/chat/completions"}, status: 401, reason: "revoked", ttl: 5},
		{name: "expired", req: map[string]string{"key": expired.Secret}, setup: func() { h.clock.Advance(time.Hour) }, status: 401, reason: "expired", ttl: 5},
		{name: "wrong path", req: map[string]string{"key": good.Secret, "method": "POST", "path": "/v1/images/generations"}, status: 403, reason: "operation_not_allowed", ttl: 30},
		{name: "wrong method", req: map[string]string{"key": good.Secret, "method": "DELETE", "path": "/v1/chat/completions"}, status: 403, reason: "operation_not_allowed", ttl: 30},
		{name: "traversal", req: map[string]string{"key": good.Secret, "method": "GET", "path": "/v1/models/../admin"}, status: 403, reason: "operation_not_allowed", ttl: 30},
		{name: "model not allowed", req: map[string]string{"key": good.Secret, "method": "POST", "path": "/v1/chat/completions", "model": "gpt-4o"}, status: 403, reason: "model_not_allowed", ttl: 30},
		{name: "key restricted to chat", req: map[string]string{"key": chatOnly.Secret, "method": "POST", "path": "/v1/embeddings", "model": "text-embed-3"}, status: 403, reason: "model_not_allowed", ttl: 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			rec := h.verify(t, tt.req)
			body := rec.Body.String()
			require.Equal(t, tt.status, rec.Code, body)
			assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
			assert.Equal(t, int64(tt.status), jsontest.Get([]byte(body), "status").Int())
			assert.Equal(t, tt.status == 200, jsontest.Get([]byte(body), "valid").Bool())
			assert.Equal(t, tt.ttl, jsontest.Get([]byte(body), "cache_ttl_seconds").Int(), body)
			if tt.status != 200 {
				assert.Equal(t, tt.reason, jsontest.Get([]byte(body), "reason").Str(), body)
				assert.NotEmpty(t, jsontest.Get([]byte(body), "message").Str())
				assert.False(t, jsontest.Get([]byte(body), "product").Exists())
				if tt.status == 403 {
					assert.Equal(t, "demo", jsontest.Get([]byte(body), "app").Str(), "403 answers still identify the key")
					assert.True(t, int64(jsontest.Get([]byte(body), "entitlements").Len()) > 0)
				} else {
					assert.False(t, jsontest.Get([]byte(body), "app").Exists(), "401 answers reveal nothing about the key")
				}
				return
			}
			assert.False(t, jsontest.Get([]byte(body), "reason").Exists())
			assert.Equal(t, "demo", jsontest.Get([]byte(body), "app").Str())
			assert.Equal(t, "ada@example.com", jsontest.Get([]byte(body), "developer").Str())
			assert.True(t, strings.HasPrefix(jsontest.Get([]byte(body), "key_id").Str(), "key_"))
			assert.Equal(t, tt.product, jsontest.Get([]byte(body), "product").Str())
			assert.Equal(t, tt.opPath, jsontest.Get([]byte(body), "operation.path").Str())
			assert.Equal(t, tt.modelsLen, int64(jsontest.Get([]byte(body), "allowed_models").Len()))
			assert.Equal(t, tt.reqLimit, jsontest.Get([]byte(body), "request_quota.limit").Int())
			assert.Equal(t, tt.reqScope, jsontest.Get([]byte(body), "request_quota.scope").Str())
			assert.Equal(t, tt.tokLimit, jsontest.Get([]byte(body), "token_quota.limit").Int())
			assert.NotContains(t, body, `"hash"`)
		})
	}
}

func TestVerifyKeyOnlyReturnsEntitlements(t *testing.T) {
	h := newHarness(t)
	h.seedDemo(t)
	k := h.newKey(t, "demo", `{"expiresAt":"2026-03-02T12:00:00Z"}`)
	rec := h.verify(t, map[string]string{"key": k.Secret})
	require.Equal(t, 200, rec.Code, rec.Body.String())
	body := rec.Body.String()
	assert.Equal(t, `["chat","embed"]`, jsontest.Get([]byte(body), "products").Raw())
	assert.Equal(t, "2026-03-02T12:00:00Z", jsontest.Get([]byte(body), "expires_at").Str())
	assert.False(t, jsontest.Get([]byte(body), "product").Exists(), "no operation was asked for")
	ents := func(path string) jsontest.Field { return jsontest.Get([]byte(body), "entitlements."+path) }
	require.Equal(t, 2, jsontest.Get([]byte(body), "entitlements").Len())
	assert.Equal(t, "chat", ents("0.product").Str())
	assert.Equal(t, "free", ents("0.attributes.tier").Str())
	assert.Equal(t, []string{"/v1/models/**", "/v1/chat/completions", "/v1/completions", "/v1/embeddings"}, ents("0.operations").Pluck("path"))
	assert.Equal(t, "minute", ents("0.operations.0.request_quota.time_unit").Str())
	assert.Equal(t, "total", ents("0.operations.0.token_quota.counted").Str())
	assert.Equal(t, `["POST"]`, ents("1.operations.0.methods").Raw())

	// The entitlements let a filter decide later requests itself, with the same rules.
	var resp model.VerifyResponse
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &resp))
	d := model.Authorize(resp.Entitlements, "POST", "/v1/chat/completions", "llama-3")
	require.Empty(t, d.Reason)
	assert.Equal(t, "chat", d.Entitlement.Product)
}

func TestVerifyBadRequests(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name, body, code, msg string
		status                int
	}{
		{"malformed", `{"key":`, CodeMalformedJSON, "truncated", 400},
		{"syntax", `{"key" "x"}`, CodeMalformedJSON, "not valid JSON", 400},
		{"unknown field", `{"key":"tg_x","tenant":"a"}`, CodeUnknownField, `"tenant"`, 400},
		{"wrong type", `{"key":42}`, CodeInvalidType, `"key" must be a string`, 400},
		{"array body", `[1]`, CodeInvalidType, "JSON object", 400},
		{"empty", ``, CodeEmptyBody, "empty", 400},
		{"trailing", `{"key":"a"} {}`, CodeMalformedJSON, "after the JSON object", 400},
		{"both key forms", `{"key":"a","key_hash":"b"}`, CodeInvalidRequest, "not both", 400},
		{"bad hash", `{"key_hash":"ABC"}`, CodeInvalidRequest, "64 lower-case hex", 400},
		{"method without path", `{"key":"a","method":"GET"}`, CodeInvalidRequest, "together", 400},
		{"path without method", `{"key":"a","path":"/x"}`, CodeInvalidRequest, "together", 400},
		{"bad method", `{"key":"a","method":"G E T","path":"/x"}`, CodeInvalidRequest, "HTTP method", 400},
		{"star method", `{"key":"a","method":"*","path":"/x"}`, CodeInvalidRequest, "HTTP method", 400},
		{"relative path", `{"key":"a","method":"GET","path":"x"}`, CodeInvalidRequest, "start with '/'", 400},
		{"long model", `{"key":"a","model":"` + strings.Repeat("m", 300) + `"}`, CodeInvalidRequest, "model is longer", 400},
		{"oversized", `{"key":"` + strings.Repeat("k", VerifyMaxBodyBytes) + `"}`, CodeBodyTooLarge, "exceeds", 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertError(t, h.verify(t, tt.body), tt.status, tt.code, tt.msg)
		})
	}
	t.Run("wrong method", func(t *testing.T) {
		rec := do(t, h.svc.DataHandler(), "GET", "/v1/verify", nil, "")
		assertError(t, rec, 405, CodeMethodNotAllowed, "POST")
		assert.Equal(t, "POST", rec.Header().Get("Allow"))
	})
	t.Run("unknown endpoint", func(t *testing.T) {
		assertError(t, do(t, h.svc.DataHandler(), "GET", "/v1/nothing", nil, ""), 404, CodeNotFound, "/v1/nothing")
	})
	t.Run("admin API not on the data plane", func(t *testing.T) {
		assertError(t, do(t, h.svc.DataHandler(), "GET", "/admin/v1/products", nil, "Bearer "+testToken), 404, CodeNotFound, "no such endpoint")
	})
}

// failingStore makes every read fail, as an unreachable Redis would.
type failingStore struct{ store.Store }

var errDown = errors.New("connection refused")

func (failingStore) Lookup(context.Context, string) (store.Grant, error) {
	return store.Grant{}, errDown
}
func (failingStore) Ping(context.Context) error { return errDown }
func (failingStore) ListProducts(context.Context) ([]model.Product, error) {
	return nil, errDown
}

func TestStorageFailures(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Store = failingStore{c.Store} })
	k, err := model.GenerateKey(nil)
	require.NoError(t, err)
	assertError(t, h.verify(t, map[string]string{"key": k}), 503, CodeUnavailable, "storage")
	rec := do(t, h.svc.DataHandler(), "GET", "/healthz", nil, "")
	assert.Equal(t, 503, rec.Code)
	assert.Equal(t, "unavailable", jsontest.Get(rec.Body.Bytes(), "status").Str())
	rec = h.admin(t, "GET", "/admin/v1/products", nil)
	assertError(t, rec, 503, CodeUnavailable, "storage")
	assert.NotContains(t, rec.Body.String(), "connection refused", "internal errors are logged, not returned")
	assert.Contains(t, h.logs.String(), "connection refused")
	// A malformed key never reaches the store.
	assert.Equal(t, 401, h.verify(t, map[string]string{"key": "tg_short"}).Code)
}

func TestHealthAndMetrics(t *testing.T) {
	h := newHarness(t)
	h.seedDemo(t)
	k := h.newKey(t, "demo", nil)
	h.verify(t, map[string]string{"key": k.Secret})
	h.verify(t, map[string]string{"key": "tg_nope"})
	h.verify(t, `{`)
	for _, handler := range []http.Handler{h.svc.DataHandler(), h.svc.AdminHandler()} {
		rec := do(t, handler, "GET", "/healthz", nil, "")
		require.Equal(t, 200, rec.Code)
		assert.JSONEq(t, `{"status":"ok","storage":"bolt"}`, rec.Body.String())
	}
	rec := do(t, h.svc.DataHandler(), "GET", "/metrics", nil, "")
	require.Equal(t, 200, rec.Code)
	assert.Contains(t, rec.Header().Get("Content-Type"), "text/plain")
	m := rec.Body.String()
	for _, want := range []string{
		`tollgate_keystore_verify_total{outcome="valid"} 1`,
		`tollgate_keystore_verify_total{outcome="unknown_key"} 1`,
		`tollgate_keystore_verify_total{outcome="bad_request"} 1`,
		`tollgate_keystore_http_requests_total{server="data",route="POST /v1/verify",code="200"} 1`,
		`tollgate_keystore_http_requests_total{server="data",route="POST /v1/verify",code="401"} 1`,
		`tollgate_keystore_http_requests_total{server="data",route="POST /v1/verify",code="400"} 1`,
		`tollgate_keystore_http_requests_total{server="admin",route="POST /admin/v1/products",code="201"} 2`,
		`tollgate_keystore_http_requests_total{server="data",route="GET /healthz",code="200"} 1`,
		`tollgate_keystore_verify_duration_seconds_count 3`,
		`tollgate_keystore_verify_duration_seconds_bucket{le="+Inf"} 3`,
		`tollgate_keystore_info{backend="bolt"} 1`,
		"# TYPE tollgate_keystore_verify_total counter",
	} {
		assert.Contains(t, m, want)
	}
	for i := range 3 {
		do(t, h.svc.DataHandler(), "BREW"+strconv.Itoa(i), "/v1/verify", nil, "")
	}
	m = do(t, h.svc.DataHandler(), "GET", "/metrics", nil, "").Body.String()
	assert.Contains(t, m, `route="OTHER /v1/verify",code="405"} 3`, "arbitrary methods share one label")
	assert.NotContains(t, m, "BREW")
}

func TestKeysNeverLogged(t *testing.T) {
	h := newHarness(t)
	h.seedDemo(t)
	k := h.newKey(t, "demo", nil)
	h.verify(t, map[string]string{"key": k.Secret, "method": "POST", "path": "/v1/chat/completions"})
	h.verify(t, map[string]string{"key": k.Secret + "x"})
	h.admin(t, "POST", "/admin/v1/keys/"+k.ID+"/revoke", nil)
	h.verify(t, map[string]string{"key": k.Secret})
	do(t, h.svc.AdminHandler(), "GET", "/admin/v1/products", nil, "Bearer wrong-"+testToken)
	logs := h.logs.String()
	require.Contains(t, logs, k.ID, "logs identify keys by id")
	assert.NotContains(t, logs, k.Secret)
	assert.NotContains(t, logs, k.Secret[len(model.KeyPrefix):])
	assert.NotContains(t, logs, testToken)
}

func TestAdminAuth(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name, auth, code string
	}{
		{"missing", "", CodeMissingToken},
		{"wrong scheme", "Basic " + testToken, CodeMissingToken},
		{"empty bearer", "Bearer ", CodeMissingToken},
		{"wrong token", "Bearer not-the-token-at-all", CodeInvalidToken},
		{"prefix of token", "Bearer " + testToken[:len(testToken)-1], CodeInvalidToken},
		{"token plus suffix", "Bearer " + testToken + "x", CodeInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/admin/v1/products", "/admin/v1/nothing-here"} {
				rec := do(t, h.svc.AdminHandler(), "GET", path, nil, tt.auth)
				assertError(t, rec, 401, tt.code, "")
				assert.Contains(t, rec.Header().Get("WWW-Authenticate"), "Bearer")
			}
		})
	}
	rec := do(t, h.svc.AdminHandler(), "GET", "/admin/v1/products", nil, "bearer "+testToken)
	assert.Equal(t, 200, rec.Code, "scheme is case-insensitive")
	assertError(t, h.admin(t, "GET", "/admin/v1/nothing-here", nil), 404, CodeNotFound, "nothing-here")
	assertError(t, do(t, h.svc.AdminHandler(), "GET", "/elsewhere", nil, ""), 404, CodeNotFound, "elsewhere")
	assert.Equal(t, 200, do(t, h.svc.AdminHandler(), "GET", "/metrics", nil, "").Code, "metrics need no token")
}

func TestAdminProducts(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 201, h.admin(t, "POST", "/admin/v1/operationsets", fixture(t, "openai-opset.json")).Code)
	chat := fixture(t, "chat-product.json")

	rec := h.admin(t, "POST", "/admin/v1/products", chat)
	require.Equal(t, 201, rec.Code, rec.Body.String())
	assert.Equal(t, "2026-03-01T12:00:00Z", jsontest.Get(rec.Body.Bytes(), "createdAt").Str())
	assert.Equal(t, int64(1), jsontest.Get(rec.Body.Bytes(), "requestQuota.interval").Int())
	assertError(t, h.admin(t, "POST", "/admin/v1/products", chat), 409, CodeAlreadyExists, `"chat"`)

	rec = h.admin(t, "PUT", "/admin/v1/products/chat", chat)
	require.Equal(t, 200, rec.Code)
	assert.Equal(t, "unchanged", rec.Header().Get(ResultHeader))

	var p model.Product
	require.NoError(t, json.Unmarshal(chat, &p))
	p.Name = ""
	p.Description = "changed"
	h.clock.Advance(time.Minute)
	rec = h.admin(t, "PUT", "/admin/v1/products/chat", p)
	require.Equal(t, 200, rec.Code)
	assert.Equal(t, "configured", rec.Header().Get(ResultHeader))
	assert.Equal(t, "2026-03-01T12:00:00Z", jsontest.Get(rec.Body.Bytes(), "createdAt").Str())
	assert.Equal(t, "2026-03-01T12:01:00Z", jsontest.Get(rec.Body.Bytes(), "updatedAt").Str())

	rec = h.admin(t, "PUT", "/admin/v1/products/other", `{"operations":[{"path":"/**"}]}`)
	require.Equal(t, 201, rec.Code)
	assert.Equal(t, "created", rec.Header().Get(ResultHeader))

	rec = h.admin(t, "GET", "/admin/v1/products", nil)
	require.Equal(t, 200, rec.Code)
	assert.Equal(t, []string{"chat", "other"}, jsontest.Get(rec.Body.Bytes(), "items").Pluck("name"))
	rec = h.admin(t, "GET", "/admin/v1/products/chat", nil)
	require.Equal(t, 200, rec.Code)
	assert.Equal(t, "changed", jsontest.Get(rec.Body.Bytes(), "description").Str())

	tests := []struct {
		name, method, path, body, code, msg string
		status                              int
		param                               string
	}{
		{"name mismatch", "PUT", "/admin/v1/products/chat", `{"name":"other","operations":[{"path":"/"}]}`, CodeInvalidRequest, `"other" in the body does not match "chat"`, 400, "name"},
		{"validation", "POST", "/admin/v1/products", `{"name":"x","operations":[{"path":"v1","methods":["GET"]}],"requestQuota":{"limit":0,"timeUnit":"week"}}`, CodeValidationFailed, "operations[0].path", 422, "operations[0].path"},
		{"unknown op set", "POST", "/admin/v1/products", `{"name":"x","operationSets":["nope"]}`, CodeUnknownReference, `"nope"`, 422, ""},
		{"unknown field", "POST", "/admin/v1/products", `{"name":"x","operations":[{"path":"/","verb":"GET"}]}`, CodeUnknownField, `"verb"`, 400, "verb"},
		{"wrong type", "POST", "/admin/v1/products", `{"name":"x","operations":{"path":"/"}}`, CodeInvalidType, `"operations" must be an array`, 400, "operations"},
		{"malformed", "PUT", "/admin/v1/products/x", `{"name":`, CodeMalformedJSON, "truncated", 400, ""},
		{"missing", "GET", "/admin/v1/products/nope", ``, CodeNotFound, `product "nope"`, 404, ""},
		{"delete missing", "DELETE", "/admin/v1/products/nope", ``, CodeNotFound, `"nope"`, 404, ""},
		{"delete set in use", "DELETE", "/admin/v1/operationsets/openai-inference", ``, CodeInUse, `"chat"`, 409, ""},
		{"method", "PATCH", "/admin/v1/products/chat", `{}`, CodeMethodNotAllowed, "DELETE, GET, PUT", 405, ""},
		{"oversized", "POST", "/admin/v1/products", `{"name":"x","description":"` + strings.Repeat("d", DefaultMaxBodyBytes) + `"}`, CodeBodyTooLarge, "exceeds", 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any
			if tt.body != "" {
				body = tt.body
			}
			rec := h.admin(t, tt.method, tt.path, body)
			assertError(t, rec, tt.status, tt.code, tt.msg)
			assert.Equal(t, tt.param, jsontest.Get(rec.Body.Bytes(), "error.param").Str())
		})
	}
	require.Equal(t, 204, h.admin(t, "DELETE", "/admin/v1/products/other", nil).Code)
	assert.Equal(t, 404, h.admin(t, "GET", "/admin/v1/products/other", nil).Code)
}

func TestAdminDevelopersAndApps(t *testing.T) {
	h := newHarness(t)
	h.seedDemo(t)
	rec := h.admin(t, "GET", "/admin/v1/developers/ADA@example.com", nil)
	require.Equal(t, 200, rec.Code)
	assert.Equal(t, "Ada", jsontest.Get(rec.Body.Bytes(), "name").Str())
	assertError(t, h.admin(t, "POST", "/admin/v1/developers", `{"email":"nope"}`), 422, CodeValidationFailed, "e-mail")
	assertError(t, h.admin(t, "POST", "/admin/v1/developers", `{"email":"ada@example.com"}`), 409, CodeAlreadyExists, "ada@example.com")
	assertError(t, h.admin(t, "POST", "/admin/v1/apps", `{"name":"x","developer":"bob@example.com"}`), 422, CodeUnknownReference, "bob@example.com")
	assertError(t, h.admin(t, "POST", "/admin/v1/apps", `{"name":"x","developer":"ada@example.com","products":["nope"]}`), 422, CodeUnknownReference, `"nope"`)
	assertError(t, h.admin(t, "DELETE", "/admin/v1/developers/ada@example.com", nil), 409, CodeInUse, `"demo"`)
	assertError(t, h.admin(t, "DELETE", "/admin/v1/products/embed", nil), 409, CodeInUse, `"demo"`)

	require.Equal(t, 201, h.admin(t, "POST", "/admin/v1/developers", `{"email":"bob@example.com"}`).Code)
	require.Equal(t, 201, h.admin(t, "POST", "/admin/v1/apps", `{"name":"bobs","developer":"bob@example.com","products":["embed"]}`).Code)
	rec = h.admin(t, "GET", "/admin/v1/apps?developer=bob@example.com", nil)
	assert.Equal(t, []string{"bobs"}, jsontest.Get(rec.Body.Bytes(), "items").Pluck("name"))
	rec = h.admin(t, "GET", "/admin/v1/apps", nil)
	assert.Equal(t, []string{"bobs", "demo"}, jsontest.Get(rec.Body.Bytes(), "items").Pluck("name"))
	rec = h.admin(t, "PUT", "/admin/v1/apps/bobs", `{"developer":"bob@example.com","products":["chat"]}`)
	require.Equal(t, 200, rec.Code, rec.Body.String())
	assert.Equal(t, "configured", rec.Header().Get(ResultHeader))

	k := h.newKey(t, "bobs", nil)
	require.Equal(t, 204, h.admin(t, "DELETE", "/admin/v1/apps/bobs", nil).Code)
	assert.Equal(t, "unknown_key", jsontest.Get(h.verify(t, map[string]string{"key": k.Secret}).Body.Bytes(), "reason").Str(), "deleting an app revokes its keys")
	require.Equal(t, 204, h.admin(t, "DELETE", "/admin/v1/developers/bob@example.com", nil).Code)
}

func TestAdminKeys(t *testing.T) {
	h := newHarness(t)
	h.seedDemo(t)
	rec := h.admin(t, "POST", "/admin/v1/apps/demo/keys", `{"products":["chat"],"expiresIn":"30d"}`)
	require.Equal(t, 201, rec.Code, rec.Body.String())
	created := rec.Body.String()
	secret := jsontest.Get([]byte(created), "key").Str()
	id := jsontest.Get([]byte(created), "id").Str()
	require.True(t, model.WellFormedKey(secret))
	assert.Equal(t, model.HashKey(secret), jsontest.Get([]byte(created), "hash").Str())
	assert.Equal(t, secret[:9], jsontest.Get([]byte(created), "prefix").Str())
	assert.Equal(t, "approved", jsontest.Get([]byte(created), "status").Str())
	assert.Equal(t, "2026-03-31T12:00:00Z", jsontest.Get([]byte(created), "expiresAt").Str())
	assert.Equal(t, `["chat"]`, jsontest.Get([]byte(created), "products").Raw())

	for _, path := range []string{"/admin/v1/apps/demo/keys", "/admin/v1/keys", "/admin/v1/keys?app=demo", "/admin/v1/keys/" + id} {
		rec := h.admin(t, "GET", path, nil)
		require.Equal(t, 200, rec.Code, path)
		assert.NotContains(t, rec.Body.String(), secret, "%s must never reveal the key", path)
		assert.NotContains(t, rec.Body.String(), secret[9:])
		assert.Contains(t, rec.Body.String(), id)
	}
	assert.Equal(t, int64(0), int64(jsontest.Get(h.admin(t, "GET", "/admin/v1/keys?app=other", nil).Body.Bytes(), "items").Len()))

	require.Equal(t, 200, h.verify(t, map[string]string{"key": secret}).Code)
	rec = h.admin(t, "POST", "/admin/v1/keys/"+id+"/revoke", nil)
	require.Equal(t, 200, rec.Code)
	assert.Equal(t, "revoked", jsontest.Get(rec.Body.Bytes(), "status").Str())
	assert.Equal(t, "revoked", jsontest.Get(h.verify(t, map[string]string{"key": secret}).Body.Bytes(), "reason").Str())
	require.Equal(t, 200, h.admin(t, "POST", "/admin/v1/keys/"+id+"/approve", nil).Code)
	require.Equal(t, 200, h.verify(t, map[string]string{"key": secret}).Code)

	tests := []struct {
		name, method, path, body, code, msg string
		status                              int
	}{
		{"app missing", "POST", "/admin/v1/apps/nope/keys", ``, CodeNotFound, `app "nope"`, 404},
		{"list for missing app", "GET", "/admin/v1/apps/nope/keys", ``, CodeNotFound, `app "nope"`, 404},
		{"product not in app", "POST", "/admin/v1/apps/demo/keys", `{"products":["other"]}`, CodeUnknownReference, `"other"`, 422},
		{"bad product name", "POST", "/admin/v1/apps/demo/keys", `{"products":["Other Product"]}`, CodeValidationFailed, "products[0]", 422},
		{"bad lifetime", "POST", "/admin/v1/apps/demo/keys", `{"expiresIn":"soon"}`, CodeValidationFailed, "expiresIn", 422},
		{"negative lifetime", "POST", "/admin/v1/apps/demo/keys", `{"expiresIn":"-1h"}`, CodeValidationFailed, "positive", 422},
		{"past expiry", "POST", "/admin/v1/apps/demo/keys", `{"expiresAt":"2020-01-01T00:00:00Z"}`, CodeValidationFailed, "future", 422},
		{"both expiries", "POST", "/admin/v1/apps/demo/keys", `{"expiresIn":"1h","expiresAt":"2030-01-01T00:00:00Z"}`, CodeValidationFailed, "not both", 422},
		{"bad expiry format", "POST", "/admin/v1/apps/demo/keys", `{"expiresAt":"tomorrow"}`, CodeValidationFailed, "expiresAt", 422},
		{"bad expiry type", "POST", "/admin/v1/apps/demo/keys", `{"expiresAt":5}`, CodeInvalidType, "expiresAt", 400},
		{"bad timestamp in record", "PUT", "/admin/v1/developers/x@example.com", `{"createdAt":"yesterday"}`, CodeInvalidType, "RFC 3339", 400},
		{"unknown field", "POST", "/admin/v1/apps/demo/keys", `{"key":"tg_mine"}`, CodeUnknownField, `"key"`, 400},
		{"revoke missing", "POST", "/admin/v1/keys/key_0000000000000000/revoke", ``, CodeNotFound, "key_0000000000000000", 404},
		{"revoke with body", "POST", "/admin/v1/keys/" + id + "/revoke", `{"status":"x"}`, CodeInvalidRequest, "no request body", 400},
		{"revoke by GET", "GET", "/admin/v1/keys/" + id + "/revoke", ``, CodeMethodNotAllowed, "POST", 405},
		{"key missing", "GET", "/admin/v1/keys/key_0000000000000000", ``, CodeNotFound, "key_0000000000000000", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any
			if tt.body != "" {
				body = tt.body
			}
			assertError(t, h.admin(t, tt.method, tt.path, body), tt.status, tt.code, tt.msg)
		})
	}

	chunked := httptest.NewRequest("POST", "/admin/v1/keys/"+id+"/revoke", strings.NewReader(`{"status":"revoked"}`))
	chunked.ContentLength = -1 // unknown length, as with Transfer-Encoding: chunked
	chunked.Header.Set("Authorization", "Bearer "+testToken)
	rec = httptest.NewRecorder()
	h.svc.AdminHandler().ServeHTTP(rec, chunked)
	assertError(t, rec, 400, CodeInvalidRequest, "no request body")

	require.Equal(t, 204, h.admin(t, "DELETE", "/admin/v1/keys/"+id, nil).Code)
	assertError(t, h.admin(t, "DELETE", "/admin/v1/keys/"+id, nil), 404, CodeNotFound, id)
	assert.Equal(t, "unknown_key", jsontest.Get(h.verify(t, map[string]string{"key": secret}).Body.Bytes(), "reason").Str())
}

func TestDataMountsAndCollectors(t *testing.T) {
	mount := Mount{Pattern: "POST /v1/quota/consume", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	})}
	h := newHarness(t, func(c *Config) {
		c.DataMounts = []Mount{mount}
		c.Collectors = []Collector{collectorFunc(func(w io.Writer) error {
			_, err := io.WriteString(w, "tollgate_quota_test 7\n")
			return err
		})}
	})
	rec := do(t, h.svc.DataHandler(), "POST", "/v1/quota/consume", `{}`, "")
	assert.Equal(t, http.StatusAccepted, rec.Code)
	m := do(t, h.svc.DataHandler(), "GET", "/metrics", nil, "").Body.String()
	assert.Contains(t, m, "tollgate_quota_test 7")
	assert.Contains(t, m, `route="POST /v1/quota/consume",code="202"`)

	_, err := New(Config{Store: h.store, AdminToken: testToken, DataMounts: []Mount{{Pattern: "/v1/verify", Handler: mount.Handler}}})
	require.Error(t, err, "a mount may not shadow /v1/verify")
	_, err = New(Config{Store: h.store, AdminToken: testToken, DataMounts: []Mount{{Pattern: "/x"}}})
	require.Error(t, err)
	_, err = New(Config{Store: h.store, AdminToken: "short"})
	require.Error(t, err)
	_, err = New(Config{AdminToken: testToken})
	require.Error(t, err)
}

type collectorFunc func(io.Writer) error

func (f collectorFunc) WriteMetrics(w io.Writer) error { return f(w) }

func TestDataPlaneToken(t *testing.T) {
	const dataToken = "data-plane-token-0123456789"
	mount := Mount{Pattern: "/v1/quota/", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})}
	h := newHarness(t, func(c *Config) { c.DataToken = dataToken; c.DataMounts = []Mount{mount} })
	verify := map[string]string{"key_hash": strings.Repeat("a", 64)}
	tests := []struct {
		name, method, path, auth string
		body                     any
		status                   int
		code                     string
	}{
		{"verify without token", "POST", "/v1/verify", "", verify, 401, CodeMissingDataToken},
		{"verify wrong token", "POST", "/v1/verify", "Bearer " + dataToken + "x", verify, 401, CodeInvalidDataToken},
		{"verify admin token", "POST", "/v1/verify", "Bearer " + testToken, verify, 401, CodeInvalidDataToken},
		{"verify with token", "POST", "/v1/verify", "Bearer " + dataToken, verify, 401, ""}, // the key's own answer, below
		{"quota without token", "POST", "/v1/quota/consume", "", "{}", 401, CodeMissingDataToken},
		{"quota with token", "POST", "/v1/quota/consume", "Bearer " + dataToken, "{}", 204, ""},
		{"metrics without token", "GET", "/metrics", "", nil, 401, CodeMissingDataToken},
		{"unknown path without token", "GET", "/admin/v1/products", "", nil, 401, CodeMissingDataToken},
		{"healthz is open", "GET", "/healthz", "", nil, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(t, h.svc.DataHandler(), tt.method, tt.path, tt.body, tt.auth)
			if tt.code != "" {
				assertError(t, rec, tt.status, tt.code, "")
				assert.Contains(t, rec.Header().Get("WWW-Authenticate"), `realm="tollgate-data"`)
				return
			}
			assert.Equal(t, tt.status, rec.Code, rec.Body.String())
			if tt.path == "/v1/verify" {
				assert.Contains(t, rec.Body.String(), `"reason":"unknown_key"`, "the keystore answered the verify itself")
			}
		})
	}
	assert.NotContains(t, h.logs.String(), dataToken)

	open := newHarness(t)
	assert.Contains(t, open.verify(t, verify).Body.String(), `"reason":"unknown_key"`, "without a configured token the data plane stays open")
	_, err := New(Config{Store: h.store, AdminToken: testToken, DataToken: "short"})
	assert.ErrorContains(t, err, "data-plane token")
}
