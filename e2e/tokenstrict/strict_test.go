package tokenstrict

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tollgate/tollgate/internal/jsontest"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/tokencount/tokentest"
	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/filters/tokencount/usage"
)

// strictConfig is the gateway configuration of the strict-quota tests;
// strictTeams are its small budgets.
func strictConfig(clamp bool) string {
	// Leases are on where they can be: clamp_max_tokens needs the
	// keystore's exact remaining budget (docs/leases.md).
	lease := `"lease": {"enabled": true, "ttl": "4s", "renew": "100ms", "idle": "300ms"},`
	if clamp {
		lease = ""
	}
	return fmt.Sprintf(`{
  "keystore": {"cluster": "keystore", "timeout": "500ms"},
  "trust_identity_headers": false,
  "strict": {"enabled": true, "clamp_max_tokens": %v},
  "settle_retry": {"interval": "200ms"},
  %s
  "unmetered_paths": ["/v1/moderations"],
  "static_quota": {
    "header": "x-team", "limit": 1000000, "time_unit": "hour",
    "overrides": {
      "proof": {"limit": 3000, "time_unit": "hour"},
      "proof-clamp": {"limit": 3200, "time_unit": "hour"},
      "clamp": {"limit": 1000, "time_unit": "hour"}
    }
  }
}`, clamp, lease)
}

func strictLimit(team string) int64 {
	switch team {
	case "proof":
		return 3000
	case "proof-clamp":
		return 3200
	case "clamp":
		return 1000
	}
	return 1000000
}

// Usage modes of the worst-case upstream.
const (
	modeWorst  = "worst"  // prompt = the prompt bound, completion = max_tokens: the most the request permits
	modeHalf   = "half"   // half of both: below the reservation, so a lost settle would show
	modeAbsurd = "absurd" // prompt_tokens 10^18
)

// worstCase is an OpenAI-compatible upstream that generates exactly the
// output cap the request carries and reports the usage of its mode. It
// computes the prompt bound of the body it received with the gateway's own
// policy (the most a request can legitimately be charged), and keeps its
// own count of the tokens it served, to compare with the counter engine.
type worstCase struct {
	pol  *meter.Policy
	mode string
	gate chan struct{} // when set, streams wait for it after their first event

	served   atomic.Int64 // tokens reported in completed answers
	answers  atomic.Int64
	uncapped atomic.Int64 // requests without an output cap (strict mode must add one)
	inflight atomic.Int64
	maxSeen  atomic.Int64 // the largest output cap seen
	minSeen  atomic.Int64 // the smallest output cap seen
	sawCase  atomic.Int64 // bodies with a case variant of max_tokens
}

func newWorstCase(t testing.TB, cfg, mode string) *worstCase {
	t.Helper()
	pol, err := meter.Parse([]byte(cfg))
	require.NoError(t, err)
	w := &worstCase{pol: pol, mode: mode}
	w.minSeen.Store(1 << 62)
	return w
}

func (w *worstCase) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if strings.Contains(string(body), "Max_tokens") {
		w.sawCase.Add(1)
	}
	api := usage.APIForPath(r.URL.Path)
	pl, aerr := w.pol.PlanRequest(api, body, nil)
	if aerr != nil {
		http.Error(rw, aerr.Message, 400)
		return
	}
	out := jsontest.Get(body, "max_completion_tokens").Int()
	if out == 0 {
		out = jsontest.Get(body, "max_tokens").Int()
	}
	if out == 0 {
		w.uncapped.Add(1)
		out = 4096
	}
	for m := w.maxSeen.Load(); out > m && !w.maxSeen.CompareAndSwap(m, out); m = w.maxSeen.Load() {
	}
	for m := w.minSeen.Load(); out < m && !w.minSeen.CompareAndSwap(m, out); m = w.minSeen.Load() {
	}
	prompt, completion := pl.PromptBound, out
	if w.mode == modeHalf {
		prompt, completion = prompt/2, out/2
	}
	u := map[string]any{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
	if w.mode == modeAbsurd {
		u = map[string]any{"prompt_tokens": int64(1e18), "completion_tokens": completion, "total_tokens": int64(1e18) + completion}
	}
	usageJSON, _ := json.Marshal(u)
	w.inflight.Add(1)
	defer w.inflight.Add(-1)
	if !jsontest.Get(body, "stream").Bool() {
		rw.Header().Set("content-type", "application/json")
		fmt.Fprintf(rw, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"length"}],"usage":%s}`,
			strings.Repeat("x ", int(min(completion, 64))), usageJSON)
		w.served.Add(prompt + completion)
		w.answers.Add(1)
		return
	}
	rw.Header().Set("content-type", "text/event-stream")
	rw.WriteHeader(200)
	rc := http.NewResponseController(rw)
	event := func(s string) bool {
		if _, err := io.WriteString(rw, "data: "+s+"\n\n"); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	chunk := func(content string) string {
		return fmt.Sprintf(`{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":%q},"finish_reason":null}]}`, content)
	}
	if !event(chunk("")) {
		return
	}
	if w.gate != nil {
		select {
		case <-w.gate:
		case <-r.Context().Done():
			return
		}
	}
	// A few paced content events (the text is nominal: the usage chunk is
	// what the upstream charges).
	for i := 0; i < 4; i++ {
		if !event(chunk("x x x x ")) {
			return
		}
		time.Sleep(2 * time.Millisecond) // pacing of a generating model, not synchronisation
	}
	if jsontest.Get(body, "stream_options.include_usage").Bool() {
		if !event(`{"id":"x","object":"chat.completion.chunk","choices":[],"usage":` + string(usageJSON) + `}`) {
			return
		}
	}
	if event("[DONE]") {
		w.served.Add(prompt + completion)
		w.answers.Add(1)
	}
}

