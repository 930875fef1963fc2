package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/shared/wasmhost/wasmtest"
)

// BenchmarkFilterAlone measures what each Tollgate filter costs on its own
// in real Envoy (--concurrency 2, the suite module, the shipped filter
// configuration): one Envoy per filter holding only that filter, one holding
// none (the same rendered gateway with every Tollgate filter cut out), and
// reference points: apikey in strip mode ("floor": a header snapshot),
// testdata/emptyfilter ("empty": the Tollgate dispatch with a plugin that
// does nothing), testdata/nopfilter ("nop": a Go module whose callbacks
// return at once, i.e. what Envoy and V8 charge for a Go filter at all),
// testdata/watnop ("wat-nop": the same callbacks in WebAssembly text, no
// language runtime: what Envoy and V8 alone charge) and
// nopfilter making 20 host calls per request ("nop-get20": header reads,
// each re-entering the module to allocate; "nop-remove20": calls that return
// nothing; "nop-setall20": whole-map writes), all started side by side on the same keystore and upstream. Each of TOLLGATE_BENCH_ROUNDS (default 9) rounds sends
// TOLLGATE_BENCH_ROUND (default 300) chat requests to every Envoy,
// interleaved request by request, each Envoy over its own connection; a
// filter's added p50 is the median over the rounds of its round p50 minus
// bare Envoy's, and its added CPU is the CPU time its Envoy process used per
// request (every thread, envoytest.CPUTime) minus bare Envoy's: on a shared
// machine the latency moves with other work, the CPU much less.
//
//	TOLLGATE_BENCH_HOTPATH=1 go test -run '^$' -bench FilterAlone -benchtime 1x ./e2e/gateway/
//
// TOLLGATE_BENCH_FILTERS (comma-separated) picks the filters measured
// (default apikey,quota,modelroute,tokencount); "fused" is the whole chain
// as shipped (gateway.yaml, the one fused filter), against the same bare
// Envoy, which is the shipped gateway without Tollgate.
//
// TOLLGATE_BENCH_VMENV="GOGC=200 GOGC=off,GOMEMLIMIT=12MiB" adds one
// shipped fused gateway per word, its VM's environment set to that word's
// comma-separated KEY=value pairs (the Go runtime's collector pacing);
// with GODEBUG=gctrace=1 in a word, that Envoy's collections during the
// rounds are counted from its log (collections per 1k requests, GC CPU).
//
// TOLLGATE_BENCH_BEFORE=<dir> adds, for each filter, an Envoy loading
// <dir>/tollgate.wasm (a suite module built from an older commit), so
// before and after are measured in the same run; TOLLGATE_BENCH_REFERENCE=0
// leaves the reference modules out; TOLLGATE_BENCH_SHAPE=json16k (or
// json64k) sends the chat request with a long prompt instead, for what a
// filter adds per KiB of body.
//
// Every Envoy gets the same request: the bench app's key for apikey and the
// identity headers apikey would have set, so quota, modelroute and
// tokencount run their real path without apikey in front of them.
func BenchmarkFilterAlone(b *testing.B) {
	if os.Getenv("TOLLGATE_BENCH_HOTPATH") != "1" {
		b.Skip("set TOLLGATE_BENCH_HOTPATH=1 to run the per-filter benchmark (about a minute)")
	}
	s := startStack(b, false)
	full := renderGateway(b, filtersExample, s.keystore.data, s.upstreamSpec(b))
	type target struct {
		name string
		e    *envoytest.Envoy
	}
	start := func(yaml string) *envoytest.Envoy {
		return envoytest.Start(b, envoytest.Config{YAML: yaml, ListenerName: "gateway", StartTimeout: 3 * time.Minute})
	}
	targets := []target{{"bare", start(onlyFilter(b, full, ""))}}
	before := os.Getenv("TOLLGATE_BENCH_BEFORE")
	filters := chainFilters
	if only := os.Getenv("TOLLGATE_BENCH_FILTERS"); only != "" {
		filters = strings.Split(only, ",")
	}
	for _, f := range filters {
		var yaml string
		switch {
		case f == "fused": // the whole chain as shipped (gateway.yaml)
			yaml = renderGateway(b, fusedExample, s.keystore.data, s.upstreamSpec(b))
		case slices.Contains(chainFilters, f):
			yaml = onlyFilter(b, full, f)
		default:
			b.Fatalf("TOLLGATE_BENCH_FILTERS: unknown filter %q (want %v or fused)", f, chainFilters)
		}
		targets = append(targets, target{f, start(yaml)})
		if before != "" {
			targets = append(targets, target{f + "-before", start(withModulePath(b, yaml, filepath.Join(before, "tollgate.wasm")))})
		}
	}
	for _, env := range strings.Fields(os.Getenv("TOLLGATE_BENCH_VMENV")) {
		fused := renderGateway(b, fusedExample, s.keystore.data, s.upstreamSpec(b))
		targets = append(targets, target{"fused-" + env, start(withVMEnv(b, fused, env))})
	}
	apikeyOnly := onlyFilter(b, full, "apikey")
	targets = append(targets, target{"floor", start(withConfig(b, apikeyOnly, `{"mode": "strip"}`))})
	if os.Getenv("TOLLGATE_BENCH_REFERENCE") != "0" {
		for _, m := range []struct{ name, pkg, config string }{
			{"empty", "./testdata/emptyfilter", ""},
			{"nop", "./testdata/nopfilter", ""},
			{"nop-get20", "./testdata/nopfilter", "get 20"},
			{"nop-remove20", "./testdata/nopfilter", "remove 20"},
			{"nop-setall20", "./testdata/nopfilter", "setall 20"},
		} {
			yaml := strings.Replace(apikeyOnly, "vm_id: tollgate", "vm_id: "+m.name, 1)
			targets = append(targets, target{m.name, start(withModule(b, withConfig(b, yaml, m.config), m.pkg))})
		}
		wat, err := filepath.Abs("testdata/watnop/nop.wasm")
		if err != nil {
			b.Fatal(err)
		}
		yaml := strings.Replace(apikeyOnly, "vm_id: tollgate", "vm_id: wat-nop", 1)
		targets = append(targets, target{"wat-nop", start(withModulePath(b, yaml, wat))})
	}

	key := s.keys["bench"]
	shape := os.Getenv("TOLLGATE_BENCH_SHAPE")
	if shape == "" {
		shape = "json"
	}
	req, ok := benchRequests()[shape]
	if !ok || req.stream {
		b.Fatalf("TOLLGATE_BENCH_SHAPE %q: want a JSON shape of benchRequests (json, json16k, json64k)", shape)
	}
	headers := map[string]string{
		"Content-Type":              "application/json",
		"Authorization":             "Bearer " + key,
		"x-tollgate-app":            "bench",
		"x-tollgate-product":        "gw-bench",
		"x-tollgate-allowed-models": "*",
		"x-tollgate-request-quota":  "100000000/1hour/rolling;scope=hotpath",
		"x-tollgate-token-quota":    "1000000000/1hour/rolling;counted=total;scope=hotpath",
	}
	clients := map[string]*http.Client{}
	for _, t := range targets {
		tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
		b.Cleanup(tr.CloseIdleConnections)
		clients[t.name] = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	send := func(ctx context.Context, t target, n int) ([]time.Duration, error) {
		times := make([]time.Duration, 0, n)
		url := "http://" + t.e.ListenerAddr() + req.path
		for range n {
			r, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(req.body))
			if err != nil {
				return nil, err
			}
			for k, v := range headers {
				r.Header.Set(k, v)
			}
			t0 := time.Now()
			resp, err := clients[t.name].Do(r)
			if err != nil {
				return nil, err
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return nil, err
			}
			times = append(times, time.Since(t0))
			if resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("%s: status %d: %s", t.name, resp.StatusCode, body)
			}
		}
		slices.Sort(times)
		return times, nil
	}
	perRound := benchEnv("TOLLGATE_BENCH_ROUND", 300)
	rounds := benchEnv("TOLLGATE_BENCH_ROUNDS", 9)
	for _, t := range targets { // warm connections, VMs and caches
		if _, err := send(b.Context(), t, 100); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}
	cpu := func() map[string]time.Duration {
		m := map[string]time.Duration{}
		for _, t := range targets {
			d, err := t.e.CPUTime()
			if err != nil {
				b.Fatal(err)
			}
			m[t.name] = d
		}
		return m
	}
	// Targets whose VM runs with GODEBUG=gctrace=1 log every collection;
	// the ones during the measured rounds are counted below.
	gcs := func() map[string][]gcCycle {
		m := map[string][]gcCycle{}
		for _, t := range targets {
			if strings.Contains(t.name, "gctrace=1") {
				t.e.SyncLog(b)
				m[t.name] = gcCycles(t.e.Log())
			}
		}
		return m
	}
	for b.Loop() {
		added := map[string][]time.Duration{}
		var bareP50 []time.Duration
		gc0 := gcs()
		cpu0 := cpu()
		failed := map[string]int{}
		for r := range rounds {
			// Interleave request by request, rotating the order, so the
			// load of a shared machine falls on every Envoy alike.
			times := map[string][]time.Duration{}
			for i := range perRound {
				for k := range targets {
					t := targets[(i+r+k)%len(targets)]
					d, err := send(b.Context(), t, 1)
					if err != nil {
						// A loaded machine can time out a keystore callout
						// (tokencount's 500 ms): count it, fail only if common.
						failed[t.name]++
						if failed[t.name] > rounds*perRound/100 {
							b.Fatalf("more than 1%% of requests failed: %v", err)
						}
						continue
					}
					times[t.name] = append(times[t.name], d[0])
				}
			}
			p50 := map[string]time.Duration{}
			for name, d := range times {
				slices.Sort(d)
				p50[name] = d[len(d)/2]
			}
			bareP50 = append(bareP50, p50["bare"])
			for _, t := range targets[1:] {
				added[t.name] = append(added[t.name], p50[t.name]-p50["bare"])
			}
		}
		med := func(d []time.Duration) time.Duration {
			d = slices.Clone(d)
			slices.Sort(d)
			return d[len(d)/2]
		}
		cpu1 := cpu()
		perReq := func(name string) float64 {
			return float64((cpu1[name] - cpu0[name]).Nanoseconds()) / 1e3 / float64(rounds*perRound)
		}
		b.ReportMetric(float64(med(bareP50).Microseconds()), "bare-p50-µs")
		b.ReportMetric(perReq("bare"), "bare-cpu-µs/req")
		var rows strings.Builder
		fmt.Fprintf(&rows, "%-12s %10s %14s   %s\n", "filter", "added p50", "added CPU/req", "added p50 per round")
		for _, t := range targets[1:] {
			m := med(added[t.name])
			c := perReq(t.name) - perReq("bare")
			b.ReportMetric(float64(m.Microseconds()), t.name+"-added-µs")
			b.ReportMetric(c, t.name+"-added-cpu-µs")
			fmt.Fprintf(&rows, "%-12s %8dµs %12.1fµs   %v\n", t.name, m.Microseconds(), c, added[t.name])
		}
		for name, all := range gcs() {
			during := all[len(gc0[name]):]
			var ms float64
			for _, c := range during {
				ms += c.cpuMs
			}
			n := float64(rounds * perRound)
			b.ReportMetric(1000*float64(len(during))/n, name+"-gc/1k-req")
			b.ReportMetric(ms*1000/n, name+"-gc-cpu-µs/req")
			fmt.Fprintf(&rows, "%s: %d collections in %d requests (both workers), %.3f ms CPU each, %.2f µs per request\n",
				name, len(during), int(n), ms/max(float64(len(during)), 1), ms*1000/n)
		}
		b.Logf("bare p50 %v (rounds %v), failed requests %v\n%s", med(bareP50), bareP50, failed, rows.String())
		b.ReportMetric(0, "ns/op")
	}
}

