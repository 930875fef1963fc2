package apikey

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/filters/apikey/policy"
	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/shared/identity"
)

// Filter configurations of the listeners. Short TTLs keep revocation and
// outage checks quick; every key source is enabled on the main listener.
const (
	mainConfig = `{
		"key_sources": [{"header": "x-api-key"}, {"bearer": true}, {"query": "api_key"}],
		"keystore": {"cluster": "keystore", "timeout": "1s"},
		"cache": {"ttl": "2s", "negative_ttl": "1s", "error_ttl": "1s"}
	}`
	openConfig = `{
		"keystore": {"cluster": "keystore", "timeout": "1s"},
		"cache": {"ttl": "2s", "negative_ttl": "1s", "error_ttl": "1s"},
		"failure_mode": "open"
	}`
	apigeeConfig = `{"keystore": {"cluster": "keystore"}, "error_style": "apigee"}`
	stripConfig  = `{"mode": "strip"}`
	fakeConfig   = `{"keystore": {"cluster": "fakeks", "timeout": "5s"}, "cache": {"negative_ttl": "30s"}}`
)

// fixture is everything the scenario needs, set up once.
type fixture struct {
	ks   *keystore
	fake *fakeKeystore
	up   *envoytest.Upstream
	gw   *gateway
	c    *http.Client
}

// provision starts a keystore with examples/products.yaml applied and app
// "demo" (product chat) created, all through the CLI.
func provision(t testing.TB) *keystore {
	t.Helper()
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	ks := startKeystore(t, t.TempDir(), "127.0.0.1:0", "127.0.0.1:0")
	ks.cli(t, "products", "apply", "-f", filepath.Join(root, "examples", "products.yaml"))
	ks.cli(t, "developers", "create", "--email", "ada@example.com", "--name", "Ada Lovelace")
	ks.cli(t, "apps", "create", "demo", "--developer", "ada@example.com", "--products", "chat")
	return ks
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ks := provision(t)
	f := &fixture{ks: ks, fake: newFakeKeystore(t), up: envoytest.NewUpstream(t)}
	f.gw = startGateway(t, f.up, []envoytest.Cluster{
		{Name: "keystore", Addr: ks.dataAddr},
		{Name: "fakeks", Addr: f.fake.addr()},
	}, mainConfig,
		listener{name: "open", configs: []string{openConfig}},
		listener{name: "apigee", configs: []string{apigeeConfig}},
		listener{name: "strip", configs: []string{mainConfig, stripConfig}},
		listener{name: "fake", configs: []string{fakeConfig}},
	)
	f.c = f.gw.Client()
	return f
}

// forwarded returns the last request the upstream saw, failing when the
// upstream count is not want.
func (f *fixture) forwarded(t *testing.T, want int) envoytest.Request {
	t.Helper()
	reqs := f.up.WaitRequests(t, want, 5*time.Second)
	require.Len(t, reqs, want, "requests at the upstream")
	return reqs[len(reqs)-1]
}