func startStrictGateway(t testing.TB, up *envoytest.Upstream, ks *tokentest.Keystore, cfg string) *envoytest.Envoy {
	t.Helper()
	return envoytest.Start(t, envoytest.Config{
		Clusters:  []envoytest.Cluster{up.Cluster("backend"), {Name: "keystore", Addr: ks.DataAddr()}},
		Routes:    []envoytest.Route{{Prefix: "/", Cluster: "backend", Timeout: 30 * time.Second}},
		StatsTags: tokentest.StatsTags(),
		Filters: []envoytest.WasmFilter{{
			Name: "tokencount", RootID: "tokencount", VMID: "tokencount",
			WasmPath:                    envoytest.WasmPath(t, "tokencount"),
			Configuration:               cfg,
			AllowOnHeadersStopIteration: true,
		}},
	})
}

func post(t testing.TB, c *http.Client, url, path, body string, headers map[string]string) tokentest.Reply {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("content-type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return tokentest.Send(t, c, req)
}

// burst sends n concurrent streamed chat requests, every fourth trying to
// smuggle a larger output cap past the gateway with a case variant, and
// returns the statuses.
func burst(t *testing.T, c *http.Client, url, team string, n int) map[int]int {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	status := map[int]int{}
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			body := chatBody + `,"stream":true}`
			if i%4 == 3 {
				body = strings.Replace(chatBody, `"max_tokens":256`, `"max_tokens":16,"Max_tokens":4000`, 1) + `,"stream":true}`
			}
			r := post(t, c, url, "/v1/chat/completions", body, map[string]string{"x-team": team})
			mu.Lock()
			defer mu.Unlock()
			status[r.Status]++
			if i%4 == 3 {
				if r.Status != 400 || jsontest.Get(r.Body, "error.code").Str() != "ambiguous_json" {
					status[-1]++ // a smuggling attempt not refused
				}
			}
		})
	}
	close(start)
	wg.Wait()
	return status
}

