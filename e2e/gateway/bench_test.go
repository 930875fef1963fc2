package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/scripts/run-demo/demo"
)

// Full-chain benchmark: bare Envoy, Envoy with the example chain as
// separate filters in one VM ("chain") and as the suite's one fused filter
// ("fused"), in the same run, in front of the same in-process mock model
// server and keystore.
//
//	TOLLGATE_BENCH_ROUNDS=5 go test -run '^$' -bench FullChain -benchtime 2000x ./e2e/gateway/
//
// Each sub-benchmark sends b.N requests from 1 and from
// TOLLGATE_BENCH_CONCURRENCY (default 8) closed-loop clients, each on its
// own connection, and reports req/s and the
// p50 / p99 round trip (for streams also the time to the first byte).
// BenchmarkChainMemory reports Envoy's resident memory after
// TOLLGATE_BENCH_REQUESTS (default 100000) requests; see docs/benchmarks.md.

// benchEnv reads a positive integer from the environment.
func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// loadResult is what a load run measured.
type loadResult struct {
	n       int
	elapsed time.Duration
	total   []time.Duration // request sent → last byte read
	first   []time.Duration // request sent → first body byte
	status  map[int]int
}

// quantile returns the q-quantile of sorted durations.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[int(q*float64(len(d)-1))]
}

