package keystore

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/keystore/store"
)

// benchService builds a service on an embedded store with the demo data,
// logging at info level (as `tollgate serve` does by default).
func benchService(b *testing.B) (*Service, string) {
	b.Helper()
	be, err := store.OpenBackend(context.Background(), store.BackendOptions{DataDir: b.TempDir()})
	require.NoError(b, err)
	b.Cleanup(func() { be.Close() })
	st, err := be.Keystore()
	require.NoError(b, err)
	svc, err := New(Config{Store: st, Backend: be.Kind(), AdminToken: testToken,
		Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	require.NoError(b, err)
	h := &harness{svc: svc}
	for _, req := range []struct{ path, body string }{
		{"/admin/v1/operationsets", `{"name":"openai-inference","operations":[{"path":"/v1/chat/completions","methods":["POST"]},{"path":"/v1/completions","methods":["POST"]},{"path":"/v1/embeddings","methods":["POST"],"requestQuota":{"limit":600,"timeUnit":"minute"}}]}`},
		{"/admin/v1/products", `{"name":"chat","operationSets":["openai-inference"],"operations":[{"path":"/v1/models/**","methods":["GET"]}],"allowedModels":["gemma-3-1b-it","llama-*"],"requestQuota":{"limit":60,"timeUnit":"minute"},"tokenQuota":{"limit":100000,"timeUnit":"hour"}}`},
		{"/admin/v1/developers", `{"email":"ada@example.com"}`},
		{"/admin/v1/apps", `{"name":"demo","developer":"ada@example.com","products":["chat"]}`},
	} {
		rec := benchDo(h.svc.AdminHandler(), "POST", req.path, req.body, "Bearer "+testToken)
		require.Equal(b, http.StatusCreated, rec.Code, rec.Body.String())
	}
	rec := benchDo(h.svc.AdminHandler(), "POST", "/admin/v1/apps/demo/keys", "", "Bearer "+testToken)
	require.Equal(b, http.StatusCreated, rec.Code)
	var k model.IssuedKey
	require.NoError(b, json.Unmarshal(rec.Body.Bytes(), &k))
	return svc, k.Secret
}

func benchDo(h http.Handler, method, path, body, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader([]byte(body)))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// BenchmarkVerify measures the /v1/verify handler end to end (decode, bbolt
// lookup, resolution, authorisation, encode) without the network.
func BenchmarkVerify(b *testing.B) {
	svc, secret := benchService(b)
	h := svc.DataHandler()
	cases := []struct {
		name, body string
		status     int
	}{
		{"valid", `{"key":"` + secret + `","method":"POST","path":"/v1/chat/completions","model":"gemma-3-1b-it"}`, 200},
		{"key_only", `{"key":"` + secret + `"}`, 200},
		{"unknown_key", `{"key":"tg_0000000000000000000000000000000000000"}`, 401},
		{"forbidden", `{"key":"` + secret + `","method":"DELETE","path":"/v1/files"}`, 403},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			body := []byte(c.body)
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/v1/verify", bytes.NewReader(body))
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != c.status {
					b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
				}
			}
		})
	}
}
