package tokencount

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/tokencount/tokentest"
	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/internal/jsontest"
)

// reservation is what the filter reserves for chatBody (prompt estimate
// plus max_tokens), computed by the same policy code.
func reservation(t testing.TB, stream bool) int64 {
	t.Helper()
	pol, err := meter.Parse([]byte(filterConfig))
	require.NoError(t, err)
	body := chatBody + `}`
	if stream {
		body = chatBody + `,"stream":true}`
	}
	q, _, aerr := pol.Resolve(func(h string) string {
		if h == "x-team" {
			return "any"
		}
		return ""
	})
	require.Nil(t, aerr)
	pl, aerr := pol.PlanRequest(usage.APIChatCompletions, []byte(body), q)
	require.Nil(t, aerr)
	return pl.Amount
}

func TestTokencount(t *testing.T) {
	ks := tokentest.StartKeystore(t)
	be := newBackend(t)
	up := envoytest.NewUpstream(t, envoytest.WithHandler(be), envoytest.WithRecordLimit(64))
	env := startGateway(t, up, ks, true)
	url := "http://" + env.ListenerAddr()
	c := tokentest.NewClient(64)
	ctx := context.Background()
	streamAmount := reservation(t, true)
	const full = 71 // usage of the recorded answer: 43 prompt + 28 completion

	t.Run("JSON answer: exact usage, headers after settlement", func(t *testing.T) {
		r := tokentest.Send(t, c, chatRequest(t, ctx, url, false, map[string]string{"x-team": "json"}))
		require.Equal(t, 200, r.Status, "%s", r.Body)
		assert.Equal(t, be.json, r.Body)
		assert.Equal(t, "1000000", r.Header.Get("x-ratelimit-limit-tokens"))
		assert.Equal(t, strconv.Itoa(1000000-full), r.Header.Get("x-ratelimit-remaining-tokens"))
		reset, err := time.ParseDuration(r.Header.Get("x-ratelimit-reset-tokens"))
		require.NoError(t, err)
		assert.True(t, reset > 0 && reset <= time.Hour, "reset %v", reset)
		assert.Equal(t, int64(full), ks.Used(t, "json", limitOf("json")), "settled before the answer went out")
	})

	t.Run("streamed answer: exact usage, injected usage chunk removed", func(t *testing.T) {
		r := tokentest.Send(t, c, chatRequest(t, ctx, url, true, map[string]string{"x-team": "stream", "x-test-first-ms": "5", "x-test-pace-ms": "2"}))
		require.Equal(t, 200, r.Status, "%s", r.Body)
		last, ok := up.Last()
		require.True(t, ok)
		assert.True(t, jsontest.Get(last.Body, "stream_options.include_usage").Bool(), "the upstream was asked for usage")
		var want []byte
		for _, ev := range be.usage {
			if !bytes.Contains(ev, []byte(`"choices":[],`)) {
				want = append(want, ev...)
			}
		}
		assert.Equal(t, string(want), string(r.Body), "the client, who did not ask, never sees the usage chunk")
		// Headers left with the first byte: remaining counts the reservation.
		assert.Equal(t, "1000000", r.Header.Get("x-ratelimit-limit-tokens"))
		assert.Equal(t, strconv.FormatInt(1000000-streamAmount, 10), r.Header.Get("x-ratelimit-remaining-tokens"))
		ks.WaitUsed(t, "stream", limitOf("stream"), "settled to the real usage", func(u int64) bool { return u == full })
		// The next answer's headers reflect the settled usage of both.
		r = tokentest.Send(t, c, chatRequest(t, ctx, url, false, map[string]string{"x-team": "stream"}))
		require.Equal(t, 200, r.Status)
		assert.Equal(t, strconv.Itoa(1000000-2*full), r.Header.Get("x-ratelimit-remaining-tokens"))
	})

	t.Run("refused before the upstream", func(t *testing.T) {
		before := up.Count()
		r := tokentest.Send(t, c, chatRequest(t, ctx, url, true, map[string]string{"x-team": "tiny"}))
		assert.Equal(t, 429, r.Status)
		assert.Equal(t, meter.CodeRequestOverLimit, jsontest.Get(r.Body, "error.code").Str())
		assert.Equal(t, "rate_limit_error", jsontest.Get(r.Body, "error.type").Str())
		assert.Equal(t, before, up.Count(), "the upstream never saw it")
		// Identity headers sent by the client are not trusted here.
		r = tokentest.Send(t, c, chatRequest(t, ctx, url, true, map[string]string{"x-team": "tiny",
			"x-tollgate-app": "spoof", "x-tollgate-token-quota": "999999999/1hour/calendar;scope=x"}))
		assert.Equal(t, 429, r.Status)
		assert.Equal(t, before, up.Count())
	})

	t.Run("32 concurrent streams never overshoot the budget", func(t *testing.T) {
		// Each stream reserves streamAmount (~300) of 1000 tokens and lasts
		// ~350 ms, so only a few fit at a time; a gateway that charged after
		// the answer would admit all 32 (32 × 71 = 2272 > 1000).
		const n = 32
		before := up.Count()
		var wg sync.WaitGroup
		var mu sync.Mutex
		status := map[int]int{}
		var remainingSeen []int64
		start := make(chan struct{})
		for range n {
			wg.Go(func() {
				<-start
				r := tokentest.Send(t, c, chatRequest(t, ctx, url, true, map[string]string{"x-team": "burst"}))
				mu.Lock()
				defer mu.Unlock()
				status[r.Status]++
				if r.Status == 200 {
					rem, err := strconv.ParseInt(r.Header.Get("x-ratelimit-remaining-tokens"), 10, 64)
					if err == nil {
						remainingSeen = append(remainingSeen, rem)
					}
				} else if r.Status == 429 {
					if r.Header.Get("retry-after") == "" {
						status[-1]++ // a refusal without Retry-After
					}
				}
			})
		}
		close(start)
		wg.Wait()
		t.Logf("burst of %d streams: %v (admitted saw remaining %v)", n, status, remainingSeen)
		assert.Equal(t, n, status[200]+status[429], "%v", status)
		assert.Zero(t, status[-1], "every 429 carries Retry-After")
		assert.Positive(t, status[429], "the budget refused some")
		assert.Positive(t, status[200])
		assert.Equal(t, before+status[200], up.Count(), "refused requests never reached the upstream")
		for _, rem := range remainingSeen {
			assert.GreaterOrEqual(t, rem, int64(0))
		}
		used := ks.WaitUsed(t, "burst", limitOf("burst"), "every admitted stream settled",
			func(u int64) bool { return u == int64(status[200]*full) })
		assert.LessOrEqual(t, used, limitOf("burst"), "zero overshoot")
	})

	t.Run("client disconnect mid-stream releases the unused reservation", func(t *testing.T) {
		req := chatRequest(t, ctx, url, true, map[string]string{"x-team": "abort", "x-test-first-ms": "0", "x-test-pace-ms": "30"})
		resp, err := tokentest.NewClient(1).Do(req)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		rd := bufio.NewReader(resp.Body)
		for seen := 0; seen < 3; {
			line, err := rd.ReadBytes('\n')
			require.NoError(t, err)
			if bytes.HasPrefix(line, []byte("data: ")) {
				seen++
			}
		}
		// Mid-stream, the whole reservation is held.
		assert.Equal(t, streamAmount, ks.Used(t, "abort", limitOf("abort")))
		require.NoError(t, resp.Body.Close()) // the client goes away
		used := ks.WaitUsed(t, "abort", limitOf("abort"), "released down to what was streamed",
			func(u int64) bool { return u < streamAmount })
		t.Logf("aborted stream: reserved %d, charged %d", streamAmount, used)
		assert.Positive(t, used, "the prompt and the streamed tokens are charged")
		assert.Less(t, used, int64(full), "less than the whole answer")
	})

	t.Run("metrics by model and app", func(t *testing.T) {
		labels := map[string]string{"model": "gpt-4o-mini", "app": "json"}
		v := env.WaitPromMetric(t, meter.MetricPromptTokens, labels, 10*time.Second, func(v float64) bool { return v == 43 })
		assert.Equal(t, 43.0, v)
		v, ok := env.PromMetric(meter.MetricCompletionTokens, labels)
		assert.True(t, ok)
		assert.Equal(t, 28.0, v)
		v, ok = env.PromMetric(meter.MetricRequests, map[string]string{"model": "gpt-4o-mini", "app": "json", "outcome": "settled"})
		assert.True(t, ok)
		assert.Equal(t, 1.0, v)
		v, ok = env.PromMetric(meter.MetricRefused, map[string]string{"model": "gpt-4o-mini", "app": "burst"})
		assert.True(t, ok)
		assert.Positive(t, v)
		v, ok = env.PromMetric(meter.MetricRequests, map[string]string{"model": "gpt-4o-mini", "app": "abort", "outcome": "aborted"})
		assert.True(t, ok)
		assert.Equal(t, 1.0, v)
		samples, err := env.PromMetrics()
		require.NoError(t, err)
		assert.NotEmpty(t, envoytest.FindSamples(samples, meter.MetricEstimateError+"_count", map[string]string{"model": "gpt-4o-mini"}))
	})

	t.Run("token counts in the access log", func(t *testing.T) {
		var entries []map[string]any
		envoytest.Eventually(t, 10*time.Second, func() bool {
			entries = accessLog(t, env)
			return slices.ContainsFunc(entries, func(e map[string]any) bool { return e["token_source"] == "upstream" })
		}, "access log with token counts")
		var json, refused map[string]any
		for _, e := range entries {
			switch {
			case e["status"] == 200.0 && e["token_source"] == "upstream" && json == nil:
				json = e
			case e["status"] == 429.0 && refused == nil:
				refused = e
			}
		}
		require.NotNil(t, json)
		assert.Equal(t, "43", json["prompt_tokens"])
		assert.Equal(t, "28", json["completion_tokens"])
		assert.Equal(t, "71", json["total_tokens"])
		assert.Equal(t, "71", json["charged"])
		assert.Equal(t, "gpt-4o-mini", json["model"])
		require.NotNil(t, refused)
	})

	env.RequireNoCrash(t)
}

