// Package portal drives the developer portal (`tollgate serve --portal`) in
// headless Chromium (Debian's chromium package, through chromedp) in front
// of the shipped chain in real Envoy: a developer signs up, signs in,
// creates an app and a key, calls the gateway with it, and the usage page
// shows the model server's token count in its table and chart, and the
// quota left now drops by the request and its tokens; a product's API
// reference lists its operations; a rotated key is refused, an app waits for
// the admin's approval of a manual product; product fields with markup are
// shown as text; another developer cannot open that app or its quota. With
// TOLLGATE_UPDATE_SCREENSHOTS=1 the test takes the screenshots that
// docs/portal.md shows.
package portal

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/e2e/stacktest"
	"github.com/tollgate/tollgate/internal/jsontest"
	"github.com/tollgate/tollgate/scripts/run-demo/demo"
)

func TestMain(m *testing.M) { os.Exit(keystoretest.Main(m)) }

// UpdateScreenshotsEnv set to 1 makes the test write its screenshots into
// docs/portal (what docs/portal.md shows); other runs take none, which keeps
// the work tree clean and the test shorter.
const UpdateScreenshotsEnv = "TOLLGATE_UPDATE_SCREENSHOTS"

// screenshotDir is docs/portal when screenshots are asked for, else "".
func screenshotDir(t *testing.T) string {
	t.Helper()
	if os.Getenv(UpdateScreenshotsEnv) != "1" {
		return ""
	}
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	dir := filepath.Join(root, "docs", "portal")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// browserPath finds Chromium; without it the test is skipped locally and
// fails in CI (where .ci/run installs it).
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (apt-get install chromium)")
	}
	t.Skip("chromium is not installed (apt-get install chromium); CI runs this test")
	return ""
}

const dataToken = "e2e-portal-data-token-0123456789"

// The chain, on the suite module in one VM: apikey verifies the portal's
// keys; quota counts each app's request quota at the keystore on every
// request (strict, so the portal's "quota left" is exact at once);
// tokencount meters the token budget and reports usage every 200ms
// (modelroute is left out: it is not under test here).
const (
	apikeyConfig = `{"key_sources": [{"bearer": true}],
	  "keystore": {"cluster": "keystore", "timeout": "500ms", "token": "` + dataToken + `"}, "cache": {"ttl": "1s", "negative_ttl": "1s"}}`
	quotaConfig = `{"mode": "strict", "key_sources": [{"identity": true}],
	  "keystore": {"cluster": "keystore", "timeout": "500ms", "token": "` + dataToken + `"}}`
	tokencountConfig = `{"keystore": {"cluster": "keystore", "timeout": "500ms", "token": "` + dataToken + `"},
	  "usage": {"enabled": true, "flush_interval": "200ms"}}`
)

// xssProducts is a product whose description and operation name carry
// markup, applied after the catalogue's screenshot.
const xssProducts = `apiVersion: tollgate.dev/v1
kind: APIProduct
metadata:
  name: xss
spec:
  displayName: '<img src=x onerror=alert(1)>'
  description: '<script>alert("description")</script>'
  operations:
    - {path: '/v1/<script>alert(1)</script>', methods: [POST]}
    - {path: /v1/embeddings, methods: [POST]}
`

// quotaRow is one row of the portal's "quota left now" table.
type quotaRow struct {
	App       string `json:"app"`
	Product   string `json:"product"`
	Kind      string `json:"kind"`
	Limit     int64  `json:"limit,string"`
	Used      int64  `json:"used,string"`
	Remaining int64  `json:"remaining,string"`
}

