package picker

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/mockllm"
)

// TestOriginalDst runs the single-pick setup (ORIGINAL_DST reads one
// address from the header): the header contract, subset hints, LoRA
// affinity and shedding under saturation, on one Envoy.
func TestOriginalDst(t *testing.T) {
	// The second server has the adapter loaded.
	sims := startSims(t, 3, func(i int) mockllm.SimOptions {
		o := mockllm.SimOptions{TimeScale: 0.1, ITL: 100 * time.Millisecond, NumBlocks: 64, MaxNumSeqs: 4, Loras: []string{"ad-x", "ad-y"}, MaxLoras: 2}
		if i == 1 {
			o.PreloadedLoras = []string{"ad-x"}
		}
		return o
	})
	e := startEnvoy(t, sims, modeOriginalDst, pickerConfig(sims, `,"fallbacks":0,"sheddable":["sheddable"],"max_body_bytes":262144`))
	waitScraped(t, e, sims)

	t.Run("header contract", func(t *testing.T) {
		before := total(sims)
		r := chat(t, e, "m", "sys", "hello", 3, map[string]string{destHeader: "10.255.255.1:9"})
		require.NoError(t, r.err)
		require.Equal(t, 200, r.status, "%s", r.body)
		assert.Equal(t, before+1, total(sims))
		served := servedBy(t, sims)
		assert.Equal(t, served.addr, served.dest(), "the upstream got the picked endpoint, not the client's value")
		envoytest.Eventually(t, 5*time.Second, func() bool {
			raw, _ := os.ReadFile(e.AccessLogPath)
			return strings.Contains(string(raw), `"pick":"`+served.addr+` scored"`)
		}, "the access log names the pick and its reason")
	})

	t.Run("subset hint", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			before := sims[2].posts.Load()
			r := chat(t, e, "m", "sys", "subset", 2, map[string]string{"x-gateway-destination-endpoint-subset": "10.9.9.9:1, " + sims[2].addr})
			require.Equal(t, 200, r.status, "%s", r.body)
			assert.Equal(t, before+1, sims[2].posts.Load())
		}
		r := chat(t, e, "m", "sys", "subset", 2, map[string]string{"x-gateway-destination-endpoint-subset": "10.9.9.9:1"})
		assert.Equal(t, 503, r.status)
		assert.Equal(t, "no_endpoint_available", errorCode(t, r.body))
		assert.Equal(t, "application/json", r.header.Get("content-type"))
		envoytest.Eventually(t, 5*time.Second, func() bool {
			raw, _ := os.ReadFile(e.AccessLogPath)
			return strings.Contains(string(raw), `"pick":"- no_eligible"`)
		}, "the access log names the refusal")
	})

	t.Run("bad bodies get JSON errors and reach no server", func(t *testing.T) {
		before := total(sims)
		tests := []struct {
			name, body string
			status     int
			code       string
		}{
			{"invalid JSON", `{"model":"m","messages":[`, 400, "invalid_json"},
			{"duplicate keys", `{"model":"m","model":"x","messages":[]}`, 400, "ambiguous_json"},
			{"too large", `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("x", 300<<10) + `"}]}`, 413, "request_too_large"},
		}
		for _, tc := range tests {
			req, err := http.NewRequest(http.MethodPost, e.URL("/v1/chat/completions"), strings.NewReader(tc.body))
			require.NoError(t, err)
			req.Header.Set("content-type", "application/json")
			resp, err := e.Client().Do(req)
			require.NoError(t, err)
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, tc.status, resp.StatusCode, "%s: %s", tc.name, raw)
			assert.Equal(t, tc.code, errorCode(t, raw), tc.name)
		}
		assert.Equal(t, before, total(sims))
		// A request without a body is picked by load alone.
		resp, err := e.Client().Get(e.URL("/v1/models"))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode)
	})

	t.Run("LoRA affinity", func(t *testing.T) {
		before := sims[1].posts.Load()
		for i := 0; i < 6; i++ {
			r := chat(t, e, "ad-x", "sys", "lora", 2, nil)
			require.Equal(t, 200, r.status, "%s", r.body)
		}
		assert.Equal(t, before+6, sims[1].posts.Load(), "every adapter request went to the server that has it loaded")
	})

	t.Run("shed sheddable, serve critical", func(t *testing.T) {
		// One long-prompt stream per server holds its whole KV cache
		// (64 blocks): every server is saturated while slots stay free.
		long := words("hold", 1400)
		var wg sync.WaitGroup
		for _, s := range sims {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// 200 tokens at 10 ms: each hold lasts about 2 s.
				r := chat(t, e, "m", long, "hold", 200, map[string]string{
					"x-gateway-destination-endpoint-subset": s.addr, "x-tollgate-priority": "critical"})
				assert.Equal(t, 200, r.status, "%s", r.body)
			}()
		}
		var shed result
		envoytest.Eventually(t, 10*time.Second, func() bool {
			shed = chat(t, e, "m", "sys", "batch job", 2, map[string]string{"x-tollgate-priority": "sheddable"})
			return shed.status == 429
		}, "sheddable requests were never shed (last status %d)", shed.status)
		assert.Equal(t, "pool_saturated", errorCode(t, shed.body))
		assert.Equal(t, "1", shed.header.Get("retry-after"))
		crit := chat(t, e, "m", "sys", "important", 2, map[string]string{"x-tollgate-priority": "critical"})
		assert.Equal(t, 200, crit.status, "critical requests are never shed: %s", crit.body)
		wg.Wait()
		envoytest.Eventually(t, 10*time.Second, func() bool {
			return chat(t, e, "m", "sys", "batch job", 2, map[string]string{"x-tollgate-priority": "sheddable"}).status == 200
		}, "sheddable requests are served again once the load is gone")
	})

	t.Run("prometheus labels", func(t *testing.T) {
		prom, err := e.AdminGet("/stats/prometheus")
		require.NoError(t, err)
		assert.Regexp(t, `tollgate_picker_picks\{endpoint="`+regexp.QuoteMeta(statName(sims[1].addr))+`"\} [1-9]`, prom)
		assert.Regexp(t, `tollgate_picker_decisions\{reason="shed"\} [1-9]`, prom)
		assert.Regexp(t, `tollgate_picker_kv_cache_permille\{endpoint="`, prom)
		assert.Regexp(t, `tollgate_picker_score_bucket\{part="prefix",le=`, prom)
	})
	e.RequireNoCrash(t)
}