// TestTimeToFirstToken compares the time to the first streamed event
// through Envoy with the filter (reserve callout, body buffering, include
// usage rewrite, SSE counting) and through bare Envoy, in the same run,
// interleaved: the median of 100 each is logged. It asserts only a bound
// generous enough for a loaded shared machine; the figure to read is the
// logged difference.
func TestTimeToFirstToken(t *testing.T) {
	ks := tokentest.StartKeystore(t)
	be := newBackend(t)
	up := envoytest.NewUpstream(t, envoytest.WithHandler(be), envoytest.WithRecordLimit(8))
	filtered := startGateway(t, up, ks, true)
	bare := startGateway(t, up, ks, false)
	cf, cb := tokentest.NewClient(1), tokentest.NewClient(1)
	ctx := context.Background()
	headers := map[string]string{"x-team": "ttft", "x-test-first-ms": "0", "x-test-pace-ms": "1"}
	measure := func(c *http.Client, url string) time.Duration {
		req := chatRequest(t, ctx, url, true, headers)
		start := time.Now()
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		rd := bufio.NewReader(resp.Body)
		for {
			line, err := rd.ReadBytes('\n')
			require.NoError(t, err)
			if bytes.HasPrefix(line, []byte("data: ")) {
				break
			}
		}
		d := time.Since(start)
		_, _ = rd.WriteTo(discard{})
		return d
	}
	// Warm up both paths (connections, VM code paths).
	for range 5 {
		measure(cf, "http://"+filtered.ListenerAddr())
		measure(cb, "http://"+bare.ListenerAddr())
	}
	const n = 100
	var tf, tb []time.Duration
	for range n {
		tf = append(tf, measure(cf, "http://"+filtered.ListenerAddr()))
		tb = append(tb, measure(cb, "http://"+bare.ListenerAddr()))
	}
	slices.Sort(tf)
	slices.Sort(tb)
	med := func(s []time.Duration) time.Duration { return s[len(s)/2] }
	p90 := func(s []time.Duration) time.Duration { return s[len(s)*9/10] }
	added := med(tf) - med(tb)
	t.Logf("time to first token, median of %d: bare %v, with tokencount %v, added %v (p90 %v vs %v)",
		n, med(tb), med(tf), added, p90(tb), p90(tf))
	assert.Less(t, added, 20*time.Millisecond, "generous bound for a loaded machine; the target is ≤ 1 ms")
	filtered.RequireNoCrash(t)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