// onlyFilter cuts every Tollgate filter but keep ("" keeps none) out of the
// rendered gateway's http_filters.
func onlyFilter(t testing.TB, yaml, keep string) string {
	t.Helper()
	for _, f := range chainFilters {
		if f == keep {
			continue
		}
		i := strings.Index(yaml, "- name: "+f+"\n")
		if i < 0 {
			t.Fatalf("the rendered gateway has no %s filter", f)
		}
		i = strings.LastIndexByte(yaml[:i], '\n')
		item := yaml[i : i+strings.Index(yaml[i:], "- name: ")+len("- name: ")] // newline, indent, "- name: "
		j := strings.Index(yaml[i+len(item):], item)
		if j < 0 {
			t.Fatalf("no filter after %s", f)
		}
		yaml = yaml[:i] + yaml[i+len(item)+j:]
	}
	return yaml
}

// withConfig replaces the configuration of a one-filter gateway.
func withConfig(t testing.TB, yaml, config string) string {
	t.Helper()
	const marker = "value: |\n"
	i := strings.Index(yaml, marker)
	if i < 0 {
		t.Fatal("no configuration value in the rendered filter")
	}
	i += len(marker)
	end := strings.Index(yaml[i:], "failure_policy:")
	if end < 0 {
		t.Fatal("no failure_policy after the configuration")
	}
	end = strings.LastIndexByte(yaml[:i+end], '\n')
	rest := yaml[i:]
	indent := rest[:len(rest)-len(strings.TrimLeft(rest, " "))]
	return yaml[:i] + indent + config + yaml[end:]
}