// TestStaleMetricsFailOpen: no metrics ever arrive (every scrape gets
// 404), so every endpoint counts as saturated; requests are still served.
// The same Envoy takes its pools from a pools source, whose changes
// reach the filter without a restart.
func TestStaleMetricsFailOpen(t *testing.T) {
	sims := startSims(t, 2, same(mockllm.SimOptions{TimeScale: 0.1}))
	var doc atomic.Value
	poolsDoc := func(ss ...*sim) string {
		var eps []string
		for _, s := range ss {
			eps = append(eps, `{"address":"`+s.addr+`"}`)
		}
		return `{"pools":[{"name":"pool","models":["m"],"endpoints":[` + strings.Join(eps, ",") + `]}]}`
	}
	doc.Store(poolsDoc(sims[1], sims[0]))
	source := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		io.WriteString(w, doc.Load().(string))
	}))
	t.Cleanup(source.Close)
	e := startEnvoy(t, sims, modeOriginalDst, pickerConfig(sims, `,"fallbacks":0,"metrics_path":"/no-metrics-here",`+
		`"pools_source":{"cluster":"pools","path":"/pools","interval":"200ms"}`),
		envoytest.Cluster{Name: "pools", Addr: strings.TrimPrefix(source.URL, "http://")})
	envoytest.Eventually(t, 10*time.Second, func() bool {
		return stat(t, e, "tollgate_picker.scrape_errors.endpoint."+statName(sims[1].addr)) > 2
	}, "scrapes never failed")

	t.Run("stale metrics fail open", func(t *testing.T) {
		for i := 0; i < 6; i++ {
			r := chat(t, e, "m", "sys", "still served", 2, nil)
			require.NoError(t, r.err)
			assert.Equal(t, 200, r.status, "stale metrics fail open, not 503: %s", r.body)
		}
		assert.GreaterOrEqual(t, stat(t, e, "tollgate_picker.decisions.fail_open"), uint64(6))
	})

	t.Run("pools from a pools source replace the configured ones without a restart", func(t *testing.T) {
		onlyTo := func(s *sim) func() bool {
			return func() bool {
				for i := 0; i < 6; i++ {
					before := s.posts.Load()
					if r := chat(t, e, "m", "sys", "pool", 2, nil); r.status != 200 || s.posts.Load() != before+1 {
						return false
					}
				}
				return true
			}
		}
		doc.Store(poolsDoc(sims[1]))
		envoytest.Eventually(t, 10*time.Second, onlyTo(sims[1]), "the changed pool (second server only) never took effect")
		doc.Store(poolsDoc(sims[0]))
		envoytest.Eventually(t, 10*time.Second, onlyTo(sims[0]), "the changed pool (first server only) never took effect")
		doc.Store(`{"pools":[{"name":"pool","endpoints":[{"address":"not an address"}]}]}`)
		envoytest.Eventually(t, 10*time.Second, func() bool {
			return stat(t, e, "tollgate_picker.decisions.pools_source_errors") > 0
		}, "an invalid document was not refused")
		assert.True(t, onlyTo(sims[0])(), "an invalid document leaves the pools as they were")
	})
	e.RequireNoCrash(t)
}

