// Package quota tests the quota filter (build/quota.wasm) in real Envoy:
// two Envoy processes with two workers each share one keystore (`tollgate
// serve --redis`, built by TestMain) backed by a redis-server the test
// starts; strict rules admit from budget leases (docs/leases.md), so an
// outage is first met by the leases granted before it. It checks that
// strict mode admits exactly the limit under 64
// concurrent clients, that async mode's overshoot stays within its
// documented bound and loses no usage, that spike arrest admits at its
// pace, the x-ratelimit-* headers on allowed and denied responses, and the
// failure modes across Redis and keystore restarts; bench_test.go measures
// the latency each mode adds to bare Envoy.
package quota

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/filters/quota/policy"
	"github.com/tollgate/tollgate/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(keystoretest.Main(m)) }

// keystore is one `tollgate serve --redis` process on loopback.
type keystore struct {
	*keystoretest.Server
	dataAddr string
}

// startKeystore runs the keystore on the given addresses (port 0 picks one)
// and waits until it is ready.
func startKeystore(t testing.TB, dataDir, redisURL, listen, adminListen string) *keystore {
	t.Helper()
	s := keystoretest.Start(t, keystoretest.Options{DataDir: dataDir, RedisURL: redisURL,
		Listen: listen, AdminListen: adminListen, Args: []string{"--log-level", "warn"}})
	return &keystore{Server: s, dataAddr: s.DataAddr()}
}

// stop ends the keystore process and waits for it.
func (k *keystore) stop() { k.Stop() }

// restart starts a new process on the same addresses and Redis.
func (k *keystore) restart(t testing.TB) *keystore {
	t.Helper()
	k.Restart(t)
	return k
}

// used asks the keystore for a counter's usage (a consume of 0); ok is
// false when the keystore cannot answer.
func (k *keystore) used(t testing.TB, app, rule string, spec string) (int64, bool) {
	t.Helper()
	body := fmt.Sprintf(`{"items":[{"key":{"app":%q,"product":%q,"kind":"requests"},"spec":%s,"n":0}]}`, app, "rule:"+rule, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+k.dataAddr+"/v1/quota/consume", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return 0, false
	}
	var out struct {
		Results []struct{ Used int64 } `json:"results"`
	}
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	require.Len(t, out.Results, 1)
	return out.Results[0].Used, true
}

// Rules of the filter configuration the tests share. Every hammered quota
// uses a rolling window, so a test never straddles a calendar boundary.
const (
	rolling100 = `{"limit": 100, "interval": 1, "timeUnit": "minute", "window": "rolling"}`
	rolling30  = `{"limit": 30, "interval": 1, "timeUnit": "minute", "window": "rolling"}`
	huge       = `{"limit": 9007199254740992, "interval": 1, "timeUnit": "minute", "window": "calendar"}`
	syncPeriod = 100 * time.Millisecond
	timeout    = 250 * time.Millisecond
	spikeEvery = 50 * time.Millisecond // 20ps
)

var filterConfig = `{
  "key_sources": [{"header": "x-user"}],
  "keystore": {"cluster": "keystore", "timeout": "250ms"},
  "async": {"sync_period": "100ms", "sync_count": 10},
  "lease": {"enabled": true, "ttl": "2s", "renew": "100ms", "idle": "300ms"},
  "rules": [
    {"name": "strict", "path_prefix": "/strict/", "mode": "strict", "quotas": [` + rolling100 + `]},
    {"name": "closed", "path_prefix": "/closed/", "mode": "strict", "failure_mode": "closed", "quotas": [` + rolling100 + `]},
    {"name": "async", "path_prefix": "/async/", "mode": "async", "quotas": [` + rolling100 + `]},
    {"name": "paced", "path_prefix": "/paced/", "mode": "async", "quotas": [` + rolling30 + `]},
    {"name": "local", "path_prefix": "/local/", "mode": "local", "quotas": [` + rolling100 + `]},
    {"name": "spike", "path_prefix": "/spike/", "mode": "local", "spike_arrest": {"rate": "20ps", "identifier": "rule"}},
    {"name": "bench-strict", "path_prefix": "/bench/strict", "mode": "strict", "quotas": [` + huge + `]},
    {"name": "bench-local", "path_prefix": "/bench/local", "mode": "local", "quotas": [` + huge + `]},
    {"name": "bench-async", "path_prefix": "/bench/async", "mode": "async", "quotas": [` + huge + `]},
    {"name": "bench-spike", "path_prefix": "/bench/spike", "mode": "local", "spike_arrest": {"rate": "1000000ps"}},
    {"name": "bench-unlimited", "path_prefix": "/bench/unlimited", "mode": "strict"}
  ]
}`

