package keystoretest_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/keystoretest"
)

func TestMain(m *testing.M) { os.Exit(keystoretest.Main(m)) }

// status GETs url with a deadline; 0 means no answer.
func status(t *testing.T, url, token string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServer(t *testing.T) {
	const token = "tgadmin_keystoretest_token_0123456789abcdef"
	tests := []struct {
		name  string
		opts  keystoretest.Options
		token string // "" when generated
	}{
		{name: "generated token", opts: keystoretest.Options{Args: []string{"--log-level", "warn"}}},
		{name: "given token", opts: keystoretest.Options{AdminToken: token}, token: token},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := keystoretest.Start(t, tc.opts)
			require.NotEmpty(t, s.AdminToken())
			if tc.token != "" {
				assert.Equal(t, tc.token, s.AdminToken())
			}
			assert.True(t, strings.HasPrefix(s.DataAddr(), "127.0.0.1:"), s.DataAddr())
			assert.True(t, strings.HasPrefix(s.AdminAddr(), "127.0.0.1:"), s.AdminAddr())
			assert.Positive(t, s.DataPort())
			assert.Equal(t, http.StatusOK, status(t, s.DataURL()+"/healthz", ""))
			assert.Equal(t, http.StatusUnauthorized, status(t, s.AdminURL()+"/admin/v1/developers", ""))
			assert.Equal(t, http.StatusOK, status(t, s.AdminURL()+"/admin/v1/developers", s.AdminToken()))

			s.CLI(t, "developers", "create", "--email", "ada@example.com", "--name", "Ada")
			before := s.CLI(t, "developers", "list", "-o", "json")
			require.Contains(t, before, "ada@example.com")
			data, admin := s.DataAddr(), s.AdminAddr()

			s.Stop()
			assert.Zero(t, status(t, s.DataURL()+"/healthz", ""), "stopped")
			s.Restart(t)
			assert.Equal(t, data, s.DataAddr(), "same data port")
			assert.Equal(t, admin, s.AdminAddr(), "same admin port")
			assert.JSONEq(t, before, s.CLI(t, "developers", "list", "-o", "json"), "same data")
			_, err := s.Client(t).ListDevelopers(context.Background())
			require.NoError(t, err)
		})
	}
}
