// Package leases tests budget leases (docs/leases.md) in real Envoy: two
// Envoy processes (two workers each) run the quota filter (strict) and the
// tokencount filter (strict) with leases on, A as the suite's fused filter
// and B as two filters in one VM, each calling its own keystore
// (`tollgate serve --redis`), both keystores on one redis-server. It checks
// that at steady state the keystore is called far less than once per
// request (from the keystores' own metrics); that 64 concurrent clients over
// both Envoys never admit more than a request quota or serve more tokens
// than a token quota, the keystore counting exactly what the upstream saw;
// and that when an Envoy holding leases is killed, the budget it held comes
// back after the lease TTL with nothing counted twice.
package leases

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
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
	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/shared/identity"
)

func TestMain(m *testing.M) { os.Exit(keystoretest.Main(m)) }

// ttl is the lease TTL of the test gateways: a killed Envoy's budget comes
// back after it.
const ttl = 2 * time.Second

const leaseCfg = `"lease": {"enabled": true, "ttl": "2s", "renew": "100ms", "idle": "300ms"}`

var quotaConfig = `{
  "key_sources": [{"identity": true}],
  "identity_quota": true,
  "mode": "strict",
  "failure_mode": "closed",
  "keystore": {"cluster": "keystore", "timeout": "2s"},
  ` + leaseCfg + `
}`

var tokenConfig = `{
  "keystore": {"cluster": "keystore", "timeout": "2s"},
  "strict": {"enabled": true},
  ` + leaseCfg + `
}`

// upstream answers chat completions with usage {10, max_tokens}, and keeps
// its own books per app: requests received, and tokens of answers it
// completed. A request with x-hold waits until the client goes away.
type upstream struct {
	mu       sync.Mutex
	received map[string]int64
	served   map[string]int64
	holding  atomic.Int64
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	app := r.Header.Get(identity.HeaderApp)
	u.mu.Lock()
	u.received[app]++
	u.mu.Unlock()
	if r.Header.Get("x-hold") != "" {
		u.holding.Add(1)
		defer u.holding.Add(-1)
		<-r.Context().Done()
		return
	}
	var req struct {
		MaxTokens int64 `json:"max_tokens"`
	}
	_ = json.Unmarshal(body, &req)
	w.Header().Set("content-type", "application/json")
	fmt.Fprintf(w, `{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"length"}],"usage":{"prompt_tokens":10,"completion_tokens":%d,"total_tokens":%d}}`,
		req.MaxTokens, 10+req.MaxTokens)
	u.mu.Lock()
	u.served[app] += 10 + req.MaxTokens
	u.mu.Unlock()
}

func (u *upstream) books(app string) (received, served int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.received[app], u.served[app]
}

// world is Redis, two keystores on it, the upstream and two Envoys (Envoy i
// calls keystore i).
type world struct {
	redis *redistest.Server
	ks    []*keystoretest.Server
	up    *upstream
	gws   []*envoytest.Envoy
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{redis: redistest.Start(t), up: &upstream{received: map[string]int64{}, served: map[string]int64{}}}
	up := envoytest.NewUpstream(t, envoytest.WithRecordLimit(1), envoytest.WithHandler(w.up))
	suite := envoytest.WasmPath(t, "tollgate") // one VM per worker runs both filters
	start := time.Now()
	defer func() { t.Logf("world started in %v", time.Since(start).Round(time.Millisecond)) }()
	// The keystores and Envoys start in parallel: V8 compiling the module
	// is most of the set-up time.
	w.ks = make([]*keystoretest.Server, 2)
	w.gws = make([]*envoytest.Envoy, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			ks := keystoretest.Start(t, keystoretest.Options{RedisURL: w.redis.URL(), Args: []string{"--log-level", "warn"}})
			w.ks[i] = ks
			// Envoy A runs the fused filter (the shipped default), Envoy B
			// the two filters composed: both compositions share the budget.
			filters := []envoytest.WasmFilter{{Name: "tollgate", RootID: "tollgate", VMID: "tollgate", WasmPath: suite,
				Configuration: `{"quota": ` + quotaConfig + `, "tokencount": ` + tokenConfig + `}`, AllowOnHeadersStopIteration: true}}
			if i == 1 {
				filters = []envoytest.WasmFilter{
					{Name: "quota", RootID: "quota", VMID: "tollgate", WasmPath: suite, Configuration: quotaConfig},
					{Name: "tokencount", RootID: "tokencount", VMID: "tollgate", WasmPath: suite,
						Configuration: tokenConfig, AllowOnHeadersStopIteration: true},
				}
			}
			w.gws[i] = envoytest.Start(t, envoytest.Config{
				Filters:  filters,
				Clusters: []envoytest.Cluster{up.Cluster("upstream"), {Name: "keystore", Addr: ks.DataAddr()}},
				Routes:   []envoytest.Route{{Prefix: "/", Cluster: "upstream", Timeout: 30 * time.Second}},
			})
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return w
}

// caller is an app with a request quota and a token quota, per minute on a
// rolling window (so no test straddles a calendar boundary).
type caller struct {
	app             string
	requests, token int64
}

func (c caller) headers(h http.Header) {
	h.Set(identity.HeaderApp, c.app)
	h.Set(identity.HeaderProduct, "p")
	h.Set(identity.HeaderRequestQuota, identity.Quota{Limit: c.requests, Interval: 1, TimeUnit: "minute", Window: "rolling", Scope: "p"}.String())
	h.Set(identity.HeaderTokenQuota, identity.Quota{Limit: c.token, Interval: 1, TimeUnit: "minute", Window: "rolling", Scope: "p"}.String())
}

const chatBody = `{"model":"m","messages":[{"role":"user","content":"Hello"}],"max_tokens":20}`

// reply is what a client saw: the status and which quota refused it.
type reply struct {
	status int
	tokens bool // a 429 carrying the token headers (tokencount's)
}

// post sends one chat request through an Envoy (held: the upstream holds it
// until ctx ends).
func post(ctx context.Context, c *http.Client, gw *envoytest.Envoy, who caller, held bool) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gw.URL("/v1/chat/completions"), strings.NewReader(chatBody))
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("content-type", "application/json")
	who.headers(req.Header)
	if held {
		req.Header.Set("x-hold", "1")
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, tokens: resp.Header.Get("x-ratelimit-limit-tokens") != ""}, nil
}