// quotaLeft reads the quota table of the page the browser shows, by kind.
func quotaLeft(ctx context.Context, t *testing.T) map[string]quotaRow {
	t.Helper()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(Array.from(document.querySelectorAll("tr.quota")).map(r => ({
	  app: r.dataset.app, product: r.dataset.product, kind: r.dataset.kind, limit: r.querySelector(".limit").textContent,
	  used: r.querySelector(".used").textContent, remaining: r.querySelector(".remaining").textContent})))`))
	require.NoError(t, err)
	var rows []quotaRow
	require.NoError(t, json.Unmarshal([]byte(raw), &rows), raw)
	out := map[string]quotaRow{}
	for _, r := range rows {
		out[r.Product+"/"+r.Kind] = r
	}
	return out
}

func TestPortalInBrowser(t *testing.T) {
	began := time.Now()
	chromium := browserPath(t)
	const adminPassword = "portal-admin-password"
	t.Setenv("TOLLGATE_PORTAL_ADMIN_PASSWORD", adminPassword)
	ks := keystoretest.Start(t, keystoretest.Options{DataToken: dataToken,
		Args: []string{"--portal", "127.0.0.1:0", "--portal-admin", "admin@tollgate.test", "--log-level", "warn",
			"--usage-raw-retention", "1h"}})
	raw, err := os.ReadFile("testdata/products.yaml")
	require.NoError(t, err)
	actx, acancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer acancel()
	require.NoError(t, demo.ApplyProducts(actx, ks.Client(t), "testdata/products.yaml", raw))
	up := stacktest.NewUpstream(t, nil)
	suite := envoytest.WasmPath(t, "tollgate")
	gw := envoytest.Start(t, envoytest.Config{
		Filters: []envoytest.WasmFilter{
			{Name: "apikey", RootID: "apikey", VMID: "portal", WasmPath: suite, Configuration: apikeyConfig},
			{Name: "quota", RootID: "quota", VMID: "portal", WasmPath: suite, Configuration: quotaConfig},
			{Name: "tokencount", RootID: "tokencount", VMID: "portal", WasmPath: suite,
				Configuration: tokencountConfig, AllowOnHeadersStopIteration: true},
		},
		Clusters: []envoytest.Cluster{{Name: "upstream", Addr: up.Addr()}, {Name: "keystore", Addr: ks.DataAddr()}},
		Routes:   []envoytest.Route{{Prefix: "/", Cluster: "upstream"}},
	})
	t.Logf("stack up after %v", time.Since(began))
	portal := ks.PortalURL()
	require.NotEmpty(t, portal)
	shots := screenshotDir(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.WindowSize(1100, 900), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	var dialogs atomic.Int32 // an alert() of an injected script would open one
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			dialogs.Add(1)
		}
	}))
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if shots == "" {
				return nil
			}
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name), png, 0o644)
		})
	}
	const password = "a long browser password"
	signUpAndIn := func(email string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Navigate(portal+"/signup"),
			chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "Ada Browser"),
			chromedp.SendKeys(chromedp.CSS(`input[name=email]`), email),
			chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
			chromedp.Click(chromedp.CSS(`#signup`)),
			chromedp.WaitVisible(chromedp.CSS(`#message`)),
			chromedp.Navigate(portal+"/signin"),
			chromedp.SendKeys(chromedp.CSS(`input[name=email]`), email),
			chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
			chromedp.Click(chromedp.CSS(`#signin`)),
			chromedp.WaitVisible(chromedp.CSS(`#create-app`)),
		)
	}

	require.NoError(t, chromedp.Do(ctx,
		signUpAndIn("ada@example.com"),
		chromedp.Navigate(portal+"/catalogue"),
		chromedp.WaitVisible(chromedp.CSS(`#product-chat`)),
		shot("catalogue.png"),
		chromedp.Click(chromedp.CSS(`#product-chat a.reference`)),
		chromedp.WaitVisible(chromedp.CSS(`section.operation`)),
		shot("reference.png"),
		chromedp.Navigate(portal+"/apps"),
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "ada-browser"),
		chromedp.SendKeys(chromedp.CSS(`input[name=description]`), "My first app <b>bold?</b>"),
		chromedp.Click(chromedp.CSS(`input[name=product][value=chat]`)),
		chromedp.Click(chromedp.CSS(`#create-app`)),
		chromedp.WaitVisible(chromedp.CSS(`#create-key`)),
		chromedp.Click(chromedp.CSS(`#create-key`)),
		chromedp.WaitVisible(chromedp.CSS(`#secret`)),
	))
	secret, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#secret`)))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(secret, "tg_"), secret)
	before := quotaLeft(ctx, t)
	require.Equal(t, quotaRow{App: "ada-browser", Product: "chat", Kind: "requests", Limit: 1000, Used: 0, Remaining: 1000}, before["chat/requests"])
	require.Equal(t, quotaRow{App: "ada-browser", Product: "chat", Kind: "tokens", Limit: 100000, Used: 0, Remaining: 100000}, before["chat/tokens"])
	require.Len(t, before, 2, "chat has one request quota and one token budget")
	t.Logf("key issued after %v", time.Since(began))
	// The screenshot must not carry a usable key, even a test one.
	_, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelectorAll("#secret, #curl, #sdk").forEach(e => e.textContent = e.textContent.replaceAll(`+strconv.Quote(secret)+`, "tg_…")); true`))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx, shot("app.png")))
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(portal+"/catalogue/chat"), chromedp.WaitVisible(chromedp.CSS(`section.operation`))))
	ops, err := chromedp.Run(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("section.operation")).map(s => s.dataset.method + " " + s.dataset.path).join("|")`))
	require.NoError(t, err)
	require.Equal(t, "POST /v1/chat/completions", ops, "chat's reference lists exactly its one operation")

	// A request through the gateway with the new key.
	code, body := call(t, gw, secret)
	require.Equal(t, http.StatusOK, code, "%s", body)
	tokens := jsontest.Get(body, "usage.total_tokens").Int()
	require.Positive(t, tokens)
	want := strconv.FormatInt(tokens, 10)

	// The quota left now: one request fewer (quota counted it at the
	// keystore before forwarding) and the model server's tokens fewer once
	// tokencount has settled its reservation.
	var left map[string]quotaRow
	deadline := time.Now().Add(20 * time.Second)
	for {
		require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(portal+"/apps/ada-browser"), chromedp.WaitVisible(chromedp.CSS(`#quota`))))
		left = quotaLeft(ctx, t)
		if left["chat/tokens"].Used == tokens {
			break
		}
		require.True(t, time.Now().Before(deadline), "the app page shows %+v; the model server counted %d tokens", left, tokens)
		time.Sleep(250 * time.Millisecond) // polling the page, with a deadline
	}
	require.Equal(t, quotaRow{App: "ada-browser", Product: "chat", Kind: "requests", Limit: 1000, Used: 1, Remaining: 999}, left["chat/requests"])
	require.Equal(t, quotaRow{App: "ada-browser", Product: "chat", Kind: "tokens", Limit: 100000, Used: tokens, Remaining: 100000 - tokens}, left["chat/tokens"])
	t.Logf("quota left shown after %v", time.Since(began))

	// The usage page shows the model server's count once the record arrives.
	deadline = time.Now().Add(20 * time.Second)
	for {
		require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(portal+"/usage")))
		shown, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#total-tokens`)))
		require.NoError(t, err)
		if shown == want {
			break
		}
		require.True(t, time.Now().Before(deadline), "the usage page shows %s tokens, the model server counted %s", shown, want)
		time.Sleep(250 * time.Millisecond) // polling the page, with a deadline
	}
	t.Logf("usage shown after %v", time.Since(began))
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#chart[data-drawn="true"]`)), shot("usage.png")))
	chartTotal, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`#chart`), "data-total-tokens"))
	require.NoError(t, err)
	require.Equal(t, want, chartTotal.Value, "the chart drew the same total")

	// Raw records are kept (--usage-raw-retention): the developer's export
	// lists the request with the model server's count.
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#raw-records`)), chromedp.Navigate(portal+"/usage/records")))
	exported, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`body`)))
	require.NoError(t, err)
	require.Equal(t, "ada-browser", jsontest.Get([]byte(exported), "records.0.app").Str(), exported)
	require.Equal(t, tokens, jsontest.Get([]byte(exported), "records.0.total_tokens").Int(), exported)
	require.Equal(t, "chat", jsontest.Get([]byte(exported), "records.0.product").Str(), exported)
	require.False(t, jsontest.Get([]byte(exported), "records.1").Exists(), "one request so far: %s", exported)

	// Rotate: a new key works at once, the old one is refused once the
	// gateway's cached answer expires (apikey cache ttl, 1 s here).
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(portal+"/apps/ada-browser"),
		chromedp.Click(chromedp.CSS(`form[action$="/rotate"] button`)), chromedp.WaitVisible(chromedp.CSS(`#secret`))))
	rotated, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#secret`)))
	require.NoError(t, err)
	require.NotEqual(t, secret, rotated)
	code, body = call(t, gw, rotated)
	require.Equal(t, http.StatusOK, code, "%s", body)
	eventually(t, "the old key is refused after rotation", func() bool { c, _ := call(t, gw, secret); return c == http.StatusUnauthorized })

	// Manual approval: the premium product waits for an admin.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(portal+"/apps"),
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "ada-premium"),
		chromedp.Click(chromedp.CSS(`input[name=product][value=premium]`)),
		chromedp.Click(chromedp.CSS(`#create-app`)),
		chromedp.WaitVisible(chromedp.CSS(`#create-key`)),
		chromedp.Click(chromedp.CSS(`#create-key`)),
		chromedp.WaitVisible(chromedp.CSS(`#secret`))))
	premium, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#secret`)))
	require.NoError(t, err)
	code, body = call(t, gw, premium)
	require.Equal(t, http.StatusForbidden, code, "not approved yet: %s", body)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`header form button`)),
		chromedp.WaitVisible(chromedp.CSS(`#signin`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), "admin@tollgate.test"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), adminPassword),
		chromedp.Click(chromedp.CSS(`#signin`)),
		chromedp.WaitVisible(chromedp.CSS(`#create-app`)),
		chromedp.Navigate(portal+"/admin"),
		chromedp.Click(chromedp.CSS(`form[action="/admin/apps/ada-premium/approve"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`#all-apps`)),
	))
	eventually(t, "the approved app's key works", func() bool { c, _ := call(t, gw, premium); return c == http.StatusOK })

	// Another developer cannot open an app of ada's by its URL.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`header form button`)),
		chromedp.WaitVisible(chromedp.CSS(`#signin`)),
		signUpAndIn("bob@example.com"),
		chromedp.Navigate(portal+"/apps/ada-browser"),
	))
	mainText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	require.NoError(t, err)
	require.Contains(t, mainText, "Page not found.")
	require.NotContains(t, mainText, "ada-browser")
	require.Empty(t, quotaLeft(ctx, t), "no quota of ada's app on bob's not-found page")
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(portal+"/usage"), chromedp.WaitVisible(chromedp.CSS(`#quota`))))
	require.Empty(t, quotaLeft(ctx, t), "bob's usage page lists no quota of ada's apps")
	mainText, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	require.NoError(t, err)
	require.NotContains(t, mainText, "ada-")

	// Markup in a product's name, description and operation is shown as text.
	actx2, acancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer acancel2()
	require.NoError(t, demo.ApplyProducts(actx2, ks.Client(t), "xss.yaml", []byte(xssProducts)))
	for _, path := range []string{"/catalogue", "/catalogue/xss"} {
		require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(portal+path), chromedp.WaitVisible(chromedp.CSS(`main`))))
		injected, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("script:not([src]), img[src=x], main script").length`))
		require.NoError(t, err)
		require.Zero(t, injected, "%s: no element of the product's markup was created", path)
		mainText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
		require.NoError(t, err)
		require.Contains(t, mainText, `<script>alert("description")</script>`, path)
		require.Contains(t, mainText, `/v1/<script>alert(1)</script>`, path)
	}
	ops, err = chromedp.Run(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("section.operation")).map(s => s.dataset.method + " " + s.dataset.path).join("|")`))
	require.NoError(t, err)
	require.Equal(t, "POST /v1/embeddings", ops, "the xss product's one documented operation")
	require.Zero(t, dialogs.Load(), "no script of a product's fields ran")
	t.Logf("done after %v", time.Since(began))
}

// call sends one chat completion through the gateway with key.
func call(t *testing.T, gw *envoytest.Envoy, key string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, gw.URL("/v1/chat/completions"), strings.NewReader(
		`{"model": "gemma-3-1b-it", "max_tokens": 30, "messages": [{"role": "user", "content": "Hello from the portal test"}]}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	return resp.StatusCode, body
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), what)
		time.Sleep(200 * time.Millisecond) // polling the gateway, with a deadline
	}
}
