package keystore

import (
	"context"
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
	"github.com/tollgate/tollgate/keystore/model"
)

func TestServeAndGracefulShutdown(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	data, admin, err := Listen(ctx, "127.0.0.1:0", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- h.svc.Serve(ctx, data, admin) }()

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Post("http://"+data.Addr().String()+"/v1/verify", "application/json", strings.NewReader(`{"key":"tg_x"}`))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 401, resp.StatusCode)
	assert.Equal(t, "unknown_key", jsontest.Get(body, "reason").Str())

	req, _ := http.NewRequest("GET", "http://"+admin.Addr().String()+"/admin/v1/products", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err = client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(ShutdownTimeout + 5*time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	_, err = client.Get("http://" + data.Addr().String() + "/healthz")
	require.Error(t, err, "listener closed after shutdown")
}

func TestServeReportsListenerFailure(t *testing.T) {
	h := newHarness(t)
	data, admin, err := Listen(context.Background(), "127.0.0.1:0", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, admin.Close()) // a broken listener must stop the service, not hang it
	done := make(chan error, 1)
	go func() { done <- h.svc.Serve(context.Background(), data, admin) }()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(ShutdownTimeout + 5*time.Second):
		t.Fatal("Serve hung on a closed listener")
	}
}

func TestListenErrors(t *testing.T) {
	data, admin, err := Listen(context.Background(), "127.0.0.1:0", "127.0.0.1:0")
	require.NoError(t, err)
	defer data.Close()
	defer admin.Close()
	_, _, err = Listen(context.Background(), data.Addr().String(), "127.0.0.1:0")
	require.ErrorContains(t, err, "data plane")
	_, _, err = Listen(context.Background(), "127.0.0.1:0", admin.Addr().String())
	require.ErrorContains(t, err, "admin")
}

func TestResolveAdminToken(t *testing.T) {
	dir := t.TempDir()
	tok, src, err := ResolveAdminToken("flag-token-0123456789", "env-token-0123456789", dir)
	require.NoError(t, err)
	assert.Equal(t, "flag-token-0123456789", tok)
	assert.Equal(t, TokenFromFlag, src)
	tok, src, err = ResolveAdminToken("", "env-token-0123456789", dir)
	require.NoError(t, err)
	assert.Equal(t, "env-token-0123456789", tok)
	assert.Equal(t, TokenFromEnv, src)
	_, _, err = ResolveAdminToken("short", "", dir)
	require.ErrorContains(t, err, "shorter")
	_, _, err = ResolveAdminToken("has space in the token", "", dir)
	require.ErrorContains(t, err, "whitespace")
	_, _, err = ResolveAdminToken("", "", "")
	require.Error(t, err)

	gen, src, err := ResolveAdminToken("", "", dir)
	require.NoError(t, err)
	assert.Equal(t, TokenFromGenerated, src)
	assert.True(t, strings.HasPrefix(gen, "tgadmin_"))
	info, err := os.Stat(filepath.Join(dir, AdminTokenFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	again, src, err := ResolveAdminToken("", "", dir)
	require.NoError(t, err)
	assert.Equal(t, TokenFromFile, src)
	assert.Equal(t, gen, again, "a restart keeps the generated token")
	read, err := ReadAdminTokenFile(dir)
	require.NoError(t, err)
	assert.Equal(t, gen, read)
	_, err = ReadAdminTokenFile(t.TempDir())
	require.Error(t, err)
}

func FuzzDecodeVerifyRequest(f *testing.F) {
	key, err := model.GenerateKey(nil)
	require.NoError(f, err)
	for _, seed := range []string{
		`{"key":"` + key + `","method":"POST","path":"/v1/chat/completions","model":"gemma-3-1b-it"}`,
		`{"key_hash":"` + model.HashKey(key) + `"}`,
		`{}`, `{"key":1}`, `[]`, `null`, `{"key":"a"}{}`, `{"method":"GET"}`, "\x00", `{"path":"/\u0000"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, e := DecodeVerifyRequest(data)
		if e != nil {
			require.GreaterOrEqual(t, e.Status, 400)
			require.Less(t, e.Status, 500)
			require.True(t, jsontest.Valid(e.Body(0)))
			return
		}
		// Accepted requests are internally consistent.
		require.False(t, req.Key != "" && req.KeyHash != "")
		require.Equal(t, req.Method == "", req.Path == "")
		if req.KeyHash != "" {
			require.True(t, model.ValidKeyHash(req.KeyHash))
		}
		if req.Path != "" {
			require.Equal(t, byte('/'), req.Path[0])
		}
	})
}

func TestResolveDataToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "data-token")
	require.NoError(t, os.WriteFile(file, []byte("file-token-0123456789\n"), 0o600))
	tests := []struct {
		name, flag, file, env string
		want                  string
		src                   TokenSource
		err                   string
	}{
		{"none", "", "", "", "", "", ""},
		{"flag wins over env", "flag-token-0123456789", "", "env-token-0123456789", "flag-token-0123456789", TokenFromFlag, ""},
		{"file wins over env", "", file, "env-token-0123456789", "file-token-0123456789", TokenFromFile, ""},
		{"env", "", "", "env-token-0123456789", "env-token-0123456789", TokenFromEnv, ""},
		{"flag and file", "flag-token-0123456789", file, "", "", "", "not both"},
		{"short", "short", "", "", "", "", "shorter"},
		{"space", "", "", "has space in the token", "", "", "whitespace"},
		{"missing file", "", file + ".missing", "", "", "", "read data-plane token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, src, err := ResolveDataToken(tt.flag, tt.file, tt.env)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, tok)
			assert.Equal(t, tt.src, src)
		})
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8420": true, "localhost:8420": true, "[::1]:8420": true, "127.1.2.3:0": true,
		"0.0.0.0:8420": false, ":8420": false, "[::]:8420": false, "10.0.0.5:8420": false, "keystore.svc:8420": false,
	} {
		assert.Equal(t, want, IsLoopback(addr), addr)
	}
}