// TestStrictQuotas runs strict token quotas in real Envoy (two workers)
// against the real counter engine, with one keystore, one upstream whose
// behaviour each case picks, and two gateways: strict, and strict with
// clamp_max_tokens.
func TestStrictQuotas(t *testing.T) {
	ks := tokentest.StartKeystore(t)
	up := envoytest.NewUpstream(t, envoytest.WithRecordLimit(128))
	plain := startStrictGateway(t, up, ks, strictConfig(false))
	clamping := startStrictGateway(t, up, ks, strictConfig(true))
	worst := func(t *testing.T, mode string) *worstCase {
		wc := newWorstCase(t, strictConfig(false), mode)
		up.SetHandler(wc)
		return wc
	}

	// The concurrency proof: 64 concurrent streams against a small budget,
	// answered by an upstream that reports the highest usage each request
	// permits (the prompt bound and the full output cap). Whatever
	// interleaving the two workers produce, the tokens the upstream itself
	// served stay within the budget, and the counter charged exactly what
	// the upstream served. A quarter of the requests try to smuggle a
	// larger cap with a case variant (Max_tokens).
	for _, clamp := range []bool{false, true} {
		t.Run(fmt.Sprintf("64 streams never overshoot, clamp=%v", clamp), func(t *testing.T) {
			wc := worst(t, modeWorst)
			env, team := plain, "proof"
			if clamp {
				env, team = clamping, "proof-clamp"
			}
			status := burst(t, tokentest.NewClient(64), "http://"+env.ListenerAddr(), team, 64)
			t.Logf("64 streams against %d tokens: %v; upstream served %d tokens in %d answers (caps %d..%d)",
				strictLimit(team), status, wc.served.Load(), wc.answers.Load(), wc.minSeen.Load(), wc.maxSeen.Load())
			assert.Zero(t, status[-1], "every case-variant smuggling attempt gets 400 ambiguous_json")
			assert.Equal(t, 16, status[400])
			assert.Positive(t, status[200], "some streams were served")
			assert.Equal(t, 64, status[200]+status[429]+status[400], "%v", status)
			assert.Zero(t, wc.uncapped.Load(), "strict mode forwards an output cap on every request")
			assert.Zero(t, wc.sawCase.Load(), "no case variant reached the upstream")
			assert.Equal(t, int64(status[200]), wc.answers.Load())
			assert.LessOrEqual(t, wc.served.Load(), strictLimit(team), "the upstream's own count stays within the budget")
			used := ks.WaitUsed(t, team, strictLimit(team), "every stream settled to the upstream's count",
				func(u int64) bool { return u == wc.served.Load() })
			assert.LessOrEqual(t, used, strictLimit(team))
			if clamp {
				assert.Less(t, wc.minSeen.Load(), int64(256), "the last admitted request was clamped below the asked 256")
			} else {
				assert.Equal(t, int64(256), wc.minSeen.Load())
			}
		})
	}

	// An upstream reporting 10^18 prompt tokens is charged the request's
	// bound (prompt bound + max_tokens), counted in the violations metric,
	// and the token counters do not jump.
	t.Run("hostile upstream usage is charged the bound", func(t *testing.T) {
		wc := worst(t, modeAbsurd)
		c := tokentest.NewClient(2)
		pl, aerr := wc.pol.PlanRequest(usage.APIChatCompletions, []byte(chatBody+`}`), nil)
		require.Nil(t, aerr)
		bound := pl.PromptBound + 256
		for _, stream := range []bool{false, true} {
			team := fmt.Sprintf("absurd-%v", stream)
			body := chatBody + `}`
			if stream {
				body = chatBody + `,"stream":true}`
			}
			r := post(t, c, "http://"+plain.ListenerAddr(), "/v1/chat/completions", body, map[string]string{"x-team": team})
			require.Equal(t, 200, r.Status, "%s", r.Body)
			used := ks.WaitUsed(t, team, strictLimit(team), "charged the bound", func(u int64) bool { return u == bound })
			assert.Equal(t, bound, used)
		}
		v := plain.WaitPromMetric(t, meter.MetricViolations, map[string]string{"model": "gpt-4o-mini", "reason": string(meter.ViolationInvalid)},
			10*time.Second, func(v float64) bool { return v == 2 })
		assert.Equal(t, 2.0, v)
		samples, err := plain.PromMetrics()
		require.NoError(t, err)
		for _, app := range []string{"absurd-false", "absurd-true"} {
			got := envoytest.FindSamples(samples, meter.MetricPromptTokens, map[string]string{"model": "gpt-4o-mini", "app": app})
			require.Len(t, got, 1, app)
			assert.Equal(t, float64(pl.PromptBound), got[0].Value, "the prompt counter shows the bound, never 1e18")
		}
	})

	// With a token quota in force, POSTs to token-consuming endpoints the
	// filter does not meter are refused with a JSON 403 and never reach
	// the upstream; allowed paths and GETs pass.
	t.Run("unmetered endpoints refused", func(t *testing.T) {
		up.SetHandler(envoytest.EchoHandler("upstream"))
		url := "http://" + plain.ListenerAddr()
		c := tokentest.NewClient(2)
		h := map[string]string{"x-team": "paths"}
		for _, path := range []string{"/v1/responses", "/v1/audio/speech", "/v1/audio/transcriptions", "/v1/images/generations",
			"/v1/chat%2Fcompletions", "/v1/Chat/Completions", "/v2/anything"} {
			before := up.Count()
			r := post(t, c, url, path, `{"model":"m","input":"hello"}`, h)
			assert.Equal(t, 403, r.Status, path)
			assert.Equal(t, meter.CodeUnmeteredPath, jsontest.Get(r.Body, "error.code").Str(), "%s: %s", path, r.Body)
			assert.Equal(t, before, up.Count(), "%s never reached the upstream", path)
		}
		before := up.Count()
		r := post(t, c, url, "/v1/moderations", `{"input":"hello"}`, h)
		assert.Equal(t, 200, r.Status, "an allowed path passes")
		req, err := http.NewRequest(http.MethodGet, url+"/v1/models", nil)
		require.NoError(t, err)
		r = tokentest.Send(t, c, req)
		assert.Equal(t, 200, r.Status, "GETs pass")
		assert.Equal(t, before+2, up.Count())
		worst(t, modeWorst)
		r = post(t, c, url, "/v1/chat/completions", chatBody+`}`, h)
		assert.Equal(t, 200, r.Status, "a metered request is served afterwards: %s", r.Body)
	})

	// With clamp_max_tokens, a request asking for more output than the
	// budget has left goes on with its cap lowered to what fits: when it
	// exceeds the whole limit (planned before the callout) and when other
	// requests hold the budget (after the denial, the body is rewritten in
	// the callout's answer).
	t.Run("clamp_max_tokens", func(t *testing.T) {
		wc := worst(t, modeWorst)
		url := "http://" + clamping.ListenerAddr()
		c := tokentest.NewClient(4)
		pl, aerr := wc.pol.PlanRequest(usage.APIChatCompletions, []byte(chatBody+`}`), nil)
		require.Nil(t, aerr)
		prompt := pl.PromptBound

		big := strings.Replace(chatBody, `"max_tokens":256`, `"max_tokens":5000`, 1) + `}`
		r := post(t, c, url, "/v1/chat/completions", big, map[string]string{"x-team": "clamp"})
		require.Equal(t, 200, r.Status, "%s", r.Body)
		last, ok := up.Last()
		require.True(t, ok)
		assert.Equal(t, 1000-prompt, jsontest.Get(last.Body, "max_tokens").Int(), "clamped to the whole limit")
		ks.WaitUsed(t, "clamp", 1000, "settled", func(u int64) bool { return u == 1000 })

		// A gated stream holds most of another team's 1M budget.
		wc.gate = make(chan struct{})
		h2 := map[string]string{"x-team": "clamp2"}
		first := strings.Replace(chatBody, `"max_tokens":256`, `"max_tokens":999000`, 1) + `,"stream":true}`
		done := make(chan tokentest.Reply, 1)
		go func() { done <- post(t, c, url, "/v1/chat/completions", first, h2) }()
		envoytest.Eventually(t, 10*time.Second, func() bool { return wc.inflight.Load() == 1 }, "the first stream holds its reservation")
		second := strings.Replace(chatBody, `"max_tokens":256`, `"max_tokens":5000`, 1) + `}`
		r = post(t, c, url, "/v1/chat/completions", second, h2)
		close(wc.gate)
		require.Equal(t, 200, r.Status, "%s", r.Body)
		last, ok = up.Last()
		require.True(t, ok)
		assert.Equal(t, 1000000-(prompt+999000)-prompt, jsontest.Get(last.Body, "max_tokens").Int(), "clamped to what the held budget left")
		require.Equal(t, 200, (<-done).Status)
	})

	// The keystore goes down while 32 streams are in flight, so every
	// settle fails; the filter queues them in shared data and retries them
	// on its tick once the keystore is back, and the counter ends exactly
	// at the tokens the upstream served (less than was reserved, so a lost
	// settle would show). It runs on the gateway without leases, where
	// every stream settles at the keystore.
	t.Run("keystore restart mid-stream loses no charge", func(t *testing.T) {
		wc := worst(t, modeHalf)
		wc.gate = make(chan struct{})
		url := "http://" + clamping.ListenerAddr()
		c := tokentest.NewClient(32)
		const n = 32
		var wg sync.WaitGroup
		statuses := make(chan int, n)
		for range n {
			wg.Go(func() {
				statuses <- post(t, c, url, "/v1/chat/completions", chatBody+`,"stream":true}`, map[string]string{"x-team": "restart"}).Status
			})
		}
		envoytest.Eventually(t, 20*time.Second, func() bool { return wc.inflight.Load() == n }, "all %d streams reserved and in flight", n)
		ks.Stop()
		close(wc.gate)
		wg.Wait()
		close(statuses)
		for s := range statuses {
			require.Equal(t, 200, s)
		}
		require.Equal(t, int64(n), wc.answers.Load())
		queued := clamping.WaitPromMetric(t, meter.MetricSettleQueue, map[string]string{"event": "queued"}, 10*time.Second,
			func(v float64) bool { return v == n })
		require.Equal(t, float64(n), queued, "every settle failed and was queued")
		ks.Restart(t)
		used := ks.WaitUsed(t, "restart", strictLimit("restart"), "the counter reaches the upstream's count",
			func(u int64) bool { return u == wc.served.Load() })
		t.Logf("keystore restarted under %d streams: counter %d = upstream's own count %d", n, used, wc.served.Load())
		// The counter can show the settles before Envoy has read the
		// keystore's answers: poll the metric.
		delivered := clamping.WaitPromMetric(t, meter.MetricSettleQueue, map[string]string{"event": "delivered"}, 30*time.Second,
			func(v float64) bool { return v == n })
		assert.Equal(t, float64(n), delivered)
		dropped, _ := clamping.PromMetric(meter.MetricSettleQueue, map[string]string{"event": "dropped"})
		assert.Zero(t, dropped)
	})

	plain.RequireNoCrash(t)
	clamping.RequireNoCrash(t)
}