// report adds the run's numbers to the benchmark output.
func (r loadResult) report(b *testing.B, stream bool) {
	b.ReportMetric(float64(r.n)/r.elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(quantile(r.total, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(quantile(r.total, 0.99).Microseconds()), "p99-µs")
	if stream {
		b.ReportMetric(float64(quantile(r.first, 0.5).Microseconds()), "ttfb-p50-µs")
	}
	b.ReportMetric(0, "ns/op") // wall time per op is meaningless with concurrent clients
}

// request is one benchmark request shape.
type request struct {
	path, body string
	stream     bool
}

// benchRequests are the shapes measured: a short chat completion, JSON and
// streamed, and a JSON one with a 16 KiB prompt. llama-3.1-8b is not rewritten by modelroute, so bare Envoy and
// the chain send the upstream byte-identical bodies and get identical replies.
func benchRequests() map[string]request {
	msgs := `"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the gateway in one line."}]`
	// A 16 KiB prompt: the body parse shows (issue #11: about 16 µs per KiB).
	long := func(kib int) string {
		return `"messages":[{"role":"user","content":"` + strings.Repeat("Summarise the gateway in one line. ", kib<<10/35) + `"}]`
	}
	return map[string]request{
		"json":    {path: "/v1/chat/completions", body: `{"model":"llama-3.1-8b",` + msgs + `,"max_tokens":16}`},
		"json16k": {path: "/v1/chat/completions", body: `{"model":"llama-3.1-8b",` + long(16) + `,"max_tokens":16}`},
		"json64k": {path: "/v1/chat/completions", body: `{"model":"llama-3.1-8b",` + long(64) + `,"max_tokens":16}`},
		"stream":  {path: "/v1/chat/completions", body: `{"model":"llama-3.1-8b",` + msgs + `,"max_tokens":16,"stream":true}`, stream: true},
	}
}

// runLoad sends n requests to base+req.path from conc clients, each on its
// own connection, and measures every round trip.
func runLoad(ctx context.Context, base, key string, req request, n, conc int) (loadResult, error) {
	var next atomic.Int64
	res, err := drive(ctx, base, key, req, conc, func() bool { return next.Add(1) <= int64(n) })
	if err == nil && res.status[http.StatusOK] != n {
		err = fmt.Errorf("not every request succeeded: %v", res.status)
	}
	return res, err
}

// drive runs conc closed-loop clients, each on its own connection, while
// more says so; a request cut off because ctx ended is not counted.
func drive(ctx context.Context, base, key string, req request, conc int, more func() bool) (loadResult, error) {
	res := loadResult{status: map[int]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errc := make(chan error, conc)
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 60 * time.Second}
			var total, first []time.Duration
			status := map[int]int{}
			buf := make([]byte, 32<<10)
			defer func() {
				mu.Lock()
				res.total = append(res.total, total...)
				res.first = append(res.first, first...)
				for k, v := range status {
					res.status[k] += v
				}
				mu.Unlock()
			}()
			for more() {
				r, err := http.NewRequestWithContext(ctx, http.MethodPost, base+req.path, strings.NewReader(req.body))
				if err != nil {
					errc <- err
					return
				}
				r.Header.Set("Content-Type", "application/json")
				if key != "" {
					r.Header.Set("Authorization", "Bearer "+key)
				}
				t0 := time.Now()
				resp, err := c.Do(r)
				if err != nil {
					if ctx.Err() == nil {
						errc <- err
					}
					return
				}
				var tFirst time.Duration
				for {
					k, err := resp.Body.Read(buf)
					if k > 0 && tFirst == 0 {
						tFirst = time.Since(t0)
					}
					if err == io.EOF {
						break
					}
					if err != nil {
						resp.Body.Close()
						if ctx.Err() == nil {
							errc <- fmt.Errorf("read body: %w", err)
						}
						return
					}
				}
				resp.Body.Close()
				total = append(total, time.Since(t0))
				first = append(first, tFirst)
				status[resp.StatusCode]++
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	close(errc)
	if err := <-errc; err != nil {
		return res, err
	}
	res.n = len(res.total)
	slices.Sort(res.total)
	slices.Sort(res.first)
	return res, nil
}

// benchStack is the chain (separate filters in one VM), the same chain as
// the one fused filter, and a bare Envoy, on the same upstream and keystore.
type benchStack struct {
	*stack
	bare  *envoytest.Envoy
	fused *envoytest.Envoy
}

func startBenchStack(b *testing.B) *benchStack {
	b.Helper()
	s := startStack(b, false)
	bare := envoytest.Start(b, envoytest.Config{
		Clusters: []envoytest.Cluster{{Name: "upstream", Addr: s.up.srv.Listener.Addr().String()}},
		Routes:   []envoytest.Route{{Prefix: "/", Cluster: "upstream", Timeout: 300 * time.Second}},
	})
	fused := envoytest.Start(b, envoytest.Config{YAML: renderGateway(b, fusedExample, s.keystore.data, s.upstreamSpec(b)),
		ListenerName: "gateway", StartTimeout: 3 * time.Minute})
	return &benchStack{stack: s, bare: bare, fused: fused}
}

// benchTarget is one Envoy of BenchmarkFullChain.
type benchTarget struct {
	name string
	e    *envoytest.Envoy
	key  string
}

// fullChainTargets are BenchmarkFullChain's Envoys: "bare" (a minimal
// Envoy: one route, no access log), "bare-gw" (the shipped gateway with the
// Tollgate filter cut out: its access log, header_to_metadata, path
// normalisation and header removal, i.e. what the product's own Envoy
// configuration costs), "chain" (four filters, one VM), "fused" (as
// shipped) and, with TOLLGATE_BENCH_BEFORE=<dir>, "fused-before" (the
// shipped gateway loading <dir>/tollgate.wasm). TOLLGATE_BENCH_TARGETS
// (comma-separated names) keeps only some; "bare" always runs.
func fullChainTargets(b *testing.B, s *benchStack) []benchTarget {
	b.Helper()
	key := s.keys["bench"]
	gw := func(yaml string) *envoytest.Envoy {
		return envoytest.Start(b, envoytest.Config{YAML: yaml, ListenerName: "gateway", StartTimeout: 3 * time.Minute})
	}
	want := func(name string) bool {
		only := os.Getenv("TOLLGATE_BENCH_TARGETS")
		return only == "" || slices.Contains(strings.Split(only, ","), name)
	}
	targets := []benchTarget{{"bare", s.bare, ""}}
	if want("bare-gw") {
		filters := renderGateway(b, filtersExample, s.keystore.data, s.upstreamSpec(b))
		targets = append(targets, benchTarget{"bare-gw", gw(onlyFilter(b, filters, "")), ""})
	}
	if want("chain") {
		targets = append(targets, benchTarget{"chain", s.envoy, key})
	}
	if want("fused") {
		targets = append(targets, benchTarget{"fused", s.fused, key})
	}
	if before := os.Getenv("TOLLGATE_BENCH_BEFORE"); before != "" && want("fused-before") {
		fused := renderGateway(b, fusedExample, s.keystore.data, s.upstreamSpec(b))
		targets = append(targets, benchTarget{"fused-before", gw(withModulePath(b, fused, filepath.Join(before, "tollgate.wasm"))), key})
	}
	return targets
}

func BenchmarkFullChain(b *testing.B) {
	s := startBenchStack(b)
	conc := benchEnv("TOLLGATE_BENCH_CONCURRENCY", 8)
	targets := fullChainTargets(b, s)
	// Warm all: the chain's key cache, every worker's VMs, connections.
	for _, req := range benchRequests() {
		for _, tg := range targets {
			if _, err := runLoad(b.Context(), "http://"+tg.e.ListenerAddr(), tg.key, req, 200, conc); err != nil {
				b.Fatalf("warm-up %s: %v", tg.name, err)
			}
		}
	}
	// Rounds interleave the targets, so that a noisy machine slows all of
	// them alike; compare medians over rounds.
	for range benchEnv("TOLLGATE_BENCH_ROUNDS", 1) {
		for _, shape := range []string{"json", "stream", "json16k"} {
			req := benchRequests()[shape]
			for _, c := range []int{1, conc} {
				for _, tg := range targets {
					b.Run(fmt.Sprintf("%s/c%d/%s", shape, c, tg.name), func(b *testing.B) {
						cpu0, cerr := tg.e.CPUTime()
						res, err := runLoad(b.Context(), "http://"+tg.e.ListenerAddr(), tg.key, req, b.N, c)
						if err != nil {
							b.Fatal(err)
						}
						res.report(b, req.stream)
						// Envoy's own CPU time per request (all its threads):
						// on a shared machine it moves less than latency.
						if cpu1, err := tg.e.CPUTime(); err == nil && cerr == nil {
							b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/1e3/float64(b.N), "envoy-cpu-µs/req")
						}
					})
				}
			}
		}
	}
	// Each Envoy after the same requests: resident memory and live VMs.
	for _, tg := range targets {
		b.Logf("%-6s RSS %.1f MiB, %d Wasm VMs", tg.name, rssMiB(b, tg.e), activeVMs(tg.e))
	}
}

// rssMiB is an Envoy's resident memory in MiB.
func rssMiB(b *testing.B, e *envoytest.Envoy) float64 {
	b.Helper()
	v, err := e.RSS()
	if err != nil {
		b.Fatal(err)
	}
	return float64(v) / (1 << 20)
}

// activeVMs is the number of live Wasm VMs Envoy reports.
func activeVMs(e *envoytest.Envoy) uint64 {
	v, _ := e.StatsValue("wasm.envoy.wasm.runtime.v8.active")
	return v
}

// chainFilters are the Tollgate filters of the shipped chain, in order.
var chainFilters = []string{"apikey", "quota", "modelroute", "tokencount"}

// fourModules turns the shipped configuration (every filter in the suite
// module's one VM) into the pre-suite shape: each filter its own module and
// vm_id, so benchmarks compare both in one run.
func fourModules(t testing.TB, yaml string) string {
	t.Helper()
	for _, f := range chainFilters {
		i := strings.Index(yaml, "vm_id: tollgate\n")
		j := strings.Index(yaml, "/tollgate.wasm")
		if i < 0 || j < 0 {
			t.Fatalf("the rendered gateway has no suite vm_config left for %s", f)
		}
		yaml = yaml[:i] + "vm_id: tollgate-" + f + "\n" + yaml[i+len("vm_id: tollgate\n"):]
		j = strings.Index(yaml, "/tollgate.wasm")
		yaml = yaml[:j] + "/" + f + ".wasm" + yaml[j+len("/tollgate.wasm"):]
	}
	return yaml
}

// BenchmarkChainMemory measures what the chain costs in memory: bare Envoy,
// the shipped chain as separate filters in the suite module (one VM per
// worker) with one and with two workers, the fused filter with two, and
// the same chain as four separate modules (the first
// wave's shape), each after a warm-up and then after
// TOLLGATE_BENCH_REQUESTS requests (JSON and streamed alternately).
//
//	TOLLGATE_BENCH_MEMORY=1 go test -run '^$' -bench ChainMemory -benchtime 1x -timeout 60m ./e2e/gateway/
//
// It takes minutes, so `make bench` (every benchmark, five times) leaves it
// out unless TOLLGATE_BENCH_MEMORY=1.
func BenchmarkChainMemory(b *testing.B) {
	if os.Getenv("TOLLGATE_BENCH_MEMORY") != "1" {
		b.Skip("set TOLLGATE_BENCH_MEMORY=1 to run the memory benchmark (several minutes)")
	}
	s := startBenchStack(b)
	total := benchEnv("TOLLGATE_BENCH_REQUESTS", 100_000)
	conc := benchEnv("TOLLGATE_BENCH_CONCURRENCY", 8)
	suiteYAML := renderGateway(b, filtersExample, s.keystore.data, s.upstreamSpec(b))
	one := envoytest.Start(b, envoytest.Config{YAML: suiteYAML, ListenerName: "gateway",
		Concurrency: 1, StartTimeout: 3 * time.Minute})
	four := envoytest.Start(b, envoytest.Config{YAML: fourModules(b, suiteYAML), ListenerName: "gateway", StartTimeout: 3 * time.Minute})
	fourOne := envoytest.Start(b, envoytest.Config{YAML: fourModules(b, suiteYAML), ListenerName: "gateway",
		Concurrency: 1, StartTimeout: 3 * time.Minute})

	type target struct {
		name string
		e    *envoytest.Envoy
		key  string
		load bool // gets the full request count
	}
	targets := []target{
		{"bare-2w", s.bare, "", true},
		{"suite-1w", one, s.keys["bench"], true},
		{"suite-2w", s.envoy, s.keys["bench"], true},
		{"fused-2w", s.fused, s.keys["bench"], true},
		{"four-modules-1w", fourOne, s.keys["bench"], true},
		{"four-modules-2w", four, s.keys["bench"], true},
	}
	reqs := benchRequests()
	for b.Loop() {
		var rows bytes.Buffer
		w := bufio.NewWriter(&rows)
		fmt.Fprintf(w, "%-20s %8s %12s %12s %12s\n", "envoy", "wasm VMs", "RSS warm MiB", "RSS end MiB", "requests")
		for _, tg := range targets {
			base := "http://" + tg.e.ListenerAddr()
			for _, r := range reqs {
				if _, err := runLoad(b.Context(), base, tg.key, r, 500, conc); err != nil {
					b.Fatalf("%s warm-up: %v", tg.name, err)
				}
			}
			warm := rssMiB(b, tg.e)
			sent := 1000
			if tg.load {
				half := (total - sent) / 2
				for _, shape := range []string{"json", "stream"} {
					if _, err := runLoad(b.Context(), base, tg.key, reqs[shape], half, conc); err != nil {
						b.Fatalf("%s load: %v", tg.name, err)
					}
					sent += half
				}
			}
			end := rssMiB(b, tg.e)
			fmt.Fprintf(w, "%-20s %8d %12.1f %12.1f %12d\n", tg.name, activeVMs(tg.e), warm, end, sent)
			b.ReportMetric(end, tg.name+"-RSS-MiB")
		}
		w.Flush()
		b.Logf("resident memory:\n%s", rows.String())
	}
}

// BenchmarkChainStartup measures how long Envoy takes from exec to LIVE
// with the shipped chain as the suite module and as four modules (mostly
// V8 compiling Wasm), against bare Envoy, started in turn, median of
// TOLLGATE_BENCH_STARTS (default 3) starts each.
//
//	TOLLGATE_BENCH_STARTUP=1 go test -run '^$' -bench ChainStartup -benchtime 1x ./e2e/gateway/
func BenchmarkChainStartup(b *testing.B) {
	if os.Getenv("TOLLGATE_BENCH_STARTUP") != "1" {
		b.Skip("set TOLLGATE_BENCH_STARTUP=1 to run the start-up benchmark (a minute or more)")
	}
	s := startBenchStack(b)
	suiteYAML := renderGateway(b, filtersExample, s.keystore.data, s.upstreamSpec(b))
	configs := []struct {
		name string
		cfg  envoytest.Config
	}{
		{"bare", envoytest.Config{
			Clusters: []envoytest.Cluster{{Name: "upstream", Addr: s.up.srv.Listener.Addr().String()}},
			Routes:   []envoytest.Route{{Prefix: "/", Cluster: "upstream"}},
		}},
		{"suite", envoytest.Config{YAML: suiteYAML, ListenerName: "gateway", StartTimeout: 3 * time.Minute}},
		{"fused", envoytest.Config{YAML: renderGateway(b, fusedExample, s.keystore.data, s.upstreamSpec(b)), ListenerName: "gateway", StartTimeout: 3 * time.Minute}},
		{"four-modules", envoytest.Config{YAML: fourModules(b, suiteYAML), ListenerName: "gateway", StartTimeout: 3 * time.Minute}},
	}
	starts := benchEnv("TOLLGATE_BENCH_STARTS", 3)
	for b.Loop() {
		took := map[string][]time.Duration{}
		for range starts {
			for _, c := range configs {
				t0 := time.Now()
				e := envoytest.Start(b, c.cfg)
				took[c.name] = append(took[c.name], time.Since(t0))
				e.Stop()
			}
		}
		for _, c := range configs {
			d := took[c.name]
			slices.Sort(d)
			med := d[len(d)/2]
			b.ReportMetric(med.Seconds(), c.name+"-start-s")
			b.Logf("%-13s start to LIVE, median of %d: %v (all: %v)", c.name, len(d), med.Round(time.Millisecond), d)
		}
	}
}

// upstreamSpec is the mock upstream as a render option.
func (s *stack) upstreamSpec(t testing.TB) demo.Upstream {
	t.Helper()
	host, port := s.up.hostPort(t)
	return demo.Upstream{Host: host, Port: port}
}

// keystoreDataCalls sums the keystore's own count of data-plane requests
// (tollgate_keystore_http_requests_total{server="data"}), leaving out the
// scrape of /metrics itself.
func keystoreDataCalls(ctx context.Context, ks *keystoreProc) (int64, map[string]int64, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ks.data+"/metrics", nil)
	if err != nil {
		return 0, nil, err
	}
	r.Header.Set("Authorization", "Bearer "+testDataToken)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return 0, nil, fmt.Errorf("scrape keystore: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("scrape keystore: status %d", resp.StatusCode)
	}
	var total int64
	byRoute := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, `tollgate_keystore_http_requests_total{server="data"`) || strings.Contains(line, `route="GET /metrics"`) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		n, err := strconv.ParseInt(line[i+1:], 10, 64)
		if err != nil {
			return 0, nil, fmt.Errorf("scrape keystore: %q: %w", line, err)
		}
		total += n
		if _, rest, ok := strings.Cut(line, `route="`); ok {
			route, _, _ := strings.Cut(rest, `"`)
			byRoute[route] += n
		}
	}
	return total, byRoute, sc.Err()
}