func TestAPIKey(t *testing.T) {
	f := setup(t)
	good := f.ks.createKey(t, "demo")
	revokeMe := f.ks.createKey(t, "demo")
	afterRestart := f.ks.createKey(t, "demo")
	duringOutage := f.ks.createKey(t, "demo")
	url := func(path string) string { return f.gw.url("main", path) }
	upstream := 0

	t.Run("no key is 401", func(t *testing.T) {
		r := do(t, f.c, "GET", url("/v1/models"), nil)
		assert.Equal(t, http.StatusUnauthorized, r.StatusCode)
		assert.Equal(t, "missing_api_key", r.errorCode())
		assert.Equal(t, "application/json", r.Header.Get("content-type"))
		assert.Equal(t, `ApiKey realm="tollgate", header="x-api-key"`, r.Header.Get("www-authenticate"))
		assert.Equal(t, upstream, f.up.Count())
	})

	t.Run("bad key is 401", func(t *testing.T) {
		unknown, err := model.GenerateKey(nil)
		require.NoError(t, err)
		for _, key := range []string{"not-a-key", good.Key[:len(good.Key)-1], unknown} {
			r := do(t, f.c, "GET", url("/v1/models"), map[string]string{"x-api-key": key})
			assert.Equal(t, http.StatusUnauthorized, r.StatusCode, r.Body)
			assert.Equal(t, "invalid_api_key", r.errorCode())
			assert.NotEmpty(t, r.Header.Get("www-authenticate"))
			assert.NotContains(t, r.Body, key, "the key is never echoed")
		}
		r := do(t, f.c, "GET", url("/v1/models"), map[string]string{"authorization": "Bearer " + unknown})
		assert.Equal(t, http.StatusUnauthorized, r.StatusCode)
		assert.Equal(t, `Bearer realm="tollgate", error="invalid_token", error_description="Invalid API key provided."`, r.Header.Get("www-authenticate"))
		assert.Equal(t, upstream, f.up.Count())
	})

	t.Run("good key reaches the upstream stripped, with identity", func(t *testing.T) {
		r := do(t, f.c, "GET", url("/v1/models"), map[string]string{"x-api-key": good.Key})
		require.Equal(t, http.StatusOK, r.StatusCode, r.Body)
		upstream++
		got := f.forwarded(t, upstream)
		assert.Empty(t, got.Header.Get("x-api-key"), "key stripped")
		assert.Equal(t, "demo", got.Header.Get(identity.HeaderApp))
		assert.Equal(t, "ada@example.com", got.Header.Get(identity.HeaderDeveloper))
		assert.Equal(t, "chat", got.Header.Get(identity.HeaderProduct))
		assert.Equal(t, good.ID, got.Header.Get(identity.HeaderKeyID))
		assert.Equal(t, "gemma-3-1b-it,llama-*", got.Header.Get(identity.HeaderAllowedModels))
		assert.Equal(t, "600/1minute/rolling;scope=chat:set:openai-discovery", got.Header.Get(identity.HeaderRequestQuota))
		assert.Equal(t, "100000/1hour/rolling;counted=total;scope=chat", got.Header.Get(identity.HeaderTokenQuota))
		id, ok, err := identity.Parse(identity.DefaultHeaders(), got.Header.Get)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, int64(600), id.RequestQuota.Limit)

		r = do(t, f.c, "POST", url("/v1/embeddings"), map[string]string{"authorization": "Bearer " + good.Key})
		require.Equal(t, http.StatusOK, r.StatusCode, r.Body)
		upstream++
		got = f.forwarded(t, upstream)
		assert.Empty(t, got.Header.Get("authorization"), "bearer key stripped")
		assert.Equal(t, "300/1minute/calendar;scope=chat:POST:/v1/embeddings", got.Header.Get(identity.HeaderRequestQuota), "operation quota")
	})

	t.Run("query key works and is stripped", func(t *testing.T) {
		r := do(t, f.c, "GET", url("/v1/models/gemma?api_key="+good.Key+"&x=1"), nil)
		require.Equal(t, http.StatusOK, r.StatusCode, r.Body)
		upstream++
		got := f.forwarded(t, upstream)
		assert.Equal(t, "/v1/models/gemma?x=1", got.Path)
		assert.NotContains(t, got.Path, good.Key)
		assert.Equal(t, "demo", got.Header.Get(identity.HeaderApp))
	})

	t.Run("spoofed identity headers are replaced", func(t *testing.T) {
		spoof := map[string]string{
			"x-api-key":                  good.Key,
			identity.HeaderApp:           "someone-else",
			identity.HeaderProduct:       "chat-premium",
			identity.HeaderAllowedModels: "*",
			identity.HeaderRequestQuota:  "999999999/1minute/calendar;scope=x",
		}
		r := do(t, f.c, "GET", url("/v1/models"), spoof)
		require.Equal(t, http.StatusOK, r.StatusCode)
		upstream++
		got := f.forwarded(t, upstream)
		assert.Equal(t, []string{"demo"}, got.Header.Values(identity.HeaderApp))
		assert.Equal(t, []string{"chat"}, got.Header.Values(identity.HeaderProduct))
		assert.Equal(t, "gemma-3-1b-it,llama-*", got.Header.Get(identity.HeaderAllowedModels))
		assert.Equal(t, "600/1minute/rolling;scope=chat:set:openai-discovery", got.Header.Get(identity.HeaderRequestQuota))

		// Other spellings (this Envoy lets '_' through), and the rest of the
		// x-tollgate- namespace, never reach the upstream.
		spoof = map[string]string{
			"x-api-key": good.Key, "X-TOLLGATE-APP": "spoof", "x_tollgate_app": "spoof", "X_Tollgate_Token_Quota": "spoof",
			"x-tollgate-model": "spoof", "x-tollgate-whatever": "spoof", "x_api_key": good.Key,
		}
		r = do(t, f.c, "GET", url("/v1/models"), spoof)
		require.Equal(t, http.StatusOK, r.StatusCode)
		upstream++
		got = f.forwarded(t, upstream)
		for name, vs := range got.Header {
			assert.NotContains(t, vs, "spoof", name)
			assert.NotContains(t, vs, good.Key, name)
			assert.NotContains(t, strings.ToLower(name), "_", "header %s reached the upstream", name)
		}
		assert.Equal(t, []string{"demo"}, got.Header.Values(identity.HeaderApp))
	})

	t.Run("wrong path or method is 403", func(t *testing.T) {
		for _, c := range []struct{ method, path string }{
			{"GET", "/admin/v1/keys"},
			{"GET", "/v1/chat/completions"},
		} {
			r := do(t, f.c, c.method, url(c.path), map[string]string{"x-api-key": good.Key})
			assert.Equal(t, http.StatusForbidden, r.StatusCode, "%s %s: %s", c.method, c.path, r.Body)
			assert.Equal(t, "operation_not_allowed", r.errorCode())
		}
		// Paths the upstream could read differently never reach a grant.
		for _, p := range []string{"/v1/models/../../admin", "/v1/models/..%2f..%2fadmin", "/v1/models/%2e%2e/x", "/v1/models/x%5c..%5cadmin", "/v1/models/..;/admin"} {
			r := do(t, f.c, "GET", url(p), map[string]string{"x-api-key": good.Key})
			assert.Equal(t, http.StatusBadRequest, r.StatusCode, "%s: %s", p, r.Body)
			assert.Equal(t, "invalid_path", r.errorCode(), p)
		}
		assert.Equal(t, upstream, f.up.Count())
	})

	t.Run("query keys never reach the upstream or the access log", func(t *testing.T) {
		unknown, err := model.GenerateKey(nil)
		require.NoError(t, err)
		before, err := f.gw.AccessLog()
		require.NoError(t, err)
		refused := []struct {
			path   string
			status int
		}{
			{"/v1/models?api_key=" + unknown, http.StatusUnauthorized},
			{"/v1/models?api_key=not-a-key-" + unknown, http.StatusUnauthorized},
			{"/admin/v1/keys?api_key=" + good.Key, http.StatusForbidden},
			{"/v1/models/..%2f..%2fadmin?a=1&api_key=" + good.Key, http.StatusBadRequest},
			{"/v1/models?API_KEY=" + good.Key + "&Api_Key=" + good.Key, http.StatusUnauthorized},
		}
		for _, c := range refused {
			r := do(t, f.c, "GET", url(c.path), nil)
			assert.Equal(t, c.status, r.StatusCode, "%s: %s", c.path, r.Body)
			assert.Equal(t, "application/json", r.Header.Get("content-type"), c.path)
			assert.NotContains(t, r.Body, good.Key)
		}
		assert.Equal(t, upstream, f.up.Count(), "refusals never reach the upstream")

		// A header key wins; the query key (another, stray key) is still cut out.
		r := do(t, f.c, "GET", url("/v1/models?api_key="+unknown+"&x=1&API_KEY="+unknown), map[string]string{"x-api-key": good.Key})
		require.Equal(t, http.StatusOK, r.StatusCode, r.Body)
		upstream++
		got := f.forwarded(t, upstream)
		assert.Equal(t, "/v1/models?x=1", got.Path)
		// Bearer configured: a non-Bearer Authorization is a key carrier too.
		r = do(t, f.c, "GET", url("/v1/models"), map[string]string{"x-api-key": good.Key, "authorization": "Basic " + unknown})
		require.Equal(t, http.StatusOK, r.StatusCode, r.Body)
		upstream++
		got = f.forwarded(t, upstream)
		assert.Empty(t, got.Header.Values("authorization"))

		entries := f.gw.WaitAccessLog(t, len(before)+len(refused)+2, 5*time.Second)
		raw, err := os.ReadFile(f.gw.AccessLogPath)
		require.NoError(t, err)
		for _, k := range []string{good.Key, unknown} {
			assert.NotContains(t, string(raw), k, "a key reached the access log")
		}
		for _, e := range entries[len(before):] {
			assert.NotContains(t, strings.ToLower(e.Path), "api_key", e.Path)
		}
	})

	t.Run("apigee error style", func(t *testing.T) {
		r := do(t, f.c, "GET", f.gw.url("apigee", "/v1/models"), map[string]string{"x-api-key": "tg_nope"})
		assert.Equal(t, http.StatusUnauthorized, r.StatusCode)
		assert.JSONEq(t, `{"fault":{"faultstring":"Invalid API key provided.","detail":{"errorcode":"oauth.v2.InvalidApiKey"}}}`, r.Body)
	})

	t.Run("strip instance keeps identity from the upstream", func(t *testing.T) {
		r := do(t, f.c, "GET", f.gw.url("strip", "/v1/models"), map[string]string{"x-api-key": good.Key, identity.HeaderApp: "spoof"})
		require.Equal(t, http.StatusOK, r.StatusCode, r.Body)
		upstream++
		got := f.forwarded(t, upstream)
		for _, h := range identity.DefaultHeaders().All() {
			assert.Empty(t, got.Header.Get(h), h)
		}
	})

	t.Run("concurrent misses for one key make one callout", func(t *testing.T) {
		key, err := model.GenerateKey(nil)
		require.NoError(t, err)
		hash := policy.HashKey(key)
		hold := make(chan struct{})
		f.fake.setHold(hold)
		defer f.fake.setHold(nil)
		before, _ := f.gw.PromMetric(policy.MetricCoalesced, nil)

		const n = 16
		clients := newClients(t, n)
		var wg sync.WaitGroup
		codes := make([]int, n)
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := send(clients[i], "GET", f.gw.url("fake", "/v1/models"), map[string]string{"x-api-key": key})
				codes[i], errs[i] = r.StatusCode, err
			}()
		}
		// Every request pauses (one claims, the rest wait) before the keystore answers.
		f.gw.WaitPromMetric(t, policy.MetricCoalesced, nil, 10*time.Second, func(v float64) bool { return v >= before+n-1 })
		// The claimer's callout may still be on its way to the keystore.
		require.Eventually(t, func() bool { return f.fake.callsFor(hash) >= 1 }, 10*time.Second, 10*time.Millisecond)
		assert.Equal(t, 1, f.fake.callsFor(hash), "one callout while the keystore holds its answer")
		close(hold)
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i])
			assert.Equal(t, http.StatusUnauthorized, codes[i], "request %d", i)
		}
		assert.Equal(t, 1, f.fake.callsFor(hash), "N concurrent misses → 1 callout")
		r := do(t, f.c, "GET", f.gw.url("fake", "/v1/models"), map[string]string{"x-api-key": key})
		assert.Equal(t, http.StatusUnauthorized, r.StatusCode)
		assert.Equal(t, 1, f.fake.callsFor(hash), "negative cache hit")
	})

	t.Run("revoked key is 401 within the TTL", func(t *testing.T) {
		h := map[string]string{"x-api-key": revokeMe.Key}
		require.Equal(t, http.StatusOK, do(t, f.c, "GET", url("/v1/models"), h).StatusCode)
		upstream++
		f.ks.cli(t, "keys", "revoke", revokeMe.ID)
		var last response
		// The positive TTL is 2s; the deadline adds room for a loaded machine.
		envoytest.Eventually(t, 8*time.Second, func() bool {
			last = do(t, f.c, "GET", url("/v1/models"), h)
			if last.StatusCode == http.StatusOK {
				upstream++
			}
			return last.StatusCode == http.StatusUnauthorized
		}, "revoked key still accepted")
		assert.Equal(t, "revoked_api_key", last.errorCode())
		f.forwarded(t, upstream)
	})

	t.Run("keystore restart keeps every key", func(t *testing.T) {
		before := f.ks.cli(t, "keys", "list", "--app", "demo", "-o", "json")
		f.ks = f.ks.restart(t)
		after := f.ks.cli(t, "keys", "list", "--app", "demo", "-o", "json")
		assert.JSONEq(t, before, after)
		var keys []struct{ ID, Status string }
		require.NoError(t, json.Unmarshal([]byte(after), &keys))
		assert.Len(t, keys, 4)
		// A key never used before the restart (so never cached) verifies.
		r := do(t, f.c, "GET", url("/v1/models"), map[string]string{"x-api-key": afterRestart.Key})
		require.Equal(t, http.StatusOK, r.StatusCode, r.Body)
		upstream++
		r = do(t, f.c, "GET", url("/v1/models"), map[string]string{"x-api-key": revokeMe.Key})
		assert.Equal(t, http.StatusUnauthorized, r.StatusCode, "still revoked")
	})

	t.Run("keystore down is 503, or 200 when failing open", func(t *testing.T) {
		f.ks.stop()
		h := map[string]string{"x-api-key": duringOutage.Key, identity.HeaderApp: "spoof"}
		r := do(t, f.c, "GET", url("/v1/models"), h)
		assert.Equal(t, http.StatusServiceUnavailable, r.StatusCode, r.Body)
		assert.Equal(t, "keystore_unavailable", r.errorCode())
		assert.Equal(t, "1", r.Header.Get("retry-after"))

		r = do(t, f.c, "GET", f.gw.url("open", "/v1/models"), h)
		require.Equal(t, http.StatusOK, r.StatusCode, r.Body)
		upstream++
		got := f.forwarded(t, upstream)
		assert.Empty(t, got.Header.Get(identity.HeaderApp), "no identity, spoof removed")
		assert.Empty(t, got.Header.Get("x-api-key"))
	})

	t.Run("metrics by outcome", func(t *testing.T) {
		for _, o := range policy.Outcomes {
			v, ok := f.gw.PromMetric(policy.MetricRequests, map[string]string{"outcome": o.String()})
			assert.True(t, ok, o.String())
			assert.Positive(t, v, o.String())
		}
		for _, r := range []string{"hit", "miss"} {
			v, ok := f.gw.PromMetric(policy.MetricCache, map[string]string{"result": r})
			assert.True(t, ok && v > 0, r)
		}
		for _, r := range []string{"ok", "error"} {
			v, ok := f.gw.PromMetric(policy.MetricCallouts, map[string]string{"result": r})
			assert.True(t, ok && v > 0, r)
		}
		f.gw.SyncLog(t)
		assert.Empty(t, f.gw.CrashLines())
		for _, k := range []issuedKey{good, revokeMe, afterRestart, duringOutage} {
			assert.False(t, strings.Contains(f.gw.Log(), k.Key), "a key leaked into Envoy's log")
		}
	})
}
