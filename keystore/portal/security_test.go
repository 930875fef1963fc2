package portal

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/keystore/analytics"
	"github.com/tollgate/tollgate/keystore/model"
)

func TestCSRF(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	b.developer("ada@example.com")
	other := e.browser(t)
	other.developer("bob@example.com")

	tests := []struct {
		name    string
		form    url.Values
		headers []string
	}{
		{name: "no token", form: url.Values{"name": {"x1"}, "product": {"chat"}, "csrf": {""}}},
		{name: "wrong token", form: url.Values{"name": {"x2"}, "product": {"chat"}, "csrf": {"AAAA"}}},
		{name: "another session's token", form: url.Values{"name": {"x3"}, "product": {"chat"}, "csrf": {other.csrf}}},
		{name: "cross-site origin", form: url.Values{"name": {"x4"}, "product": {"chat"}}, headers: []string{"Origin", "https://evil.example"}},
		{name: "fetch metadata cross-site", form: url.Values{"name": {"x5"}, "product": {"chat"}}, headers: []string{"Sec-Fetch-Site", "cross-site"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, _ := b.post("/apps", tt.form, tt.headers...)
			assert.Equal(t, http.StatusForbidden, code, body)
			_, err := e.st.GetApp(context.Background(), tt.form.Get("name"))
			assert.Error(t, err, "the app must not be created")
		})
	}
	// Sign-in and sign-up forms carry a double-submit token too.
	fresh := e.browser(t)
	code, _, _ := fresh.post("/signin", url.Values{"email": {"ada@example.com"}, "password": {testPassword}, "csrf": {"forged-token-forged-token-forged-token"}})
	assert.Equal(t, http.StatusForbidden, code)
	code, _, _ = fresh.post("/signup", url.Values{"email": {"eve@example.com"}, "password": {testPassword}, "csrf": {"x"}})
	assert.Equal(t, http.StatusForbidden, code)
	// The same token does work from the page.
	code, body, _ := b.post("/apps", url.Values{"name": {"x6"}, "product": {"chat"}}, "Origin", e.srv.URL)
	assert.Equal(t, http.StatusSeeOther, code, body)
}

func TestSessionFixation(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	b.signup("ada@example.com", testPassword)
	u, _ := url.Parse(e.srv.URL)
	planted := &http.Cookie{Name: "tg_session", Value: "attacker-chosen-session-value-0123456789", Path: "/"}
	b.c.Jar.SetCookies(u, []*http.Cookie{planted})
	code, _ := b.signin("ada@example.com", testPassword)
	require.Equal(t, http.StatusSeeOther, code)
	var sess string
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "tg_session" {
			sess = c.Value
		}
	}
	assert.NotEqual(t, planted.Value, sess, "sign-in issues a new session id")

	// A session signed in before is replaced, not reused.
	before := sess
	code, _ = b.signin("ada@example.com", testPassword)
	require.Equal(t, http.StatusSeeOther, code)
	attacker := e.browser(t)
	attacker.c.Jar.SetCookies(u, []*http.Cookie{{Name: "tg_session", Value: before, Path: "/"}})
	code, _ = attacker.get("/apps")
	assert.Equal(t, http.StatusSeeOther, code, "the previous session id no longer works")

	// Signing out ends the session on the server.
	code, _, _ = b.post("/signout", nil)
	require.Equal(t, http.StatusSeeOther, code)
	code, _ = b.get("/apps")
	assert.Equal(t, http.StatusSeeOther, code)
}

