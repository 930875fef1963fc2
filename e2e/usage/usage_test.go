// Package usage tests usage analytics end to end in real Envoy: filters
// report usage records through shared/usagelog (a shared queue drained on
// the tick, posted in batches to the keystore's POST /v1/usage, retried
// until acknowledged) and the keystore's analytics API (`tollgate serve`,
// built by TestMain) shows exactly what the clients saw, across a keystore
// restart in the middle of the run.
package usage

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/internal/jsontest"
)

func TestMain(m *testing.M) { os.Exit(keystoretest.Main(m)) }

const dataToken = "e2e-usage-data-token-0123456789"

// quotaConfig limits each app to 2 requests an hour (local mode: exact
// across workers) and reports refusals every 100ms.
const quotaConfig = `{"mode": "local", "key_sources": [{"identity": true}], "identity_quota": false,
  "quotas": [{"limit": 2, "timeUnit": "hour"}],
  "keystore": {"cluster": "keystore", "timeout": "250ms", "token": "` + dataToken + `"},
  "usage": {"enabled": true, "flush_interval": "100ms", "max_batch": 3}}`

// send makes one request as app and returns its status.
func send(t *testing.T, gw *envoytest.Envoy, app string, i int) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, gw.URL("/v1/chat/completions"), nil)
	require.NoError(t, err)
	req.Header.Set("x-tollgate-app", app)
	req.Header.Set("x-tollgate-developer", app+"@example.com")
	req.Header.Set("x-tollgate-product", "chat")
	req.Header.Set("x-request-id", fmt.Sprintf("%s-%d", app, i))
	resp, err := gw.Client().Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// analytics reads the admin analytics API.
func analytics(t *testing.T, ks *keystoretest.Server, query string) ([]byte, bool) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, ks.AdminURL()+"/admin/v1/analytics/usage?"+query, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+ks.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return body, err == nil && resp.StatusCode == http.StatusOK
}

// TestRefusalsReachAnalyticsAcrossKeystoreRestart: every 429 quota sends
// is counted once in analytics, by app and developer, including the ones
// made while the keystore was down (queued in the VMs and retried).
func TestRefusalsReachAnalyticsAcrossKeystoreRestart(t *testing.T) {
	ks := keystoretest.Start(t, keystoretest.Options{DataToken: dataToken, Args: []string{"--log-level", "warn"}})
	up := envoytest.NewUpstream(t, envoytest.WithRecordLimit(1), envoytest.WithHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("content-type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})))
	gw := envoytest.Start(t, envoytest.Config{
		Filters: []envoytest.WasmFilter{{Name: "quota", RootID: "quota", VMID: "tollgate-usage",
			WasmPath: envoytest.WasmPath(t, "quota"), Configuration: quotaConfig}},
		Clusters: []envoytest.Cluster{up.Cluster("upstream"), {Name: "keystore", Addr: ks.DataAddr()}},
		Routes:   []envoytest.Route{{Prefix: "/", Cluster: "upstream"}},
	})

	refused := map[string]int{}
	run := func(app string, n int) {
		for i := range n {
			switch code := send(t, gw, app, i); code {
			case http.StatusOK:
			case http.StatusTooManyRequests:
				refused[app]++
			default:
				t.Fatalf("%s request %d: status %d", app, i, code)
			}
		}
	}
	run("alpha", 7)
	ks.Stop() // records made now wait in the VMs and are retried
	run("beta", 6)
	ks.Restart(t)
	run("gamma", 3)
	require.Equal(t, map[string]int{"alpha": 5, "beta": 4, "gamma": 1}, refused, "local mode admits exactly 2 per app")

	want := int64(5 + 4 + 1)
	var body []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, ok := analytics(t, ks, "step=minute&from="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)+"&group_by=app,developer")
		if ok && jsontest.Get(b, "totals.refused").Int() >= want {
			body = b
			break
		}
		require.True(t, time.Now().Before(deadline), "analytics did not reach %d refusals: %s", want, b)
		time.Sleep(100 * time.Millisecond) // polling the API, with a deadline
	}
	assert.Equal(t, want, jsontest.Get(body, "totals.requests").Int(), "each refusal counted once, nothing else reported by quota: %s", body)
	assert.Equal(t, want, jsontest.Get(body, "totals.status_4xx").Int())
	got := map[string]int64{}
	for i := range 3 {
		s := jsontest.Get(body, fmt.Sprintf("series.%d", i))
		require.True(t, s.Exists(), "%s", body)
		app := jsontest.Get([]byte(s.Raw()), "group.app").Str()
		assert.Equal(t, app+"@example.com", jsontest.Get([]byte(s.Raw()), "group.developer").Str())
		got[app] = jsontest.Get([]byte(s.Raw()), "totals.refused").Int()
	}
	assert.Equal(t, map[string]int64{"alpha": 5, "beta": 4, "gamma": 1}, got)
	gw.RequireNoCrash(t)
}
