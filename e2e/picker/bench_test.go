package picker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/mockllm"
)

// The scheduling benchmark (docs/scheduling.md) runs only with
// TOLLGATE_BENCH_PICKER=1: real Envoy in front of 4 simulated vLLM servers
// (4 sequences each, 0.5 ms prefill per token, 45 ms per output token, 512
// blocks of 16 tokens), a shared-prefix workload (8 groups, each a long
// system prompt and 4 users, 50 output tokens, Poisson arrivals at rising
// rates, TOLLGATE_BENCH_REQUESTS (200) per rate), comparing
// Envoy's round robin and least request with the picker without and with
// its prefix scorer (its default: latency scoring with learned figures),
// and, only when named in TOLLGATE_BENCH_POLICIES, picker-weights
// ("scoring": "weights"), picker-learned ("scoring": "latency" spelled
// out; it also prints what it learned) and picker-latency (the simulators'
// figures configured) (TOLLGATE_BENCH_POLICIES and TOLLGATE_BENCH_RATES,
// comma-separated, pick
// a subset). Each cell also reports the requests each server served. TOLLGATE_BENCH_SCALE (default 0.25) runs the
// simulators that much faster with rates divided by it, so the schedule is
// the same; reported times are in simulated seconds.
func TestBenchScheduling(t *testing.T) {
	if os.Getenv("TOLLGATE_BENCH_PICKER") != "1" {
		t.Skip("set TOLLGATE_BENCH_PICKER=1 to run the scheduling benchmark")
	}
	scale := 0.25
	if v := os.Getenv("TOLLGATE_BENCH_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		require.NoError(t, err)
		scale = f
	}
	rates := []float64{2, 4, 6, 8, 10}
	if v := os.Getenv("TOLLGATE_BENCH_RATES"); v != "" {
		rates = nil
		for _, s := range strings.Split(v, ",") {
			f, err := strconv.ParseFloat(s, 64)
			require.NoError(t, err)
			rates = append(rates, f)
		}
	}
	perRate := 200
	if v := os.Getenv("TOLLGATE_BENCH_REQUESTS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		perRate = n
	}
	groups := workload(8, 4, 1100)
	policies := []string{"round-robin", "least-request", "picker-no-prefix", "picker"}
	if v := os.Getenv("TOLLGATE_BENCH_POLICIES"); v != "" {
		policies = strings.Split(v, ",")
	}
	fmt.Printf("| rate | policy | p50 TTFT | p90 TTFT | TTFT > 0.3 s | output tok/s | prefix-cache hits | errors | served per server |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, rate := range rates {
		for _, pol := range policies {
			res := runPolicy(t, pol, groups, rate, perRate, scale)
			fmt.Printf("| %.0f req/s | %s | %.2f s | %.2f s | %.0f%% | %.0f | %.0f%% | %d | %s |\n",
				rate, pol, res.p50, res.p90, 100*res.slow, res.tokPerSec, 100*res.hitRate, res.errors, res.spread)
		}
	}
}

// group is one shared-prefix group: a system prompt and its users' questions.
type group struct {
	system    string
	questions []string
}

// workload builds groups with systemWords-word system prompts of short words
// (one token each under the mock's tokenizer).
func workload(groups, users, systemWords int) []group {
	r := rand.New(rand.NewPCG(7, 11))
	const letters = "abcdefghijklmnopqrstuvwxyz"
	word := func() string {
		n := 3 + r.IntN(4)
		b := make([]byte, n)
		for i := range b {
			b[i] = letters[r.IntN(len(letters))]
		}
		return string(b)
	}
	out := make([]group, groups)
	for g := range out {
		var sb strings.Builder
		for i := 0; i < systemWords; i++ {
			sb.WriteString(word())
			sb.WriteByte(' ')
		}
		out[g].system = sb.String()
		for u := 0; u < users; u++ {
			var q strings.Builder
			for i := 0; i < 40; i++ {
				q.WriteString(word())
				q.WriteByte(' ')
			}
			out[g].questions = append(out[g].questions, q.String())
		}
	}
	return out
}

// benchResult summarises one policy at one rate.
type benchResult struct {
	p50, p90  float64 // simulated seconds
	slow      float64 // share of requests with a TTFT over 0.3 s (half a cold prefill): cold or queued
	tokPerSec float64 // simulated
	hitRate   float64
	errors    int
	spread    string // requests served by each server
}

