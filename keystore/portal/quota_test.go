package portal

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/memstore"
	apikeypolicy "github.com/tollgate/tollgate/filters/apikey/policy"
	quotapolicy "github.com/tollgate/tollgate/filters/quota/policy"
	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/keystore/analytics"
	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/shared/identity"
)

// quotaProducts adds products whose quotas cover every scope kind: product
// level (request and token), an operation set's own quota, and one
// operation's own token quota counting prompt tokens.
func quotaProducts(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	_, err := e.st.CreateOperationSet(ctx, model.OperationSet{Name: "embed-ops",
		Operations:   []model.Operation{{Path: "/v1/embeddings", Methods: []string{"POST"}}},
		RequestQuota: &model.Quota{Limit: 5, Interval: 1, TimeUnit: "minute", Window: "rolling"}})
	require.NoError(t, err)
	pr := model.Product{Name: "metered", Description: "Quotas everywhere",
		Operations: []model.Operation{
			{Path: "/v1/chat/completions", Methods: []string{"POST"}},
			{Path: "/v1/completions", Methods: []string{"POST"}, TokenQuota: &model.Quota{Limit: 500, Interval: 1, TimeUnit: "day", Counted: "prompt"}},
		},
		OperationSets: []string{"embed-ops"},
		RequestQuota:  &model.Quota{Limit: 10, Interval: 1, TimeUnit: "hour"},
		TokenQuota:    &model.Quota{Limit: 1000, Interval: 1, TimeUnit: "hour", Counted: "total"}}
	pr.Normalize()
	require.Empty(t, pr.Validate())
	_, err = e.st.CreateProduct(ctx, pr)
	require.NoError(t, err)
}

// gatewayKeys derives, for a request of app to method+path, the counters the
// quota filter and tokencount count in, the way the gateway does: the
// keystore's verify answer, the apikey filter's identity headers, then each
// filter's own policy reading them.
func gatewayKeys(t *testing.T, e *env, key, method, path string) (req quotapolicy.Check, tok *meter.Quota) {
	t.Helper()
	g, err := e.st.Lookup(context.Background(), model.HashKey(key))
	require.NoError(t, err)
	ents := make([]model.Entitlement, 0, len(g.Products))
	for _, p := range g.Products {
		ents = append(ents, model.Resolve(p, g.Sets))
	}
	d := model.Authorize(ents, method, path, "")
	require.Empty(t, d.Reason)
	id := identity.Identity{App: g.App.Name, Developer: g.App.Developer, Product: d.Entitlement.Product,
		RequestQuota: apikeypolicy.QuotaOf(d.Operation.RequestQuota), TokenQuota: apikeypolicy.QuotaOf(d.Operation.TokenQuota)}
	hdr := map[string]string{}
	for _, kv := range id.Pairs(identity.DefaultHeaders()) {
		hdr[kv[0]] = kv[1]
	}
	get := func(name string) string { return hdr[name] }

	qp, err := quotapolicy.ParseConfig([]byte(`{"key_sources": [{"identity": true}]}`))
	require.NoError(t, err)
	pl := qp.Plan(quotapolicy.Request{Method: method, Path: path, Header: get})
	require.Nil(t, pl.Err)
	require.Len(t, pl.Checks, 1)
	tp, err := meter.Parse([]byte(`{}`))
	require.NoError(t, err)
	tok, _, aerr := tp.Resolve(get)
	require.Nil(t, aerr)
	require.NotNil(t, tok)
	return pl.Checks[0], tok
}

var quotaRowRE = regexp.MustCompile(`<tr class="quota" data-app="([^"]*)" data-product="([^"]*)" data-kind="([^"]*)"><td>[^<]*</td><td>[^<]*</td><td>[^<]*</td><td><code>([^<]*)</code></td><td>[^<]*</td><td class="limit">(\d+)</td><td class="used">(\d+)</td><td class="remaining">(\d+)</td>`)

// quotaRows reads the "quota left now" table: scope|kind → limit, used, remaining.
func quotaRows(t *testing.T, body string) map[string][3]int64 {
	t.Helper()
	out := map[string][3]int64{}
	for _, m := range quotaRowRE.FindAllStringSubmatch(body, -1) {
		var v [3]int64
		for i := range v {
			n, err := strconv.ParseInt(m[5+i], 10, 64)
			require.NoError(t, err)
			v[i] = n
		}
		out[m[1]+"|"+m[2]+"|"+m[4]+"|"+m[3]] = v
	}
	return out
}