func statsTags() []envoytest.StatsTag {
	var out []envoytest.StatsTag
	for _, st := range policy.StatsTags() {
		out = append(out, envoytest.StatsTag{Name: st.Name, Regex: st.Regex})
	}
	return out
}

// startGateway starts one Envoy (two workers) with the quota filter in
// front of up, calling the keystore at ksAddr.
func startGateway(t testing.TB, up *envoytest.Upstream, ksAddr string) *envoytest.Envoy {
	t.Helper()
	return envoytest.Start(t, envoytest.Config{
		Filters: []envoytest.WasmFilter{{
			Name: "quota", RootID: "quota", VMID: "tollgate",
			WasmPath:      envoytest.WasmPath(t, "quota"),
			Configuration: filterConfig,
		}},
		Clusters:  []envoytest.Cluster{up.Cluster("upstream"), {Name: "keystore", Addr: ksAddr}},
		Routes:    []envoytest.Route{{Prefix: "/", Cluster: "upstream"}},
		StatsTags: statsTags(),
	})
}

// setup is the shared world: Redis (append-only, so a restart keeps
// counts), the keystore on it, an upstream and two Envoys.
type setup struct {
	redis *redistest.Server
	ks    *keystore
	up    *envoytest.Upstream
	gws   []*envoytest.Envoy
}

func newSetup(t testing.TB) *setup {
	t.Helper()
	s := &setup{redis: redistest.StartWith(t, redistest.Options{AppendOnly: true})}
	s.ks = startKeystore(t, t.TempDir(), s.redis.URL(), "127.0.0.1:0", "127.0.0.1:0")
	s.up = envoytest.NewUpstream(t, envoytest.WithRecordLimit(1), envoytest.WithHandler(
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("content-type", "application/json")
			_, _ = io.WriteString(w, `{"ok":true}`)
		})))
	for range 2 {
		s.gws = append(s.gws, startGateway(t, s.up, s.ks.dataAddr))
	}
	return s
}

// result is one response as a client saw it.
type result struct {
	gw     int
	status int
	header http.Header
	body   []byte
	start  time.Time
	end    time.Time
}

// client sends requests for one simulated caller through one gateway.
type client struct {
	gw int
	c  *http.Client
	e  *envoytest.Envoy
}

// clients returns n clients per gateway, each on its own connection,
// spread evenly over each Envoy's workers.
func (s *setup) clients(t testing.TB, perGateway int) []client {
	t.Helper()
	var out []client
	for i, gw := range s.gws {
		for _, c := range gw.WorkerClients(t, perGateway) {
			out = append(out, client{gw: i, c: c, e: gw})
		}
	}
	return out
}

// do makes one request with a 10 s deadline: an error means no answer.
func do(c client, path, user string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := result{gw: c.gw, start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.e.URL(path), nil)
	if err != nil {
		return r, err
	}
	req.Header.Set("x-user", user)
	resp, err := c.c.Do(req)
	if err != nil {
		return r, fmt.Errorf("GET %s: no answer (a hang?): %w", path, err)
	}
	r.body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	r.end = time.Now()
	r.status, r.header = resp.StatusCode, resp.Header
	return r, err
}

// send is do for the test goroutine.
func send(t testing.TB, c client, path, user string) result {
	t.Helper()
	r, err := do(c, path, user)
	require.NoError(t, err)
	return r
}

// hammer has every client send requests back to back, all at once, n each
// or (n = 0) until the deadline.
func hammer(t *testing.T, clients []client, n int, until time.Time, path, user string) []result {
	t.Helper()
	var mu sync.Mutex
	var out []result
	var firstErr error
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; n == 0 || i < n; i++ {
				if n == 0 && time.Now().After(until) {
					return
				}
				r, err := do(c, path, user)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				out = append(out, r)
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, firstErr)
	return out
}

func countStatus(rs []result, status int) int {
	n := 0
	for _, r := range rs {
		if r.status == status {
			n++
		}
	}
	return n
}

// promSum adds a metric over both gateways.
func (s *setup) promSum(name string, labels map[string]string) float64 {
	sum := 0.0
	for _, gw := range s.gws {
		v, _ := gw.PromMetric(name, labels)
		sum += v
	}
	return sum
}
