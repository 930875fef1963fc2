package portal

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/keystore/analytics"
	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/keystore/store"
)

const testPassword = "correct horse battery"

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	p     *Portal
	srv   *httptest.Server
	st    store.Store
	usage *analytics.Store
	clk   *clock
	dir   string
}

// newEnv starts a portal on a fresh bbolt store with a "chat" product
// (automatic) and a "premium" one (manual approval), and an admin account.
func newEnv(t *testing.T, mutate ...func(*Config)) *env {
	t.Helper()
	dir := t.TempDir()
	b, err := store.OpenBackend(context.Background(), store.BackendOptions{DataDir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	clk := &clock{now: time.Now().UTC().Truncate(time.Second)}
	st, err := b.Keystore(store.WithClock(clk.Now))
	require.NoError(t, err)
	usage, err := analytics.Open(b, analytics.Config{Now: clk.Now})
	require.NoError(t, err)
	ctx := context.Background()
	for _, pr := range []model.Product{
		{Name: "chat", DisplayName: "Chat", Description: "Chat completions", AllowedModels: []string{"gemma-3-1b-it"},
			Operations: []model.Operation{{Path: "/v1/chat/completions", Methods: []string{"POST"}}}},
		{Name: "premium", Description: "Bigger models", Attributes: map[string]string{ApprovalAttr: "manual"},
			Operations: []model.Operation{{Path: "/v1/chat/completions", Methods: []string{"POST"}}}},
	} {
		pr.Normalize()
		require.Empty(t, pr.Validate())
		_, err := st.CreateProduct(ctx, pr)
		require.NoError(t, err)
	}
	cfg := Config{Store: st, Backend: b, Analytics: usage, Now: clk.Now, GatewayURL: "http://127.0.0.1:8080",
		hash: &hashParams{time: 1, memory: 64, threads: 1}}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	e := &env{p: p, srv: srv, st: st, usage: usage, clk: clk, dir: dir}
	require.NoError(t, p.Seed(ctx, "admin@example.com", "Admin", testPassword, RoleAdmin))
	return e
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	t    *testing.T
	e    *env
	c    *http.Client
	csrf string
}

func (e *env) browser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &browser{t: t, e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	resp, err := b.c.Get(b.e.srv.URL + path)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	if m := csrfRE.FindStringSubmatch(string(raw)); m != nil {
		b.csrf = m[1]
	}
	return resp.StatusCode, string(raw)
}

// post sends a form with the browser's current CSRF token (unless the form sets one).
func (b *browser) post(path string, form url.Values, headers ...string) (int, string, *http.Response) {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csrf)
	}
	req, err := http.NewRequest(http.MethodPost, b.e.srv.URL+path, strings.NewReader(form.Encode()))
	require.NoError(b.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := b.c.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	if m := csrfRE.FindStringSubmatch(string(raw)); m != nil {
		b.csrf = m[1]
	}
	return resp.StatusCode, string(raw), resp
}

func (b *browser) signup(email, password string) string {
	b.t.Helper()
	b.get("/signup")
	code, body, _ := b.post("/signup", url.Values{"email": {email}, "name": {"Dev " + email}, "password": {password}})
	require.Equal(b.t, http.StatusOK, code, body)
	return body
}

func (b *browser) signin(email, password string) (int, string) {
	b.t.Helper()
	b.get("/signin")
	code, body, resp := b.post("/signin", url.Values{"email": {email}, "password": {password}})
	if code == http.StatusSeeOther {
		assert.Equal(b.t, "/apps", resp.Header.Get("Location"))
		b.get("/apps") // picks up the session's CSRF token
	}
	return code, body
}

func (b *browser) developer(email string) {
	b.t.Helper()
	b.signup(email, testPassword)
	code, body := b.signin(email, testPassword)
	require.Equal(b.t, http.StatusSeeOther, code, body)
}

func (b *browser) createApp(name, desc string, products ...string) {
	b.t.Helper()
	code, body, _ := b.post("/apps", url.Values{"name": {name}, "description": {desc}, "product": products})
	require.Equal(b.t, http.StatusSeeOther, code, body)
}

var secretRE = regexp.MustCompile(`<code id="secret">(tg_[A-Za-z0-9]+)</code>`)

func (b *browser) createKey(app string) string {
	b.t.Helper()
	code, body, _ := b.post("/apps/"+app+"/keys", nil)
	require.Equal(b.t, http.StatusCreated, code, body)
	m := secretRE.FindStringSubmatch(body)
	require.NotNil(b.t, m, body)
	return m[1]
}

func TestDeveloperJourney(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	b.developer("ada@example.com")

	code, body := b.get("/catalogue")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "Chat completions")
	assert.Contains(t, body, "gemma-3-1b-it")
	assert.Contains(t, body, "needs approval")

	b.createApp("ada-bot", "my bot", "chat", "premium")
	app, err := e.st.GetApp(context.Background(), "ada-bot")
	require.NoError(t, err)
	assert.Equal(t, []string{"chat"}, app.Products, "the manual product waits for an admin")
	assert.Equal(t, "ada@example.com", app.Developer)

	secret := b.createKey("ada-bot")
	assert.True(t, model.WellFormedKey(secret))
	_, page, _ := b.post("/apps/ada-bot/keys", nil)
	assert.Contains(t, page, `{"model": "gemma-3-1b-it"`, "the curl snippet names a model the app may use")
	assert.Contains(t, page, `base_url="http://127.0.0.1:8080/v1"`)
	_, body = b.get("/apps/ada-bot")
	assert.NotContains(t, body, secret, "a key is shown once")
	assert.Contains(t, body, "waiting for approval: premium")
	keys, err := e.st.ListKeys(context.Background(), "ada-bot")
	require.NoError(t, err)
	require.Len(t, keys, 2)
	var first model.Key
	for _, k := range keys {
		if k.Hash == model.HashKey(secret) {
			first = k
		}
	}
	require.NotEmpty(t, first.ID, "the key is stored by its hash")
	keys = []model.Key{first}
	raw, err := os.ReadFile(filepath.Join(e.dir, store.BoltFile))
	require.NoError(t, err)
	assert.NotContains(t, string(raw), secret, "only the key's hash is stored")
	assert.NotContains(t, string(raw), testPassword, "only the password's hash is stored")

	// Rotate: a new key, the old one revoked.
	code, body, _ = b.post("/apps/ada-bot/keys/"+keys[0].ID+"/rotate", nil)
	require.Equal(t, http.StatusCreated, code, body)
	newSecret := secretRE.FindStringSubmatch(body)[1]
	assert.NotEqual(t, secret, newSecret)
	old, err := e.st.GetKey(context.Background(), keys[0].ID)
	require.NoError(t, err)
	assert.Equal(t, model.KeyRevoked, old.Status)

	// Usage of the developer's app shows on the usage page and in usage.json.
	ack, err := e.usage.Ingest(context.Background(), []analytics.Record{
		{RequestID: "r1", Time: e.clk.Now(), App: "ada-bot", Product: "chat", Developer: "ada@example.com", Model: "gemma-3-1b-it", PromptTokens: 12, CompletionTokens: 30, Outcome: "ok", Status: 200},
		{RequestID: "r2", Time: e.clk.Now(), App: "other-app", Product: "chat", Developer: "bob@example.com", Model: "gemma-3-1b-it", PromptTokens: 1000, Outcome: "ok", Status: 200},
	})
	require.NoError(t, err)
	require.Equal(t, 2, ack.Accepted)
	_, body = b.get("/usage")
	assert.Contains(t, body, `<strong id="total-tokens">42</strong>`, "only the developer's own apps count")
	code, body = b.get("/usage.json?step=day&group_by=model")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `"total_tokens":42`)
	assert.NotContains(t, body, "1000")

	// Admin approves the pending product and sees every app's usage.
	a := e.browser(t)
	code, _ = a.signin("admin@example.com", testPassword)
	require.Equal(t, http.StatusSeeOther, code)
	_, body = a.get("/admin")
	assert.Contains(t, body, "ada-bot")
	code, body, _ = a.post("/admin/apps/ada-bot/approve", nil)
	require.Equal(t, http.StatusSeeOther, code, body)
	app, err = e.st.GetApp(context.Background(), "ada-bot")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"chat", "premium"}, app.Products)
	_, body = a.get("/usage.json?step=day")
	assert.Contains(t, body, `"total_tokens":1042`)
}