func TestQuotaLeftNow(t *testing.T) {
	var eng *counter.Engine
	e := newEnv(t, func(c *Config) {
		ms, err := memstore.Open(memstore.Options{Clock: c.Now})
		require.NoError(t, err)
		eng = counter.New(ms, counter.WithClock(c.Now))
		t.Cleanup(func() { _ = eng.Close() })
		c.Counters = eng
	})
	quotaProducts(t, e)
	ctx := context.Background()

	ada := e.browser(t)
	ada.developer("ada@example.com")
	ada.createApp("ada-metered", "", "metered", "chat")
	secret := ada.createKey("ada-metered")

	code, body := ada.get("/apps/ada-metered")
	require.Equal(t, http.StatusOK, code)
	rows := quotaRows(t, body)
	// The product-level request and token quotas are listed once although
	// several operations share them; "chat" has no quota.
	assert.Equal(t, map[string][3]int64{
		"ada-metered|metered|metered|requests":                   {10, 0, 10},
		"ada-metered|metered|metered|tokens":                     {1000, 0, 1000},
		"ada-metered|metered|set:embed-ops|requests":             {5, 0, 5},
		"ada-metered|metered|POST:/v1/completions|prompt_tokens": {500, 0, 500},
	}, rows, body)
	assert.Equal(t, 4, strings.Count(body, `<td class="reset">–</td>`), "nothing used, nothing to reset")

	// The gateway counts: 3 chat requests (57 tokens each), 2 embeddings,
	// 1 completion with 40 prompt tokens, under the keys its filters build.
	count := func(method, path string, n int, tokens int64) {
		t.Helper()
		req, tok := gatewayKeys(t, e, secret, method, path)
		for range n {
			d, err := eng.Consume(ctx, req.Key, req.Spec, 1)
			require.NoError(t, err)
			require.True(t, d.Allowed)
			k := counter.Key{App: tok.Key.App, Product: tok.Key.Product, Operation: tok.Key.Operation, Kind: counter.Kind(tok.Key.Kind)}
			_, err = eng.Consume(ctx, k, tok.Spec, tokens)
			require.NoError(t, err)
		}
	}
	count("POST", "/v1/chat/completions", 3, 57)
	count("POST", "/v1/embeddings", 2, 8)
	count("POST", "/v1/completions", 1, 40)

	code, body = ada.get("/apps/ada-metered")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, map[string][3]int64{
		"ada-metered|metered|metered|requests":                   {10, 4, 6}, // chat and completions share it
		"ada-metered|metered|metered|tokens":                     {1000, 3*57 + 2*8, 1000 - 3*57 - 2*8},
		"ada-metered|metered|set:embed-ops|requests":             {5, 2, 3},
		"ada-metered|metered|POST:/v1/completions|prompt_tokens": {500, 40, 460},
	}, quotaRows(t, body), "the page reads the counters the filters count in")

	// The usage page lists the same for every app of the developer.
	code, body = ada.get("/usage")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, int64(6), quotaRows(t, body)["ada-metered|metered|metered|requests"][2])
	hour := e.clk.Now().UTC().Truncate(time.Hour).Add(time.Hour).Format("2006-01-02 15:04:05 UTC")
	assert.Contains(t, body, `<td class="reset">`+hour+`</td>`, "the hourly calendar quotas reset at the top of the hour")

	// A calendar hour later the hourly counters are full again.
	e.clk.Add(time.Hour)
	_, body = ada.get("/apps/ada-metered")
	assert.Equal(t, [3]int64{10, 0, 10}, quotaRows(t, body)["ada-metered|metered|metered|requests"])

	// Another developer sees neither the app nor its quota; the admin sees both.
	bob := e.browser(t)
	bob.developer("bob@example.com")
	code, body = bob.get("/apps/ada-metered")
	assert.Equal(t, http.StatusNotFound, code)
	assert.NotContains(t, body, "quota-left")
	_, body = bob.get("/usage")
	assert.Empty(t, quotaRows(t, body), "bob has no apps: no quota rows of ada's")
	assert.NotContains(t, body, "ada-metered")
	admin := e.browser(t)
	code, _ = admin.signin("admin@example.com", testPassword)
	require.Equal(t, http.StatusSeeOther, code)
	code, body = admin.get("/apps/ada-metered")
	require.Equal(t, http.StatusOK, code)
	assert.Len(t, quotaRows(t, body), 4)
	_, body = admin.get("/usage")
	assert.Len(t, quotaRows(t, body), 4)
}