func runPolicy(t *testing.T, policy string, groups []group, rate float64, n int, scale float64) benchResult {
	t.Helper()
	sims := startSims(t, 4, same(mockllm.SimOptions{MaxNumSeqs: 4, PrefillPerToken: 500 * time.Microsecond,
		Overhead: 20 * time.Millisecond, ITL: 45 * time.Millisecond, NumBlocks: 512, BlockSize: 16, TimeScale: scale}))
	var e *envoytest.Envoy
	switch policy {
	case "round-robin", "least-request":
		e = startPlainEnvoy(t, sims, map[string]string{"round-robin": "ROUND_ROBIN", "least-request": "LEAST_REQUEST"}[policy])
	case "picker-no-prefix":
		// The default scoring with the prefix index out of the pick: a
		// prefix weight of 0 matches nothing and records nothing, in
		// latency scoring too (pick.TestPrefixWeightZeroIgnoresIndex).
		e = startEnvoy(t, sims, modeOriginalDst, pickerConfig(sims, `,"fallbacks":0,"weights":{"prefix":0}`))
		waitScraped(t, e, sims)
	case "picker-latency":
		// Latency scoring with the simulators' own figures at the bench
		// scale: 4 slots, a request holds one for about 2.4 simulated
		// seconds (49 × 45 ms decode plus prefill), a 64-byte prompt block
		// costs about 5.4 ms of prefill; cold weights at their defaults.
		lat := fmt.Sprintf(`,"fallbacks":0,"scoring":"latency","latency":{"max_num_seqs":4,"service_time":"%v","prefill_per_block":"%v"}`,
			time.Duration(2.4*scale*float64(time.Second)), time.Duration(5.4*scale*float64(time.Millisecond)))
		e = startEnvoy(t, sims, modeOriginalDst, pickerConfig(sims, lat))
		waitScraped(t, e, sims)
	case "picker-learned":
		// Latency scoring with nothing configured: the batch limit, service
		// time and prefill time are learned online.
		e = startEnvoy(t, sims, modeOriginalDst, pickerConfig(sims, `,"fallbacks":0,"scoring":"latency"`))
		waitScraped(t, e, sims)
	case "picker-weights":
		e = startEnvoy(t, sims, modeOriginalDst, pickerConfig(sims, `,"fallbacks":0,"scoring":"weights"`))
		waitScraped(t, e, sims)
	case "picker":
		e = startEnvoy(t, sims, modeOriginalDst, pickerConfig(sims, `,"fallbacks":0`))
		waitScraped(t, e, sims)
	default:
		t.Fatalf("unknown policy %q", policy)
	}
	client := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}
	r := rand.New(rand.NewPCG(uint64(rate*1000), 3))
	var (
		mu     sync.Mutex
		ttfts  []float64
		tokens int
		errs   int
		wg     sync.WaitGroup
	)
	start := time.Now()
	next := start
	for i := 0; i < n; i++ {
		g := groups[r.IntN(len(groups))]
		q := g.questions[r.IntN(len(g.questions))]
		wait := time.Until(next)
		if wait > 0 {
			tm := time.NewTimer(wait)
			<-tm.C
		}
		next = next.Add(time.Duration(r.ExpFloat64() / (rate / scale) * float64(time.Second)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			ttft, out, err := streamChat(client, e.URL("/v1/chat/completions"), g.system, q)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
				return
			}
			ttfts = append(ttfts, ttft.Seconds()/scale)
			tokens += out
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds() / scale
	var hits, queries float64
	var spread []string
	for _, s := range sims {
		h, q, n := prefixCounters(t, s)
		hits += h
		queries += q
		spread = append(spread, strconv.Itoa(int(n)))
	}
	slices.Sort(ttfts)
	res := benchResult{tokPerSec: float64(tokens) / elapsed, errors: errs, spread: strings.Join(spread, "/")}
	if policy == "picker-learned" || policy == "picker" {
		// What the picker learned, per server, in simulated time.
		learned, _ := e.StatsMatching(`tollgate_picker\.learned_`)
		var seqs, svc, ppb []string
		for _, s := range sims {
			ep := strings.NewReplacer(".", "_", ":", "_").Replace(s.addr)
			for _, f := range []struct {
				kind string
				into *[]string
				unit float64
			}{{"max_num_seqs", &seqs, 1}, {"service_time_ms", &svc, scale}, {"prefill_per_block_us", &ppb, scale}} {
				for name, v := range learned {
					if strings.Contains(name, "learned_"+f.kind) && strings.HasSuffix(name, ep) {
						*f.into = append(*f.into, strconv.FormatFloat(float64(v)/f.unit, 'f', 0, 64))
					}
				}
			}
		}
		if len(seqs) > 0 {
			res.spread += fmt.Sprintf(" (learned seqs %s, service %s ms, prefill/block %s µs)", strings.Join(seqs, "/"), strings.Join(svc, "/"), strings.Join(ppb, "/"))
		}
	}
	if len(ttfts) > 0 {
		for _, v := range ttfts {
			if v > 0.3 {
				res.slow++
			}
		}
		res.slow /= float64(len(ttfts))
		res.p50 = ttfts[len(ttfts)/2]
		res.p90 = ttfts[int(math.Ceil(0.9*float64(len(ttfts))))-1]
	}
	if queries > 0 {
		res.hitRate = hits / queries
	}
	return res
}

// streamChat sends one streamed chat and returns the time to the first
// event and the completion tokens.
func streamChat(c *http.Client, url, system, question string) (time.Duration, int, error) {
	body, _ := json.Marshal(map[string]any{
		"model": "m", "max_tokens": 50, "stream": true, "stream_options": map[string]any{"include_usage": true},
		"messages": []any{map[string]any{"role": "system", "content": system}, map[string]any{"role": "user", "content": question}},
	})
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("content-type", "application/json")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return 0, 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var ttft time.Duration
	out := 0
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		if ttft == 0 {
			ttft = time.Since(start)
		}
		if i := strings.Index(line, `"completion_tokens":`); i >= 0 {
			rest := line[i+len(`"completion_tokens":`):]
			j := strings.IndexAny(rest, ",}")
			out, _ = strconv.Atoi(rest[:j])
		}
	}
	return ttft, out, sc.Err()
}

