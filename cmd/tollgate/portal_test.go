package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/internal/jsontest"
)

// TestServePortalAndUsage: `serve --portal` seeds the admin, serves the portal
// on its own listener, and usage posted to the data plane shows in the admin
// analytics API, in the raw-record export (--usage-raw-retention) and on the
// admin's usage page, which also shows the quota counters (wired from the
// data plane's counter engine).
func TestServePortalAndUsage(t *testing.T) {
	const password = "portal-admin-password"
	srv := startServe(t, map[string]string{envPortalAdminPassword: password}, "--data-dir", t.TempDir(),
		"--portal", "127.0.0.1:0", "--portal-admin", "admin@example.com", "--admin-token", "admin-token-0123456789", "--usage-raw-retention", "1h")
	require.NotEmpty(t, srv.portal)

	resp, err := http.Post("http://"+srv.data+"/v1/usage", "application/json", strings.NewReader(
		`{"records":[{"request_id":"r1","time":"`+nowRFC3339()+`","app":"demo","model":"gemma-3-1b-it","prompt_tokens":5,"completion_tokens":9,"outcome":"ok","status":200}]}`))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Equal(t, int64(1), jsontest.Get(body, "accepted").Int())

	req, _ := http.NewRequest(http.MethodGet, "http://"+srv.admin+"/admin/v1/analytics/usage?group_by=model", nil)
	req.Header.Set("Authorization", "Bearer admin-token-0123456789")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Equal(t, int64(14), jsontest.Get(body, "totals.total_tokens").Int())

	req, _ = http.NewRequest(http.MethodGet, "http://"+srv.admin+"/admin/v1/analytics/records", nil)
	req.Header.Set("Authorization", "Bearer admin-token-0123456789")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Equal(t, "r1", jsontest.Get(body, "records.0.request_id").Str(), string(body))
	assert.Equal(t, int64(14), jsontest.Get(body, "records.0.total_tokens").Int())

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	base := "http://" + srv.portal
	resp, err = c.Get(base + "/signin")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	require.NotNil(t, csrf)
	resp, err = c.PostForm(base+"/signin", url.Values{"csrf": {string(csrf[1])}, "email": {"admin@example.com"}, "password": {password}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "/apps", resp.Request.URL.Path, "signed in and redirected")
	resp, err = c.Get(base + "/usage")
	require.NoError(t, err)
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(page), `<strong id="total-tokens">14</strong>`)
	assert.Contains(t, string(page), `<section id="quota-left">`, "serve hands the counter engine to the portal")
	assert.Contains(t, string(page), `id="raw-records"`)
}

func nowRFC3339() string { return time.Now().UTC().Format(time.RFC3339) }
