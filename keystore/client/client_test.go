package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/keystore/model"
)

func TestNewRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8421", "ftp://host", "http://", "://x"} {
		_, err := New(u, "t")
		assert.Error(t, err, u)
	}
	c, err := New("http://127.0.0.1:8421/", "t")
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:8421", c.base)
}

func TestErrorsAndRequests(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string
		notFnd  bool
	}{
		{"api error", 422, `{"error":{"message":"invalid: name","type":"invalid_request_error","param":"name","code":"validation_failed"}}`, "invalid: name (HTTP 422 validation_failed)", false},
		{"not found", 404, `{"error":{"message":"app \"x\": not found","type":"not_found_error","param":null,"code":"not_found"}}`, "HTTP 404 not_found", true},
		{"non-JSON error", 502, `<html>bad gateway</html>`, "answered 502 Bad Gateway", false},
		{"undecodable success", 200, `{"items":`, "decode answer", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotAuth, gotPath string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotAuth, gotPath = r.Header.Get("Authorization"), r.URL.RequestURI()
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c, err := New(srv.URL, "tok-0123456789abcdef")
			require.NoError(t, err)
			_, err = c.ListApps(context.Background(), "ada@example.com")
			require.ErrorContains(t, err, tt.wantErr)
			assert.Equal(t, tt.notFnd, IsNotFound(err))
			assert.Equal(t, "Bearer tok-0123456789abcdef", gotAuth)
			assert.Equal(t, "/admin/v1/apps?developer=ada%40example.com", gotPath)
		})
	}
}

func TestPathsAreEscaped(t *testing.T) {
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.Method+" "+r.URL.EscapedPath())
		w.Header().Set("Tollgate-Result", "created")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c, err := New(srv.URL, "t")
	require.NoError(t, err)
	ctx := context.Background()
	_, res, err := c.PutProduct(ctx, model.Product{Name: "a/b"})
	require.NoError(t, err)
	assert.Equal(t, "created", res)
	_, err = c.SetKeyStatus(ctx, "key_x", model.KeyRevoked)
	require.NoError(t, err)
	_, err = c.SetKeyStatus(ctx, "key_x", model.KeyApproved)
	require.NoError(t, err)
	_, err = c.ListKeys(ctx, "demo")
	require.NoError(t, err)
	assert.Equal(t, []string{
		"PUT /admin/v1/products/a%2Fb",
		"POST /admin/v1/keys/key_x/revoke",
		"POST /admin/v1/keys/key_x/approve",
		"GET /admin/v1/apps/demo/keys",
	}, paths)
}

func TestUnreachable(t *testing.T) {
	c, err := New("http://127.0.0.1:1", "t")
	require.NoError(t, err)
	_, err = c.ListProducts(context.Background())
	require.Error(t, err)
	assert.False(t, IsNotFound(err))
}