func send(t *testing.T, c *http.Client, gw *envoytest.Envoy, who caller) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := post(ctx, c, gw, who, false)
	require.NoError(t, err)
	return r
}

// used reads a counter of who's from a keystore (a consume of 0).
func (w *world) used(t *testing.T, who caller, kind string) int64 {
	t.Helper()
	limit := who.requests
	if kind == "tokens" {
		limit = who.token
	}
	body := fmt.Sprintf(`{"items":[{"key":{"app":%q,"product":"p","kind":%q},"spec":{"limit":%d,"interval":1,"timeUnit":"minute","window":"rolling"},"n":0}]}`,
		who.app, kind, limit)
	resp, err := http.Post(w.ks[0].DataURL()+"/v1/quota/consume", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, 200, resp.StatusCode, string(b))
	var out struct {
		Results []struct{ Used int64 } `json:"results"`
	}
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	require.Len(t, out.Results, 1)
	return out.Results[0].Used
}

// keystoreCalls is the filters' data-plane calls (/v1/quota/*) the two
// keystores counted, by route, from their own /metrics.
func (w *world) keystoreCalls(t testing.TB) map[string]float64 {
	t.Helper()
	return keystoreCalls(t, w.ks...)
}

// keystoreCalls sums the data-plane quota calls that these keystores
// counted, by route.
func keystoreCalls(t testing.TB, kss ...*keystoretest.Server) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, ks := range kss {
		resp, err := http.Get(ks.DataURL() + "/metrics")
		require.NoError(t, err)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, `tollgate_keystore_http_requests_total{server="data",route="POST /v1/quota/`) {
				continue
			}
			i := strings.Index(line, `route="`) + len(`route="POST `)
			route := line[i : i+strings.IndexByte(line[i:], '"')]
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			require.NoError(t, err, line)
			out[route] += v
		}
		resp.Body.Close()
	}
	return out
}

func total(m map[string]float64) float64 {
	n := 0.0
	for _, v := range m {
		n += v
	}
	return n
}

// clients returns n clients per Envoy, spread over its workers.
func (w *world) clients(t *testing.T, perEnvoy int) ([]*http.Client, []*envoytest.Envoy) {
	t.Helper()
	var cs []*http.Client
	var gws []*envoytest.Envoy
	for _, gw := range w.gws {
		for _, c := range gw.WorkerClients(t, perEnvoy) {
			cs, gws = append(cs, c), append(gws, gw)
		}
	}
	return cs, gws
}

// hammer has every client send n requests for who back to back, all at once.
func hammer(t *testing.T, cs []*http.Client, gws []*envoytest.Envoy, who caller, n int) []reply {
	t.Helper()
	var mu sync.Mutex
	var out []reply
	var firstErr error
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			for range n {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := post(ctx, c, gws[i], who, false)
				cancel()
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
		})
	}
	wg.Wait()
	require.NoError(t, firstErr)
	return out
}

