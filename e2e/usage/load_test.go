package usage

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/internal/jsontest"
	"github.com/tollgate/tollgate/shared/identity"
	"github.com/tollgate/tollgate/shared/usagelog"
)

// loadConfig is the shipped fused chain's quota and tokencount sections
// (examples/envoy/gateway.yaml: async quota, strict tokencount with leases
// renewed every 250ms, usage on) with identity from headers instead of
// apikey, and a smaller usage backlog so that a bounded burst shows loss:
// at the default max_batch (200) and flush interval (1s) the sender before
// 1b21dae drained 200 records/s per VM, so the worker that served at least
// half of the burst (5,000 records in a few seconds) overflowed a
// 3,000-record backlog; the fixed one sends a full batch at every tick
// (250ms) and the next on each acknowledgement, so its backlog peaks near a
// tick's worth of requests (~1,200 at 4,600 requests/s, all on one worker).
const loadConfig = `{"quota": {"mode": "async", "key_sources": [{"identity": true}], "async": {"sync_period": "1s"}, ` + keystoreBlock + `,
    "usage": {"enabled": true}},
  "tokencount": {"keystore": {"cluster": "keystore", "timeout": "500ms", "token": "` + dataToken + `"}, "default_max_output_tokens": 1024, "strict": {"enabled": true},
    "lease": {"enabled": true, "renew": "250ms", "max": 10000000},
    "usage": {"enabled": true, "max_backlog": 3000}}}`

// Bounds of the burst: loopback only, a few seconds.
const (
	loadRequests = 10000
	loadClients  = 16
)

// servedCounter is the model server: it answers every chat request with
// usage and counts what it served.
type servedCounter struct{ served atomic.Int64 }

func (u *servedCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return
	}
	w.Header().Set("content-type", "application/json")
	_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`)
	u.served.Add(1)
}

// usageEvents reads the tokencount usage records counters (summed over the
// workers' VMs) from Envoy's stats, by usagelog event.
func usageEvents(t *testing.T, gw *envoytest.Envoy) map[string]uint64 {
	t.Helper()
	stats, err := gw.Stats()
	require.NoError(t, err)
	got := map[string]uint64{}
	for name, v := range stats {
		if _, ev, ok := strings.Cut(name, "tollgate_tokencount_usage_records_total.event."); ok {
			got[ev] += v
		}
	}
	return got
}

// appRequests is the keystore's own count of ingested usage records of app.
func appRequests(t *testing.T, ks *keystoretest.Server, app string) (int64, []byte) {
	t.Helper()
	body, ok := analytics(t, ks, "step=hour&from="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)+"&group_by=app")
	if !ok {
		return -1, body
	}
	for i := 0; ; i++ {
		s := jsontest.Get(body, "series."+strconv.Itoa(i))
		if !s.Exists() {
			return 0, body
		}
		if raw := []byte(s.Raw()); jsontest.Get(raw, "group.app").Str() == app {
			return jsontest.Get(raw, "totals.requests").Int(), body
		}
	}
}

// TestNoUsageLostUnderLoad: a burst of 10,000 chat requests from 16 clients
// through the shipped fused chain (suite module, two workers: well above
// the old sender's records/s per VM) reaches the keystore's analytics
// exactly once each, as many as the model server served, and the filter's
// usage records counters show nothing dropped or rejected.
func TestNoUsageLostUnderLoad(t *testing.T) {
	ks := keystoretest.Start(t, keystoretest.Options{DataToken: dataToken, Args: []string{"--log-level", "warn"}})
	model := &servedCounter{}
	up := envoytest.NewUpstream(t, envoytest.WithRecordLimit(1), envoytest.WithHandler(model))
	gw := envoytest.Start(t, envoytest.Config{
		Filters: []envoytest.WasmFilter{{Name: "tollgate", RootID: "tollgate", VMID: "tollgate", WasmPath: envoytest.WasmPath(t, "tollgate"),
			Configuration: loadConfig, AllowOnHeadersStopIteration: true}},
		Clusters: []envoytest.Cluster{up.Cluster("upstream"), {Name: "keystore", Addr: ks.DataAddr()}},
		Routes:   []envoytest.Route{{Prefix: "/", Cluster: "upstream", Timeout: 30 * time.Second}},
	})

	const app = "burst"
	quota := identity.Quota{Limit: 1_000_000, Interval: 1, TimeUnit: "hour", Window: "rolling", Scope: "p"}.String()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: loadClients}}
	defer client.CloseIdleConnections()
	var next atomic.Int64
	statuses := make([]map[int]int, loadClients)
	errs := make([]error, loadClients)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range loadClients {
		statuses[c] = map[int]int{}
		wg.Go(func() {
			for i := next.Add(1); i <= loadRequests; i = next.Add(1) {
				req, err := http.NewRequest(http.MethodPost, gw.URL("/v1/chat/completions"),
					strings.NewReader(`{"model": "gemma-3-1b-it", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}`))
				if err != nil {
					errs[c] = err
					return
				}
				req.Header.Set("content-type", "application/json")
				req.Header.Set("x-request-id", fmt.Sprintf("burst-%d", i))
				req.Header.Set(identity.HeaderApp, app)
				req.Header.Set(identity.HeaderDeveloper, "ada@example.com")
				req.Header.Set(identity.HeaderProduct, "p")
				req.Header.Set(identity.HeaderRequestQuota, quota)
				req.Header.Set(identity.HeaderTokenQuota, quota)
				resp, err := client.Do(req)
				if err != nil {
					errs[c] = err
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil {
					errs[c] = err
					return
				}
				statuses[c][resp.StatusCode]++
			}
		})
	}
	wg.Wait()
	burst := time.Since(start)
	total := map[int]int{}
	for c := range loadClients {
		require.NoError(t, errs[c])
		for s, n := range statuses[c] {
			total[s] += n
		}
	}
	require.Equal(t, map[int]int{200: loadRequests}, total, "every request served")
	served := model.served.Load()
	require.Equal(t, int64(loadRequests), served, "the model server served each request once")
	t.Logf("%d requests from %d clients in %v (%.0f/s over 2 workers)", loadRequests, loadClients, burst.Round(time.Millisecond),
		float64(loadRequests)/burst.Seconds())

	// The keystore's own count, and the filter's sent counter, reach the
	// served count; nothing is dropped on the way.
	var got int64
	var body []byte
	var events map[string]uint64
	deadline := time.Now().Add(30 * time.Second)   // room for a few retries' backoff (1s, 2s, 4s…)
	poll := time.NewTicker(100 * time.Millisecond) // polling the APIs, with a deadline
	defer poll.Stop()
	for {
		got, body = appRequests(t, ks, app)
		events = usageEvents(t, gw)
		if got == served && events[usagelog.EventSent] == uint64(served) {
			break
		}
		require.True(t, time.Now().Before(deadline), "analytics and the usage sent counter never reached the %d served requests: analytics %d, counters %v: %s",
			served, got, events, body)
		<-poll.C
	}
	t.Logf("all %d usage records ingested %v after the burst; counters %v", served, time.Since(start)-burst, events)
	// A batch whose answer came late (keystore timeout under load) is
	// retried; the keystore counts its request ids once, checked below.
	delete(events, usagelog.EventRetried)
	assert.Equal(t, map[string]uint64{usagelog.EventQueued: uint64(served), usagelog.EventSent: uint64(served),
		usagelog.EventDropped: 0, usagelog.EventRejected: 0}, events, "no usage record lost")
	got, body = appRequests(t, ks, app)
	assert.Equal(t, served, got, "each request counted once: %s", body)
	gw.RequireNoCrash(t)
}