// BenchmarkSustained holds TOLLGATE_BENCH_CONCURRENCY (8) clients on bare
// Envoy and then on the chain for TOLLGATE_BENCH_SECONDS (60) each, with the
// keystore on the same host, and reports req/s, latency and the keystore's
// data-plane calls per second and per request at steady state (from the
// keystore's own metrics). Gated by TOLLGATE_BENCH_SUSTAINED=1:
//
//	TOLLGATE_BENCH_SUSTAINED=1 go test -run '^$' -bench Sustained -benchtime 1x -timeout 10m ./e2e/gateway/
func BenchmarkSustained(b *testing.B) {
	if os.Getenv("TOLLGATE_BENCH_SUSTAINED") != "1" {
		b.Skip("set TOLLGATE_BENCH_SUSTAINED=1 to run the sustained-load benchmark")
	}
	s := startBenchStack(b)
	conc := benchEnv("TOLLGATE_BENCH_CONCURRENCY", 8)
	secs := benchEnv("TOLLGATE_BENCH_SECONDS", 60)
	req := benchRequests()["json"]
	key := s.keys["bench"]
	for _, target := range []string{"bare", "chain"} {
		base, k := "http://"+s.bare.ListenerAddr(), ""
		if target == "chain" {
			base, k = "http://"+s.envoy.ListenerAddr(), key
		}
		if _, err := runLoad(b.Context(), base, k, req, 500, conc); err != nil {
			b.Fatalf("warm-up %s: %v", target, err)
		}
		b.Run(target, func(b *testing.B) {
			before, beforeRoutes, err := keystoreDataCalls(b.Context(), s.keystore)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(b.Context(), time.Duration(secs)*time.Second)
			defer cancel()
			res, err := runFor(ctx, base, k, req, conc)
			if err != nil {
				b.Fatal(err)
			}
			after, afterRoutes, err := keystoreDataCalls(b.Context(), s.keystore)
			if err != nil {
				b.Fatal(err)
			}
			for route, n := range afterRoutes {
				if d := n - beforeRoutes[route]; d > 0 {
					b.Logf("%s: keystore %s: %.1f calls/s", target, route, float64(d)/res.elapsed.Seconds())
				}
			}
			res.report(b, false)
			calls := float64(after - before)
			b.ReportMetric(calls/res.elapsed.Seconds(), "keystore-calls/s")
			b.ReportMetric(calls/float64(res.n), "keystore-calls/req")
		})
	}
}

// runFor is runLoad bounded by ctx's deadline instead of a request count:
// requests are sent until the deadline, and those cut off by it are not
// counted.
func runFor(ctx context.Context, base, key string, req request, conc int) (loadResult, error) {
	res, err := drive(ctx, base, key, req, conc, func() bool { return ctx.Err() == nil })
	if err == nil && (res.n == 0 || res.status[http.StatusOK] != res.n) {
		err = fmt.Errorf("not every request succeeded: %v", res.status)
	}
	return res, err
}