func TestSignupModes(t *testing.T) {
	t.Run("approval", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.Signup = SignupApproval })
		b := e.browser(t)
		body := b.signup("pat@example.com", testPassword)
		assert.Contains(t, body, "once an administrator has approved it")
		code, body := b.signin("pat@example.com", testPassword)
		assert.Equal(t, http.StatusUnauthorized, code)
		assert.Contains(t, body, "Sign-in failed.")

		a := e.browser(t)
		a.signin("admin@example.com", testPassword)
		code, _, _ = a.post("/admin/users/pat@example.com/approve", nil)
		require.Equal(t, http.StatusSeeOther, code)
		code, _ = b.signin("pat@example.com", testPassword)
		assert.Equal(t, http.StatusSeeOther, code)

		// Disabling ends the account's sessions at once.
		code, _, _ = a.post("/admin/users/pat@example.com/disable", nil)
		require.Equal(t, http.StatusSeeOther, code)
		code, _ = b.get("/apps")
		assert.Equal(t, http.StatusSeeOther, code, "a disabled developer is signed out")
	})
	t.Run("invite", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.Signup = SignupInvite })
		b := e.browser(t)
		b.get("/signup")
		code, body, _ := b.post("/signup", url.Values{"email": {"ivy@example.com"}, "password": {testPassword}})
		assert.Equal(t, http.StatusBadRequest, code)
		assert.Contains(t, body, "needs an invitation")

		a := e.browser(t)
		a.signin("admin@example.com", testPassword)
		code, body, _ = a.post("/admin/invites", url.Values{"email": {"ivy@example.com"}})
		require.Equal(t, http.StatusCreated, code, body)
		link := regexp.MustCompile(`/signup\?invite=([A-Za-z0-9_-]+)`).FindStringSubmatch(body)
		require.NotNil(t, link)

		b.get("/signup?invite=" + link[1])
		code, body, _ = b.post("/signup", url.Values{"email": {"other@example.com"}, "password": {testPassword}, "invite": {link[1]}})
		assert.Equal(t, http.StatusBadRequest, code, "an invitation is for one address")
		assert.Contains(t, body, "needs an invitation")
		code, body, _ = b.post("/signup", url.Values{"email": {"ivy@example.com"}, "password": {testPassword}, "invite": {link[1]}})
		require.Equal(t, http.StatusOK, code, body)
		code, _ = b.signin("ivy@example.com", testPassword)
		assert.Equal(t, http.StatusSeeOther, code)
		c := e.browser(t)
		c.get("/signup")
		code, _, _ = c.post("/signup", url.Values{"email": {"ivy@example.com"}, "password": {testPassword}, "invite": {link[1]}})
		assert.Equal(t, http.StatusBadRequest, code, "an invitation works once")
	})
}