// warm opens leases for who on both Envoys: a few paced requests each, so
// that the leaders' ticks see demand.
func warm(t *testing.T, w *world, who caller) int {
	t.Helper()
	n := 0
	for range 4 {
		for _, gw := range w.gws {
			require.Equal(t, 200, send(t, gw.Client(), gw, who).status)
			n++
		}
		time.Sleep(60 * time.Millisecond) // paced traffic across lease ticks, not synchronisation
	}
	return n
}

func count(rs []reply, status int, tokens bool) int {
	n := 0
	for _, r := range rs {
		if r.status == status && (status != 429 || r.tokens == tokens) {
			n++
		}
	}
	return n
}

func TestLeases(t *testing.T) {
	w := newWorld(t)

	// Steady state: 8 clients over both Envoys for 3 s on one app. The
	// keystore sees a lease renewal per Envoy and filter per tick, not a
	// call per request.
	t.Run("steady state: keystore calls per request far below 1", func(t *testing.T) {
		who := caller{app: "steady", requests: 1 << 40, token: 1 << 40}
		warm(t, w, who)
		cs, gws := w.clients(t, 4)
		var n atomic.Int64
		deadline := time.Now().Add(3500 * time.Millisecond)
		var wg sync.WaitGroup
		for i, c := range cs {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					if r := send(t, c, gws[i], who); r.status == 200 {
						n.Add(1)
					} else {
						t.Errorf("status %d", r.status)
						return
					}
				}
			})
		}
		// The leases grow to the load within a few ticks; steady state is
		// measured over the last 3 s.
		time.Sleep(500 * time.Millisecond) // the ramp, not synchronisation
		before, n0 := w.keystoreCalls(t), n.Load()
		wg.Wait()
		after := w.keystoreCalls(t)
		requests := n.Load() - n0
		calls := total(after) - total(before)
		perRequest := calls / float64(requests)
		t.Logf("%d requests in 3s through 2 Envoys (quota + tokencount, both strict): %.0f keystore calls (%.0f lease, %.0f reserve, %.0f settle, %.0f consume), %.4f per request",
			requests, calls, after["/v1/quota/lease"]-before["/v1/quota/lease"], after["/v1/quota/reserve"]-before["/v1/quota/reserve"],
			after["/v1/quota/settle"]-before["/v1/quota/settle"], after["/v1/quota/consume"]-before["/v1/quota/consume"], perRequest)
		require.Positive(t, requests)
		for i, gw := range w.gws {
			taken, ok := gw.StatsValue("wasmcustom." + meter.LeaseMetric(meter.LeaseTaken))
			assert.True(t, ok)
			fallback, _ := gw.StatsValue("wasmcustom." + meter.LeaseMetric(meter.LeaseFallback))
			t.Logf("Envoy %c (%s): %d token reservations from leases, %d at the keystore", 'A'+i, []string{"fused", "two filters"}[i], taken, fallback)
			assert.Greater(t, taken, 10*fallback, "Envoy %c reserves from its leases", 'A'+i)
		}
		assert.Less(t, perRequest, 0.2, "without leases it would be 3 per request (consume, reserve, settle)")
	})

	// 64 clients over both Envoys against a request quota of 200: never
	// more than 200 admitted, the keystore counts what the upstream
	// received, and once the leases are back every unit is admitted.
	t.Run("64 clients, request quota: zero overshoot, exact count", func(t *testing.T) {
		who := caller{app: "burst-requests", requests: 200, token: 1 << 40}
		admitted := warm(t, w, who)
		cs, gws := w.clients(t, 32)
		rs := hammer(t, cs, gws, who, 5)
		admitted += count(rs, 200, false)
		t.Logf("64 clients, 320 requests: %d admitted of 200 (%d refused)", admitted, count(rs, 429, false))
		assert.LessOrEqual(t, admitted, 200, "zero overshoot")
		assert.Equal(t, len(rs), count(rs, 200, false)+count(rs, 429, false), "only 200 or the quota's 429")
		received, _ := w.up.books(who.app)
		assert.EqualValues(t, admitted, received, "denied requests never reach the upstream")
		// Budget held in leases comes back when they go idle: then every
		// remaining unit is admitted, and the keystore counts exactly 200.
		envoytest.Eventually(t, 10*time.Second, func() bool { return w.used(t, who, "requests") == int64(admitted) },
			"the leases returned their unused part (used %d, admitted %d)", w.used(t, who, "requests"), admitted)
		for i := 0; admitted < 200 && i < 400; i++ {
			gw := w.gws[i%2]
			if send(t, gw.Client(), gw, who).status == 200 {
				admitted++
			} else {
				time.Sleep(50 * time.Millisecond) // budget stranded in the other Envoy's lease until it is returned
			}
		}
		assert.Equal(t, 200, admitted, "every unit of the quota admitted once the leases came back")
		assert.Equal(t, 429, send(t, w.gws[0].Client(), w.gws[0], who).status)
		received, _ = w.up.books(who.app)
		assert.EqualValues(t, 200, received)
		envoytest.Eventually(t, 10*time.Second, func() bool { return w.used(t, who, "requests") == 200 }, "the keystore counts 200")
	})

	// The same against a token quota: the tokens the upstream served never
	// exceed it, and the keystore ends at exactly the upstream's count.
	t.Run("64 clients, token quota: zero overshoot, exact count", func(t *testing.T) {
		const limit = 6000
		who := caller{app: "burst-tokens", requests: 1 << 40, token: limit}
		warm(t, w, who)
		cs, gws := w.clients(t, 32)
		rs := hammer(t, cs, gws, who, 5)
		_, served := w.up.books(who.app)
		t.Logf("64 clients, 320 requests: %d served, %d refused by the token quota; upstream served %d of %d tokens",
			count(rs, 200, false), count(rs, 429, true), served, limit)
		assert.Equal(t, len(rs), count(rs, 200, false)+count(rs, 429, true))
		assert.LessOrEqual(t, served, int64(limit), "zero overshoot: the upstream's own count")
		assert.Positive(t, count(rs, 429, true), "the quota ran out")
		envoytest.Eventually(t, 10*time.Second, func() bool {
			_, served = w.up.books(who.app)
			return w.used(t, who, "tokens") == served
		}, "the keystore counts exactly what the upstream served (%d)", served)
	})

	// Envoy B serves an app alone, holds its leases and one request in
	// flight when it is killed: the keystore keeps counting B's held
	// budget until the lease TTL passes, then gives it back; the count ends
	// at exactly what the upstream saw, nothing twice.
	t.Run("killed Envoy: budget back after the TTL, nothing counted twice", func(t *testing.T) {
		who := caller{app: "killed", requests: 100000, token: 1000000}
		b := w.gws[1]
		for range 20 {
			require.Equal(t, 200, send(t, b.Client(), b, who).status)
			time.Sleep(20 * time.Millisecond) // paced: B's lease grows with its demand
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		heldDone := make(chan error, 1)
		go func() {
			_, err := post(ctx, b.Client(), b, who, true)
			heldDone <- err
		}()
		envoytest.Eventually(t, 10*time.Second, func() bool { return w.up.holding.Load() == 1 }, "a request in flight through B")
		// B's leaders (quota's and tokencount's) report their consumption
		// on their next ticks, to B's own keystore: two ticks of each after
		// the last settle carry it (a report in flight at the settle misses
		// it, the next one has it). Consumption not yet reported when an
		// Envoy dies is lost with it (docs/leases.md), so the test waits.
		bCalls := func() float64 { return keystoreCalls(t, w.ks[1])["/v1/quota/lease"] }
		calls := bCalls()
		envoytest.Eventually(t, 5*time.Second, func() bool { return bCalls() >= calls+6 },
			"B's leaders renewed their leases")
		received, served := w.up.books(who.app)
		require.EqualValues(t, 21, received)
		require.EqualValues(t, 20*30, served)
		b.Kill()
		killed := time.Now()
		<-heldDone
		tokens, requests := w.used(t, who, "tokens"), w.used(t, who, "requests")
		t.Logf("B killed holding leases: the keystore counts %d tokens (upstream served %d) and %d requests (upstream received %d)",
			tokens, served, requests, received)
		assert.Greater(t, tokens, served, "B's lease still holds budget right after the kill")
		defer func() {
			if t.Failed() {
				t.Logf("the keystore's last token count was %d, the upstream served %d", tokens, served)
			}
		}()
		envoytest.Eventually(t, ttl+5*time.Second, func() bool { tokens = w.used(t, who, "tokens"); return tokens == served },
			"B's token lease returned after its TTL")
		back := time.Since(killed)
		t.Logf("B's held budget came back %v after the kill (lease TTL %v)", back.Round(10*time.Millisecond), ttl)
		assert.Greater(t, back, ttl/2, "held until the lease expired")
		envoytest.Eventually(t, ttl+5*time.Second, func() bool { return w.used(t, who, "requests") == received },
			"the request counter ends at what the upstream received")
		// Envoy A serves the app afterwards from the returned budget.
		a := w.gws[0]
		require.Equal(t, 200, send(t, a.Client(), a, who).status)
		_, served = w.up.books(who.app)
		envoytest.Eventually(t, 10*time.Second, func() bool { return w.used(t, who, "tokens") == served }, "no token counted twice")
	})

	w.gws[0].RequireNoCrash(t)
}