func TestNoIDORAcrossDevelopers(t *testing.T) {
	e := newEnv(t)
	ada := e.browser(t)
	ada.developer("ada@example.com")
	ada.createApp("ada-bot", "", "chat")
	secret := ada.createKey("ada-bot")
	keys, err := e.st.ListKeys(context.Background(), "ada-bot")
	require.NoError(t, err)
	adaKey := keys[0].ID

	bob := e.browser(t)
	bob.developer("bob@example.com")
	bob.createApp("bob-bot", "", "chat")
	_, missing := bob.get("/apps/no-such-app")

	code, body := bob.get("/apps/ada-bot")
	assert.Equal(t, http.StatusNotFound, code)
	assert.Equal(t, missing, body, "another developer's app looks exactly like a missing one")
	assert.NotContains(t, body, adaKey)

	for _, path := range []string{"/apps/ada-bot/keys", "/apps/ada-bot/keys/" + adaKey + "/revoke", "/apps/ada-bot/keys/" + adaKey + "/rotate",
		"/apps/bob-bot/keys/" + adaKey + "/revoke", "/apps/bob-bot/keys/" + adaKey + "/rotate"} {
		code, _, _ := bob.post(path, nil)
		assert.Equal(t, http.StatusNotFound, code, path)
	}
	k, err := e.st.GetKey(context.Background(), adaKey)
	require.NoError(t, err)
	assert.Equal(t, model.KeyApproved, k.Status, "ada's key is untouched")
	n, err := e.st.ListKeys(context.Background(), "ada-bot")
	require.NoError(t, err)
	assert.Len(t, n, 1, "no key was added to ada's app")
	assert.NotEmpty(t, secret)

	_, err = e.usage.Ingest(context.Background(), []analytics.Record{{RequestID: "a1", Time: e.clk.Now(), App: "ada-bot", TotalTokens: 77, Outcome: "ok"}})
	require.NoError(t, err)
	for _, q := range []string{"/usage.json", "/usage.json?app=ada-bot", "/usage.json?developer=ada@example.com&group_by=app"} {
		code, body := bob.get(q)
		require.Equal(t, http.StatusOK, code, q)
		assert.Contains(t, body, `"totals":{"requests":0`, q)
		assert.NotContains(t, body, "ada-bot", q)
	}
	_, body = ada.get("/usage.json?app=ada-bot")
	assert.Contains(t, body, `"total_tokens":77`)

	for _, path := range []string{"/admin", "/admin/products/chat"} {
		code, _ := bob.get(path)
		assert.Equal(t, http.StatusNotFound, code, "developers do not see admin pages: %s", path)
	}
	code, _, _ = bob.post("/admin/apps/ada-bot/revoke", nil)
	assert.Equal(t, http.StatusNotFound, code)
	code, _, _ = bob.post("/admin/users/bob@example.com/approve", nil)
	assert.Equal(t, http.StatusNotFound, code)
}

func TestXSSIsEscaped(t *testing.T) {
	e := newEnv(t)
	const payload = `<script>alert("x")</script><img src=x onerror=alert(1)>`
	b := e.browser(t)
	b.get("/signup")
	code, body, _ := b.post("/signup", url.Values{"email": {"xss@example.com"}, "name": {payload}, "password": {testPassword}})
	require.Equal(t, http.StatusOK, code, body)
	code, _ = b.signin("xss@example.com", testPassword)
	require.Equal(t, http.StatusSeeOther, code)
	b.createApp("xss-app", payload, "chat")
	code, body, _ = b.post("/apps", url.Values{"name": {payload}, "description": {payload}, "product": {"chat"}})
	assert.Equal(t, http.StatusBadRequest, code, "an app name is a resource name")
	assert.NotContains(t, body, "<script>alert", "the refused form is echoed escaped")

	a := e.browser(t)
	a.signin("admin@example.com", testPassword)
	code, body, _ = a.post("/admin/products/chat", url.Values{"display_name": {payload}, "description": {payload}})
	require.Equal(t, http.StatusSeeOther, code, body)

	pages := []struct {
		b    *browser
		path string
	}{{b, "/apps"}, {b, "/apps/xss-app"}, {b, "/catalogue"}, {a, "/admin"}, {a, "/catalogue"}, {a, "/admin/products/chat"}}
	for _, pg := range pages {
		code, body := pg.b.get(pg.path)
		require.Equal(t, http.StatusOK, code, pg.path)
		assert.NotContains(t, body, "<script>alert", pg.path)
		assert.NotContains(t, body, "<img src=x", pg.path)
		assert.Contains(t, body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", pg.path)
	}
}

func TestSigninLockoutWithoutEnumeration(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	b.signup("ada@example.com", testPassword)
	b.signup("pending@example.com", testPassword)
	// An account awaiting approval (set directly: the env's mode is open).
	var u User
	ok, err := e.p.loadJSON(context.Background(), bucketUsers, "pending@example.com", &u)
	require.NoError(t, err)
	require.True(t, ok)
	u.Status = StatusPending
	require.NoError(t, e.p.saveJSON(context.Background(), bucketUsers, u.Email, u, 0))

	message := func(body string) string {
		m := regexp.MustCompile(`<p class="error" role="alert">([^<]*)</p>`).FindStringSubmatch(body)
		require.NotNil(t, m, body)
		return m[1]
	}
	_, unknown := b.signin("nobody@example.com", testPassword)
	_, wrong := b.signin("ada@example.com", "wrong password!!")
	_, pending := b.signin("pending@example.com", testPassword)
	assert.Equal(t, message(unknown), message(wrong))
	assert.Equal(t, message(unknown), message(pending))

	for range DefaultMaxFailures - 1 { // one wrong attempt above
		code, _ := b.signin("ada@example.com", "wrong password!!")
		assert.Equal(t, http.StatusUnauthorized, code)
	}
	code, locked := b.signin("ada@example.com", testPassword)
	assert.Equal(t, http.StatusUnauthorized, code, "locked: even the right password fails")
	assert.Equal(t, message(unknown), message(locked), "a locked account gets the same message")

	e.clk.Add(DefaultLockout + time.Second)
	code, _ = b.signin("ada@example.com", testPassword)
	assert.Equal(t, http.StatusSeeOther, code, "the lockout ends")
}

func TestSigninRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LoginRate = 3 })
	b := e.browser(t)
	b.signup("ada@example.com", testPassword)
	for range 3 {
		code, _ := b.signin("nobody@example.com", "whatever password")
		assert.Equal(t, http.StatusUnauthorized, code)
	}
	code, body := b.signin("ada@example.com", testPassword)
	assert.Equal(t, http.StatusTooManyRequests, code)
	assert.Contains(t, body, "Sign-in failed.")
	e.clk.Add(time.Minute)
	code, _ = b.signin("ada@example.com", testPassword)
	assert.Equal(t, http.StatusSeeOther, code)
}