// TestOverrideHostFallbacks runs the list setup (override_host walks the
// header's list on retries): the upstream sees the primary and its
// fallbacks, and a server killed mid-run costs no client error.
func TestOverrideHostFallbacks(t *testing.T) {
	sims := startSims(t, 3, same(mockllm.SimOptions{TimeScale: 0.05}))
	e := startEnvoy(t, sims, modeOverrideHost, pickerConfig(sims, `,"fallbacks":2,"eject":{"failures":1,"backoff":"5s"},"weights":{"session":5}`))
	waitScraped(t, e, sims)

	// Exactly one poller per Envoy: two workers, one scrape per interval.
	before := sims[1].scrapes.Load()
	window := time.NewTimer(2 * time.Second)
	<-window.C
	n := sims[1].scrapes.Load() - before
	assert.LessOrEqual(t, n, int64(56), "one poller scrapes every 50 ms (40 in 2 s), not one per worker (80)")
	assert.GreaterOrEqual(t, n, int64(4))

	r := chat(t, e, "m", "sys", "list", 2, nil)
	require.Equal(t, 200, r.status, "%s", r.body)
	served := servedBy(t, sims)
	list := strings.Split(served.dest(), ",")
	require.Len(t, list, 3, "primary and two fallbacks: %q", served.dest())
	assert.Equal(t, served.addr, list[0], "Envoy used the primary")
	assert.ElementsMatch(t, []string{sims[0].addr, sims[1].addr, sims[2].addr}, list)

	t.Run("session affinity", func(t *testing.T) {
		token := r.header.Get("x-session-token")
		require.NotEmpty(t, token, "the response carries a session token")
		for i := 0; i < 5; i++ {
			before := served.posts.Load()
			r := chat(t, e, "m", "sys", fmt.Sprint("session ", i), 2, map[string]string{"x-session-token": token})
			require.Equal(t, 200, r.status, "%s", r.body)
			assert.Equal(t, before+1, served.posts.Load(), "the session stays on its server")
			assert.Equal(t, token, r.header.Get("x-session-token"))
		}
	})

	const workers, perWorker = 4, 15
	var mu sync.Mutex
	failures := []string{}
	var wg sync.WaitGroup
	var started sync.WaitGroup
	started.Add(workers)
	killAt := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				if i == 3 {
					started.Done()
				}
				r := chat(t, e, "m", "sys", "load", 4, nil)
				if r.err != nil || r.status != 200 {
					mu.Lock()
					failures = append(failures, string(r.body)+errString(r.err))
					mu.Unlock()
				}
			}
		}()
	}
	go func() {
		started.Wait()
		sims[0].kill()
		close(killAt)
	}()
	wg.Wait()
	<-killAt
	assert.Empty(t, failures, "the fallbacks and Envoy's retries hide the killed server")
	t.Logf("picks of the killed server: %d; posts it saw: %d", stat(t, e, "tollgate_picker.picks.endpoint."+statName(sims[0].addr)), sims[0].posts.Load())

	t.Run("a hot prefix group spills to a second server", func(t *testing.T) {
		// The two live servers only; the group's first request makes a home.
		subset := map[string]string{"x-gateway-destination-endpoint-subset": sims[1].addr + "," + sims[2].addr}
		system := words("group", 600)
		r := chat(t, e, "m", system, "first", 2, subset)
		require.Equal(t, 200, r.status, "%s", r.body)
		home, other := servedBy(t, sims), sims[1]
		if home == sims[1] {
			other = sims[2]
		}
		before := other.posts.Load()
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := chat(t, e, "m", system, fmt.Sprint("burst ", i), 200, subset)
				assert.Equal(t, 200, r.status, "%s", r.body)
			}()
		}
		wg.Wait()
		assert.GreaterOrEqual(t, other.posts.Load()-before, int64(2), "the home's queue made the group spill")
		hits, _, _ := prefixCounters(t, other)
		assert.Positive(t, hits, "the second server became a second home: later requests hit its cache")
	})
	e.RequireNoCrash(t)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// stat reads a picker metric (Envoy may prefix custom metrics).
func stat(t *testing.T, e *envoytest.Envoy, name string) uint64 {
	t.Helper()
	m, err := e.StatsMatching(regexp.QuoteMeta(name) + "$")
	require.NoError(t, err)
	var v uint64
	for _, x := range m {
		v += x
	}
	return v
}

func statName(addr string) string {
	return strings.NewReplacer(".", "_", ":", "_").Replace(addr)
}

func total(sims []*sim) int64 {
	var n int64
	for _, s := range sims {
		n += s.posts.Load()
	}
	return n
}

// servedBy returns the simulator that received the latest POST.
func servedBy(t *testing.T, sims []*sim) *sim {
	t.Helper()
	var best *sim
	for _, s := range sims {
		if s.seq() > 0 && (best == nil || s.seq() > best.seq()) {
			best = s
		}
	}
	require.NotNil(t, best, "no simulator saw a request")
	return best
}
