package gateway_test

import (
	"bufio"
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

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

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
// (comma-separated names) keeps only some; "bare" always runs;
// "fused-norelease" (gateway.yaml without memory_allocator_manager) runs
// only when named there.
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
	// Only when asked for by name: the shipped gateway without its
	// allocator release, to show what the release costs per request.
	if strings.Contains(","+os.Getenv("TOLLGATE_BENCH_TARGETS")+",", ",fused-norelease,") {
		fused := renderGateway(b, fusedExample, s.keystore.data, s.upstreamSpec(b))
		targets = append(targets, benchTarget{"fused-norelease", gw(withoutRelease(b, fused)), key})
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

// BenchmarkChainMemory measures what the chain costs in memory, and what
// that memory is made of. Each Envoy starts in turn, alone: bare, a no-op
// Go module (build/hello.wasm), the suite module with one plugin
// (modelroute), the shipped fused chain (gateway.yaml) with and without its
// allocator release (memory_allocator_manager), and the chain as separate
// filters (gateway-filters.yaml), each with one and with two workers;
// TOLLGATE_BENCH_FOUR=1 adds the chain as four modules (the first wave's
// shape), TOLLGATE_BENCH_BEFORE=<dir> the fused chain loading
// <dir>/tollgate.wasm ("fused-before"), and TOLLGATE_BENCH_TARGETS
// (comma-separated: bare, hello, suite-modelroute, fused-norelease, fused,
// fused-before, filters, four-modules) keeps only those. Each is measured 3 s after LIVE, after a warm-up and
// TOLLGATE_BENCH_REQUESTS requests (JSON and streamed alternately), and
// again 5 s later: RSS, and its parts (envoytest.Memory): tcmalloc's live
// allocations, its free pages and caches, V8's code space, files, the rest.
//
//	TOLLGATE_BENCH_MEMORY=1 go test -run '^$' -bench ChainMemory -benchtime 1x -timeout 60m ./e2e/gateway/
//
// It takes minutes, so `make bench` (every benchmark, five times) leaves it
// out unless TOLLGATE_BENCH_MEMORY=1.
func BenchmarkChainMemory(b *testing.B) {
	if os.Getenv("TOLLGATE_BENCH_MEMORY") != "1" {
		b.Skip("set TOLLGATE_BENCH_MEMORY=1 to run the memory benchmark (several minutes)")
	}
	s := startStack(b, false)
	total := benchEnv("TOLLGATE_BENCH_REQUESTS", 100_000)
	conc := benchEnv("TOLLGATE_BENCH_CONCURRENCY", 8)
	up := s.upstreamSpec(b)
	fused := renderGateway(b, fusedExample, s.keystore.data, up)
	filters := renderGateway(b, filtersExample, s.keystore.data, up)
	module := func(file, root, config string) envoytest.Config {
		return moduleConfig(b, s, 300*time.Second, file, root, config)
	}
	type target struct {
		name string
		cfg  envoytest.Config
		key  string
	}
	var targets []target
	only := os.Getenv("TOLLGATE_BENCH_TARGETS")
	add := func(name string, cfg envoytest.Config, key string) {
		if only != "" && !slices.Contains(strings.Split(only, ","), name) {
			return
		}
		for _, w := range []int{1, 2} {
			c := cfg
			c.Concurrency = w
			targets = append(targets, target{fmt.Sprintf("%s-%dw", name, w), c, key})
		}
	}
	key := s.keys["bench"]
	add("bare", bareConfig(s, 300*time.Second), "")
	add("hello", module("hello", "hello", ""), "")
	add("suite-modelroute", module("tollgate", "modelroute", `{"models":[{"name":"llama-3.1-8b","route":"pool-a"}]}`), "")
	add("fused-norelease", gatewayConfig(withoutRelease(b, fused)), key)
	add("fused", gatewayConfig(fused), key)
	if before := os.Getenv("TOLLGATE_BENCH_BEFORE"); before != "" {
		add("fused-before", gatewayConfig(withModulePath(b, fused, filepath.Join(before, "tollgate.wasm"))), key)
	}
	add("filters", gatewayConfig(filters), key)
	if os.Getenv("TOLLGATE_BENCH_FOUR") == "1" {
		add("four-modules", gatewayConfig(fourModules(b, filters)), key)
	}

	reqs := benchRequests()
	snap := func(e *envoytest.Envoy) envoytest.Memory {
		m, err := e.Memory()
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	for b.Loop() {
		// Rows go to stdout as they are measured: the table is longer than
		// what the testing package keeps of a benchmark's log, and a target
		// that fails leaves the rows before it.
		w := os.Stdout
		fmt.Fprintln(w, "memory (live: 3 s after LIVE; load: right after the requests; idle: 5 s later):")
		fmt.Fprintf(w, "%-22s %3s %-5s %7s %7s %7s %7s %7s %7s %7s %7s\n", "envoy (MiB)", "VMs", "when",
			"RSS", "alloc", "free", "caches", "v8code", "files", "other", "req")
		for _, tg := range targets {
			e := envoytest.Start(b, tg.cfg)
			base := "http://" + e.ListenerAddr()
			row := func(when string, m envoytest.Memory, sent int) {
				mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
				fmt.Fprintf(w, "%-22s %3d %-5s %7.1f %7.1f %7.1f %7.1f %7.1f %7.1f %7.1f %7d\n", tg.name, activeVMs(e), when,
					mib(m.RSS), mib(m.Allocated), mib(m.PageheapFree), mib(m.ThreadCache), mib(m.Code), mib(m.File), mib(m.Other()), sent)
			}
			time.Sleep(3 * time.Second) // the same settling time for every Envoy; nothing to poll for
			row("live", snap(e), 0)
			sent := 0
			for _, r := range reqs {
				if _, err := runLoad(b.Context(), base, tg.key, r, 500, conc); err != nil {
					b.Fatalf("%s warm-up: %v", tg.name, err)
				}
				sent += 500
			}
			half := max((total-sent)/2, conc) // TOLLGATE_BENCH_REQUESTS below the warm-up still loads
			for _, shape := range []string{"json", "stream"} {
				if _, err := runLoad(b.Context(), base, tg.key, reqs[shape], half, conc); err != nil {
					b.Fatalf("%s load: %v", tg.name, err)
				}
				sent += half
			}
			end := snap(e)
			row("load", end, sent)
			time.Sleep(5 * time.Second) // idle: what the allocator gives back
			idle := snap(e)
			row("idle", idle, sent)
			b.ReportMetric(float64(end.RSS)/(1<<20), tg.name+"-RSS-MiB")
			e.Stop()
		}
	}
}

// withoutRelease is a rendered gateway configuration without its bootstrap
// memory_allocator_manager, to measure what the release saves.
func withoutRelease(t testing.TB, config string) string {
	t.Helper()
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(config), &doc))
	require.Contains(t, doc, "memory_allocator_manager", "the shipped gateway releases free memory")
	delete(doc, "memory_allocator_manager")
	out, err := yaml.Marshal(doc)
	require.NoError(t, err)
	return string(out)
}

// BenchmarkChainStartup measures how long Envoy takes from exec to LIVE
// (mostly V8 compiling Wasm) with a no-op Go module (build/hello.wasm), the
// suite module with one plugin, the shipped chain fused and as separate
// filters, and as four modules, against bare Envoy, started in turn,
// median of TOLLGATE_BENCH_STARTS (default 3) starts each. Each start is
// split by Envoy's wasm debug log: "compile" runs from the base VM's
// creation to its first clone (reading, compiling and instantiating the
// module once); the rest is Envoy's own start and the per-thread VMs. Envoy's
// CPU time at LIVE is reported too: a busy machine inflates it far less
// than the wall time.
//
//	TOLLGATE_BENCH_STARTUP=1 go test -run '^$' -bench ChainStartup -benchtime 1x ./e2e/gateway/
func BenchmarkChainStartup(b *testing.B) {
	if os.Getenv("TOLLGATE_BENCH_STARTUP") != "1" {
		b.Skip("set TOLLGATE_BENCH_STARTUP=1 to run the start-up benchmark (a minute or more)")
	}
	s := startBenchStack(b)
	up := s.upstreamSpec(b)
	suiteYAML := renderGateway(b, filtersExample, s.keystore.data, up)
	module := func(file, root, config string) envoytest.Config {
		return moduleConfig(b, s.stack, 0, file, root, config)
	}
	configs := []struct {
		name string
		cfg  envoytest.Config
	}{
		{"bare", bareConfig(s.stack, 0)},
		{"hello", module("hello", "hello", "")},
		{"suite-modelroute", module("tollgate", "modelroute", `{"models":[{"name":"llama-3.1-8b","route":"pool-a"}]}`)},
		{"fused", gatewayConfig(renderGateway(b, fusedExample, s.keystore.data, up))},
		{"suite", gatewayConfig(suiteYAML)},
		{"four-modules", gatewayConfig(fourModules(b, suiteYAML))},
	}
	starts := benchEnv("TOLLGATE_BENCH_STARTS", 3)
	median := func(d []time.Duration) time.Duration {
		d = slices.Clone(d)
		slices.Sort(d)
		return d[len(d)/2]
	}
	for b.Loop() {
		took, compile, cpu := map[string][]time.Duration{}, map[string][]time.Duration{}, map[string][]time.Duration{}
		for range starts {
			for _, c := range configs {
				cfg := c.cfg
				cfg.ComponentLogLevel = "wasm:debug"
				t0 := time.Now()
				e := envoytest.Start(b, cfg)
				took[c.name] = append(took[c.name], time.Since(t0))
				if used, err := e.CPUTime(); err == nil {
					cpu[c.name] = append(cpu[c.name], used)
				}
				if d, ok := wasmCompileTime(e.Log()); ok {
					compile[c.name] = append(compile[c.name], d)
				}
				e.Stop()
			}
		}
		for _, c := range configs {
			med := median(took[c.name])
			b.ReportMetric(med.Seconds(), c.name+"-start-s")
			line := fmt.Sprintf("%-17s start to LIVE, median of %d: %v (all: %v)", c.name, len(took[c.name]), med.Round(time.Millisecond), took[c.name])
			if d := compile[c.name]; len(d) > 0 {
				line += fmt.Sprintf("; base VM (compile) %v", median(d).Round(time.Millisecond))
				b.ReportMetric(median(d).Seconds(), c.name+"-compile-s")
			}
			if d := cpu[c.name]; len(d) > 0 {
				line += fmt.Sprintf("; Envoy CPU at LIVE %v", median(d).Round(time.Millisecond))
				b.ReportMetric(median(d).Seconds(), c.name+"-cpu-s")
			}
			b.Log(line)
		}
	}
}

// envoyLogTime is the timestamp at the start of each Envoy log line.
const envoyLogTime = "2006-01-02 15:04:05.000"

// wasmCompileTime is how long Envoy took from creating its first base Wasm
// VM to the first per-thread clone, from its wasm debug log: reading,
// compiling and instantiating the module once. ok is false when the log
// does not hold both lines (no Wasm, or not at debug level).
func wasmCompileTime(log string) (d time.Duration, ok bool) {
	var base, clone time.Time
	for _, line := range strings.Split(log, "\n") {
		var at *time.Time
		switch {
		case base.IsZero() && strings.Contains(line, "Base Wasm created"):
			at = &base
		case !base.IsZero() && strings.Contains(line, "Thread-Local Wasm created"):
			at = &clone
		default:
			continue
		}
		if len(line) < len(envoyLogTime)+2 || line[0] != '[' {
			continue
		}
		t, err := time.Parse(envoyLogTime, line[1:1+len(envoyLogTime)])
		if err != nil {
			continue
		}
		*at = t
		if at == &clone {
			return clone.Sub(base), true
		}
	}
	return 0, false
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

// bareConfig is an Envoy without Tollgate in front of the stack's
// upstream; routeTimeout 0 keeps Envoy's default.
func bareConfig(s *stack, routeTimeout time.Duration) envoytest.Config {
	return envoytest.Config{StartTimeout: 3 * time.Minute,
		Clusters: []envoytest.Cluster{{Name: "upstream", Addr: s.up.srv.Listener.Addr().String()}},
		Routes:   []envoytest.Route{{Prefix: "/", Cluster: "upstream", Timeout: routeTimeout}}}
}

// moduleConfig is bareConfig with one Wasm filter: file's module, with
// root as its root_id and vm_id.
func moduleConfig(b *testing.B, s *stack, routeTimeout time.Duration, file, root, config string) envoytest.Config {
	b.Helper()
	c := bareConfig(s, routeTimeout)
	c.Filters = []envoytest.WasmFilter{{Name: root, RootID: root, VMID: root, WasmPath: envoytest.WasmPath(b, file),
		Configuration: config, AllowOnHeadersStopIteration: true}}
	return c
}

// gatewayConfig is an Envoy running a rendered gateway configuration.
func gatewayConfig(yaml string) envoytest.Config {
	return envoytest.Config{YAML: yaml, ListenerName: "gateway", StartTimeout: 3 * time.Minute}
}