// TestQuotaKeysMatchFilters checks the portal's counter for every quota
// against the keys the filters build for a request that quota governs.
func TestQuotaKeysMatchFilters(t *testing.T) {
	e := newEnv(t)
	quotaProducts(t, e)
	ctx := context.Background()
	app, err := e.st.CreateApp(ctx, model.App{Name: "keys-app", Developer: "admin@example.com", Products: []string{"metered"}})
	require.NoError(t, err)
	secret, err := model.GenerateKey(nil)
	require.NoError(t, err)
	id, err := model.GenerateKeyID(nil)
	require.NoError(t, err)
	_, err = e.st.CreateKey(ctx, model.Key{ID: id, App: app.Name, Status: model.KeyApproved, Hash: model.HashKey(secret), Prefix: model.DisplayPrefix(secret)})
	require.NoError(t, err)

	checks, err := e.p.appQuotaChecks(ctx, app)
	require.NoError(t, err)
	have := map[string]bool{}
	for _, c := range checks {
		have[counter.CounterID(c.req.Key, c.req.Spec)] = true
	}
	for _, op := range []struct{ method, path string }{
		{"POST", "/v1/chat/completions"}, {"POST", "/v1/completions"}, {"POST", "/v1/embeddings"},
	} {
		req, tok := gatewayKeys(t, e, secret, op.method, op.path)
		assert.True(t, have[counter.CounterID(req.Key, req.Spec)], "request counter %v %v of %s is shown", req.Key, req.Spec, op.path)
		k := counter.Key{App: tok.Key.App, Product: tok.Key.Product, Operation: tok.Key.Operation, Kind: counter.Kind(tok.Key.Kind)}
		assert.True(t, have[counter.CounterID(k, tok.Spec)], "token counter %v %v of %s is shown", k, tok.Spec, op.path)
	}
	assert.Len(t, checks, 4, "one counter per distinct quota: product requests and tokens, the set's requests, the operation's prompt tokens")
}

func TestRawRecordsExportIsScoped(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		var err error
		c.Analytics, err = analytics.Open(c.Backend, analytics.Config{Now: c.Now, RawRetention: time.Hour})
		require.NoError(t, err)
	})
	ctx := context.Background()
	ada := e.browser(t)
	ada.developer("ada@example.com")
	ada.createApp("ada-raw", "", "chat")
	bob := e.browser(t)
	bob.developer("bob@example.com")
	bob.createApp("bob-raw", "", "chat")
	_, err := e.p.cfg.Analytics.Ingest(ctx, []analytics.Record{
		{RequestID: "a1", Time: e.clk.Now(), App: "ada-raw", Model: "gemma-3-1b-it", TotalTokens: 77, Outcome: "ok"},
		{RequestID: "b1", Time: e.clk.Now(), App: "bob-raw", Model: "gemma-3-1b-it", TotalTokens: 5, Outcome: "ok"},
	})
	require.NoError(t, err)

	_, body := ada.get("/usage")
	assert.Contains(t, body, `id="raw-records"`, "the usage page links the export when raw records are kept")
	code, body := ada.get("/usage/records?format=csv")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "a1,")
	assert.NotContains(t, body, "b1,", "only ada's apps")
	for _, q := range []string{"/usage/records", "/usage/records?app=bob-raw", "/usage/records?developer=bob@example.com"} {
		code, body := ada.get(q)
		require.Equal(t, http.StatusOK, code, q)
		assert.NotContains(t, body, "bob-raw", q)
	}
	admin := e.browser(t)
	code, _ = admin.signin("admin@example.com", testPassword)
	require.Equal(t, http.StatusSeeOther, code)
	_, body = admin.get("/usage/records")
	assert.Contains(t, body, `"a1"`)
	assert.Contains(t, body, `"b1"`)

	off := newEnv(t)
	dev := off.browser(t)
	dev.developer("ada@example.com")
	_, body = dev.get("/usage")
	assert.NotContains(t, body, `id="raw-records"`)
	code, _ = dev.get("/usage/records")
	assert.Equal(t, http.StatusNotFound, code, "off by default")
}