var inlineScriptRE = regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>`)

func TestHeadersCookiesAndCSP(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	b.developer("ada@example.com")
	b.createApp("ada-bot", "", "chat")
	a := e.browser(t)
	a.signin("admin@example.com", testPassword)
	for _, pg := range []struct {
		b    *browser
		path string
	}{{b, "/signin"}, {b, "/signup"}, {b, "/catalogue"}, {b, "/apps"}, {b, "/apps/ada-bot"}, {b, "/usage"}, {a, "/admin"}, {a, "/admin/products/chat"}} {
		resp, err := pg.b.c.Get(e.srv.URL + pg.path)
		require.NoError(t, err)
		raw := make([]byte, 1<<20)
		n, _ := resp.Body.Read(raw)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, pg.path)
		csp := resp.Header.Get("Content-Security-Policy")
		assert.Contains(t, csp, "script-src 'self'", pg.path)
		assert.NotContains(t, csp, "unsafe-inline", pg.path)
		assert.Contains(t, csp, "frame-ancestors 'none'", pg.path)
		assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"), pg.path)
		for _, tag := range inlineScriptRE.FindAllString(string(raw[:n]), -1) {
			assert.Contains(t, tag, `src="/static/`, "%s: every script is a same-origin file", pg.path)
		}
		assert.NotContains(t, string(raw[:n]), " style=", pg.path)
		assert.NotContains(t, strings.ToLower(string(raw[:n])), "<style", pg.path)
	}

	// Cookies: HttpOnly, SameSite=Strict; Secure with the __Host- prefix behind TLS.
	resp, err := http.Get(e.srv.URL + "/signin")
	require.NoError(t, err)
	resp.Body.Close()
	require.NotEmpty(t, resp.Cookies())
	for _, c := range resp.Cookies() {
		assert.True(t, c.HttpOnly, c.Name)
		assert.Equal(t, http.SameSiteStrictMode, c.SameSite, c.Name)
		assert.False(t, c.Secure, "plain HTTP listener")
	}
	s := newEnv(t, func(c *Config) { c.SecureCookies = true })
	resp, err = http.Get(s.srv.URL + "/signin")
	require.NoError(t, err)
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		assert.True(t, c.Secure, c.Name)
		assert.True(t, strings.HasPrefix(c.Name, "__Host-"), c.Name)
	}

	resp, err = http.Get(e.srv.URL + "/static/vendor/uplot/uPlot.iife.min.js")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the chart library is embedded")
}

func TestPasswordHash(t *testing.T) {
	h, err := hashPassword(hashParams{time: 1, memory: 64, threads: 1}, "s3cret-password")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$"))
	ok, err := checkPassword(h, "s3cret-password")
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = checkPassword(h, "s3cret-passwore")
	require.NoError(t, err)
	assert.False(t, ok)
	for _, bad := range []string{"", "$argon2i$v=19$m=64,t=1,p=1$AAAA$AAAA", "$argon2id$v=19$m=99999999,t=1,p=1$AAAA$AAAA", "$argon2id$v=19$m=64,t=1,p=1$!!$AAAA"} {
		_, err := checkPassword(bad, "x")
		assert.Error(t, err, bad)
	}
	h2, err := hashPassword(defaultHash, "s3cret-password")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(h2, "$argon2id$v=19$m=65536,t=3,p=2$"), "production cost (RFC 9106)")
}