// withModule builds the Go package pkg to Wasm and makes the one-filter
// gateway load it instead of the suite module.
func withModule(t testing.TB, yaml, pkg string) string {
	t.Helper()
	mod, err := wasmtest.Build(pkg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), filepath.Base(pkg)+".wasm")
	if err := os.WriteFile(path, mod, 0o644); err != nil {
		t.Fatal(err)
	}
	return withModulePath(t, yaml, path)
}

// withModulePath makes the one-filter gateway load the module at path.
func withModulePath(t testing.TB, yaml, path string) string {
	t.Helper()
	i := strings.Index(yaml, "filename: ")
	if i < 0 {
		t.Fatal("no module filename in the rendered filter")
	}
	j := strings.IndexByte(yaml[i:], '\n')
	return yaml[:i] + "filename: " + path + yaml[i+j:]
}

// withVMEnv adds the comma-separated KEY=value pairs of env to the
// environment of the rendered gateway's Tollgate VM
// (vm_config.environment_variables.key_values, where the rendering put the
// keystore's data token).
func withVMEnv(t testing.TB, yaml, env string) string {
	t.Helper()
	const marker = "TOLLGATE_DATA_TOKEN: "
	i := strings.Index(yaml, marker)
	if i < 0 || strings.Count(yaml, marker) != 1 {
		t.Fatalf("want one %q in the rendered gateway", marker)
	}
	line := strings.LastIndexByte(yaml[:i], '\n') + 1
	indent := yaml[line:i]
	var kv strings.Builder
	for _, pair := range strings.Split(env, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok || k == "" {
			t.Fatalf("TOLLGATE_BENCH_VMENV: %q is not KEY=value", pair)
		}
		kv.WriteString(indent + k + ": " + strconv.Quote(v) + "\n")
	}
	return yaml[:line] + kv.String() + yaml[line:]
}

// gcCycle is one collection the Go runtime of a VM reported with
// GODEBUG=gctrace=1 (its stderr, which Envoy logs line by line).
type gcCycle struct{ cpuMs float64 }

// gcTraceLine matches gctrace's "... ms clock, A+B/C/D+E ms cpu" part.
var gcTraceLine = regexp.MustCompile(`gc \d+ @[0-9.]+s \d+%: [0-9.+]+ ms clock, ([0-9.]+)\+([0-9.]+)/([0-9.]+)/([0-9.]+)\+([0-9.]+) ms cpu`)

// gcCycles reads every collection from an Envoy log: the runtime writes
// each trace line in pieces, which envoytest.LogEntries joins per thread.
func gcCycles(log string) []gcCycle {
	var out []gcCycle
	for _, e := range envoytest.LogEntries(log) {
		for _, m := range gcTraceLine.FindAllStringSubmatch(strings.ReplaceAll(e.Text, "\n", ""), -1) {
			var c gcCycle
			for _, f := range m[1:] {
				v, _ := strconv.ParseFloat(f, 64)
				c.cpuMs += v
			}
			out = append(out, c)
		}
	}
	return out
}