// prefixCounters reads a simulator's prefix-cache hit and query counters and its served requests.
func prefixCounters(t *testing.T, s *sim) (hits, queries, served float64) {
	t.Helper()
	resp, err := http.Get(s.hs.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		switch {
		case strings.HasPrefix(line, "vllm:prefix_cache_hits_total"):
			hits = v
		case strings.HasPrefix(line, "vllm:prefix_cache_queries_total"):
			queries = v
		case strings.HasPrefix(line, "vllm:request_success_total"):
			served += v
		}
	}
	return hits, queries, served
}

// startPlainEnvoy is Envoy without the picker, balancing over sims with lb.
func startPlainEnvoy(t *testing.T, sims []*sim, lb string) *envoytest.Envoy {
	t.Helper()
	var lbs []any
	for _, s := range sims {
		host, port, _ := strings.Cut(s.addr, ":")
		p, _ := strconv.Atoi(port)
		lbs = append(lbs, map[string]any{"endpoint": map[string]any{"address": map[string]any{
			"socket_address": map[string]any{"address": host, "port_value": p}}}})
	}
	cluster := map[string]any{
		"name": "sim", "connect_timeout": "0.5s", "type": "STATIC", "lb_policy": lb,
		"load_assignment": map[string]any{"cluster_name": "sim", "endpoints": []any{map[string]any{"lb_endpoints": lbs}}},
	}
	return envoytest.Start(t, envoytest.Config{
		Routes: []envoytest.Route{{Prefix: "/", Cluster: "sim"}},
		Customize: func(b map[string]any) {
			sr := b["static_resources"].(map[string]any)
			sr["clusters"] = append(sr["clusters"].([]any), cluster)
			setRoute(b, map[string]any{"timeout": "300s"})
		},
	})
}

// BenchmarkPickerAddedLatency measures what the picker adds per request:
// each iteration sends the same chat request (a 6 KB shared system prompt,
// one output token, simulators with no delays) through an Envoy whose
// ORIGINAL_DST cluster gets a fixed endpoint from the client's header, and
// through the same Envoy setup with the picker choosing among 4
// endpoints, with its default latency scoring (learning its figures) and
// with "scoring": "weights", alternating. Reported: fixed-p50-us,
// picker-p50-us and added-p50-us (the default), weights-p50-us and
// weights-added-p50-us.
//
//	go test -run '^$' -bench PickerAddedLatency ./e2e/picker/
func BenchmarkPickerAddedLatency(b *testing.B) {
	sims := startSims(b, 4, same(mockllm.SimOptions{TimeScale: 1e-6}))
	fixed := startEnvoy(b, sims, modeOriginalDst, "")
	picked := startEnvoy(b, sims, modeOriginalDst, pickerConfig(sims, `,"fallbacks":0`))
	waitScraped(b, picked, sims)
	weights := startEnvoy(b, sims, modeOriginalDst, pickerConfig(sims, `,"fallbacks":0,"scoring":"weights"`))
	waitScraped(b, weights, sims)
	g := workload(1, 4, 1100)[0]
	body, _ := json.Marshal(map[string]any{
		"model": "m", "max_tokens": 1,
		"messages": []any{map[string]any{"role": "system", "content": g.system}, map[string]any{"role": "user", "content": g.questions[0]}},
	})
	send := func(e *envoytest.Envoy, hdr string) time.Duration {
		req, err := http.NewRequest(http.MethodPost, e.URL("/v1/chat/completions"), bytes.NewReader(body))
		require.NoError(b, err)
		req.Header.Set("content-type", "application/json")
		if hdr != "" {
			req.Header.Set(destHeader, hdr)
		}
		start := time.Now()
		resp, err := e.Client().Do(req)
		require.NoError(b, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(b, 200, resp.StatusCode)
		return time.Since(start)
	}
	var tf, tp, tw []time.Duration
	for b.Loop() {
		tf = append(tf, send(fixed, sims[0].addr))
		tp = append(tp, send(picked, ""))
		tw = append(tw, send(weights, ""))
	}
	med := func(ts []time.Duration) float64 {
		slices.Sort(ts)
		return float64(ts[len(ts)/2].Microseconds())
	}
	f, p, w := med(tf), med(tp), med(tw)
	b.ReportMetric(f, "fixed-p50-us")
	b.ReportMetric(p, "picker-p50-us")
	b.ReportMetric(p-f, "added-p50-us")
	b.ReportMetric(w, "weights-p50-us")
	b.ReportMetric(w-f, "weights-added-p50-us")
}
