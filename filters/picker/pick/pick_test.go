package pick

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/picker/scrape"
	"github.com/tollgate/tollgate/shared/table"
)

// testHost is a Host over a MemStore with a settable clock and a
// deterministic random sequence.
type testHost struct {
	st  *table.MemStore
	now int64
	rnd uint64
}

func newHost() *testHost { return &testHost{st: table.NewMemStore(), now: 1_000_000, rnd: 1} }

func (h *testHost) Store() table.Store { return h.st }
func (h *testHost) NowMs() int64       { return h.now }
func (h *testHost) Intn(n int) int {
	h.rnd = h.rnd*6364136223846793005 + 1442695040888963407
	return int((h.rnd >> 33) % uint64(n))
}

const a, b, c = "10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"

// policy builds a three-endpoint pool with extra JSON fields.
func policy(t *testing.T, extra string) *Policy {
	t.Helper()
	p, err := Parse([]byte(`{"scrape_cluster":"sim","pools":[{"name":"p","models":["m"],"adapters":["ad"],"endpoints":[
		{"address":"` + a + `"},{"address":"` + b + `"},{"address":"` + c + `"}]}]` + extra + `}`))
	require.NoError(t, err)
	return p
}

// metrics stores a fresh scrape for addr.
func (h *testHost) metrics(t *testing.T, addr string, waiting, running, kv float64, loras ...string) {
	t.Helper()
	s := scrape.Snapshot{Waiting: waiting, Running: running, KVUsage: kv, Has: scrape.HasWaiting | scrape.HasRunning | scrape.HasKV}
	if len(loras) > 0 {
		s.RunningLoras, s.MaxLoras, s.Has = loras, 2, s.Has|scrape.HasLora
	}
	require.NoError(t, StoreScrape(h.st, addr, s, h.now))
}

// newIndex creates p's prefix index in h's store.
func newIndex(t *testing.T, p *Policy, h *testHost) *Index {
	t.Helper()
	x, err := p.NewIndex(h.st)
	require.NoError(t, err)
	require.NoError(t, x.Init())
	return x
}

func (h *testHost) allIdle(t *testing.T) {
	t.Helper()
	for _, e := range []string{a, b, c} {
		h.metrics(t, e, 0, 0, 0)
	}
}

func chatBlocks(system, user string) []uint64 {
	return Blocks("m", func(yield func(string) bool) {
		_ = yield(system) && yield(user)
	}, 64, 256)
}

func TestPickByLoad(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, h *testHost)
		want   string
		reason string
	}{
		{"shortest queue", func(t *testing.T, h *testHost) {
			h.metrics(t, a, 3, 4, 0.2)
			h.metrics(t, b, 0, 1, 0.2)
			h.metrics(t, c, 2, 4, 0.2)
		}, b, ReasonScored},
		{"least KV use at equal queues", func(t *testing.T, h *testHost) {
			h.metrics(t, a, 0, 2, 0.5)
			h.metrics(t, b, 0, 2, 0.6)
			h.metrics(t, c, 0, 2, 0.1)
		}, c, ReasonScored},
		{"saturated endpoints are filtered out", func(t *testing.T, h *testHost) {
			h.metrics(t, a, 0, 0, 0.9) // KV over 0.8
			h.metrics(t, b, 6, 4, 0)   // queue over 5
			h.metrics(t, c, 4, 4, 0.7)
		}, c, ReasonScored},
		{"stale metrics count as saturated", func(t *testing.T, h *testHost) {
			h.metrics(t, a, 0, 0, 0)
			h.now += 500
			h.metrics(t, b, 1, 4, 0.5)
			h.metrics(t, c, 2, 4, 0.5)
		}, b, ReasonScored},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := policy(t, `,"scoring":"weights"`)
			h := newHost()
			tc.setup(t, h)
			d := p.Pick(h, nil, Request{Model: "m"})
			require.Zero(t, d.Status, d.Err)
			assert.Equal(t, tc.want, d.Endpoints[0])
			assert.Equal(t, tc.reason, d.Reason)
			assert.Len(t, d.Endpoints, 3, "primary and two fallbacks")
		})
	}
}

func TestFailOpenNever503(t *testing.T) {
	p := policy(t, "")
	h := newHost() // no metrics at all: every endpoint is stale
	d := p.Pick(h, nil, Request{Model: "m", Priority: "critical"})
	require.Zero(t, d.Status)
	assert.Equal(t, ReasonFailOpen, d.Reason)
	assert.Len(t, d.Endpoints, 3)

	h.metrics(t, a, 9, 4, 0.95)
	h.metrics(t, b, 9, 4, 0.95)
	h.metrics(t, c, 9, 4, 0.95)
	d = p.Pick(h, nil, Request{Model: "m"})
	require.Zero(t, d.Status)
	assert.Equal(t, ReasonFailOpen, d.Reason)
}

func TestShedding(t *testing.T) {
	p := policy(t, `,"sheddable":["sheddable","batch"],"retry_after":"3s"`)
	h := newHost()
	for _, e := range []string{a, b, c} {
		h.metrics(t, e, 8, 4, 0.9)
	}
	for _, prio := range []string{"sheddable", "Batch", "-1"} {
		d := p.Pick(h, nil, Request{Model: "m", Priority: prio})
		assert.Equal(t, 429, d.Status, prio)
		assert.Equal(t, CodeShed, d.Err.Code)
		assert.Equal(t, 3, d.RetryAfter)
		assert.Empty(t, d.Endpoints)
	}
	for _, prio := range []string{"critical", "", "standard", "0"} {
		d := p.Pick(h, nil, Request{Model: "m", Priority: prio})
		assert.Zero(t, d.Status, "%q is never shed", prio)
	}
	// One idle endpoint brings the pool's average below 1: nothing is shed.
	h.metrics(t, a, 0, 0, 0)
	d := p.Pick(h, nil, Request{Model: "m", Priority: "sheddable"})
	require.Zero(t, d.Status)
	assert.Equal(t, a, d.Endpoints[0])
}

func TestSubsetHint(t *testing.T) {
	p := policy(t, "")
	h := newHost()
	h.allIdle(t)
	d := p.Pick(h, nil, Request{Model: "m", HasSubset: true, Subset: []string{"10.0.0.3:8000", "10.9.9.9:1"}})
	require.Zero(t, d.Status)
	assert.Equal(t, []string{c}, d.Endpoints)
	d = p.Pick(h, nil, Request{Model: "m", HasSubset: true, Subset: []string{"10.0.0.2"}})
	assert.Equal(t, []string{b}, d.Endpoints, "an entry without a port matches the IP")
	d = p.Pick(h, nil, Request{Model: "m", HasSubset: true})
	assert.Equal(t, 503, d.Status, "an empty hint leaves nothing eligible")
	assert.Equal(t, CodeNoEndpoint, d.Err.Code)
	assert.Equal(t, ReasonNoEligible, d.Reason)
}

func TestPoolSelection(t *testing.T) {
	p, err := Parse([]byte(`{"scrape_cluster":"s","pools":[
		{"name":"x","models":["mx"],"endpoints":[{"address":"10.0.0.1:1"}]},
		{"name":"y","models":["my"],"endpoints":[{"address":"10.0.0.2:1"}]}]}`))
	require.NoError(t, err)
	h := newHost()
	assert.Equal(t, "y", p.Pick(h, nil, Request{PoolHint: "y", Model: "mx"}).Pool, "the pool header wins")
	assert.Equal(t, "x", p.Pick(h, nil, Request{Model: "mx"}).Pool)
	d := p.Pick(h, nil, Request{Model: "other"})
	assert.Equal(t, 503, d.Status)
	assert.Equal(t, ReasonNoPool, d.Reason)
	assert.Equal(t, ReasonFailOpen, p.Pick(h, nil, Request{Model: "my"}).Reason, "no metrics yet")
	h.metrics(t, "10.0.0.2:1", 0, 0, 0)
	assert.Equal(t, ReasonSingleEndpoint, p.Pick(h, nil, Request{Model: "my"}).Reason)
}

func TestEjectedEndpointsAreSkipped(t *testing.T) {
	p := policy(t, `,"eject":{"failures":2,"backoff":"1s"}`)
	h := newHost()
	h.allIdle(t)
	ej, err := p.Outcome(h.st, a, true, h.now)
	require.NoError(t, err)
	assert.False(t, ej)
	ej, err = p.Outcome(h.st, a, true, h.now)
	require.NoError(t, err)
	assert.True(t, ej, "the second consecutive failure ejects")
	for i := 0; i < 20; i++ {
		d := p.Pick(h, nil, Request{Model: "m"})
		assert.NotEqual(t, a, d.Endpoints[0])
		assert.NotContains(t, d.Endpoints, a)
	}
	h.now += 1001
	seen := map[string]bool{}
	for i := 0; i < 30; i++ {
		seen[p.Pick(h, nil, Request{Model: "m"}).Endpoints[0]] = true
	}
	assert.True(t, seen[a], "back after the backoff")
	// A success resets the failure count.
	_, _ = p.Outcome(h.st, b, true, h.now)
	_, _ = p.Outcome(h.st, b, false, h.now)
	ej, _ = p.Outcome(h.st, b, true, h.now)
	assert.False(t, ej)

	// Everything ejected: fail open rather than 503.
	for _, e := range []string{a, b, c} {
		_, _ = p.Outcome(h.st, e, true, h.now)
		_, _ = p.Outcome(h.st, e, true, h.now)
	}
	d := p.Pick(h, nil, Request{Model: "m"})
	require.Zero(t, d.Status)
	assert.Equal(t, ReasonEjectedOnly, d.Reason)
}

func TestInFlightSpreadsABurstBetweenScrapes(t *testing.T) {
	p := policy(t, "")
	h := newHost()
	h.allIdle(t)
	counts := map[string]int{}
	for i := 0; i < 12; i++ {
		d := p.Pick(h, nil, Request{Model: "m"})
		require.NoError(t, p.Commit(h, nil, &d))
		counts[d.Endpoints[0]]++
	}
	assert.Equal(t, map[string]int{a: 4, b: 4, c: 4}, counts, "no stampede on one endpoint while metrics are unchanged")
	assert.EqualValues(t, 4, InFlight(h.st, a))
	require.NoError(t, p.Done(h, a))
	assert.EqualValues(t, 3, InFlight(h.st, a))
	for i := 0; i < 10; i++ {
		require.NoError(t, p.Done(h, b))
	}
	assert.EqualValues(t, 0, InFlight(h.st, b), "never below zero")
}

func TestRandomTieBreak(t *testing.T) {
	p := policy(t, "")
	h := newHost()
	h.allIdle(t)
	seen := map[string]int{}
	for i := 0; i < 60; i++ {
		seen[p.Pick(h, nil, Request{Model: "m"}).Endpoints[0]]++
	}
	assert.Len(t, seen, 3, "equal scores pick each endpoint: %v", seen)
}

func TestLoraAffinity(t *testing.T) {
	p := policy(t, "")
	h := newHost()
	h.metrics(t, a, 0, 1, 0.1, "other", "third") // both slots taken
	h.metrics(t, b, 0, 1, 0.1, "ad")
	h.metrics(t, c, 0, 1, 0.1, "other")
	for i := 0; i < 10; i++ {
		d := p.Pick(h, nil, Request{Model: "ad"})
		assert.Equal(t, b, d.Endpoints[0])
		assert.Equal(t, 1.0, d.Primary.Parts.Lora)
	}
	// Not loaded anywhere: a free slot beats a full one.
	h.metrics(t, b, 0, 1, 0.1, "x", "y")
	d := p.Pick(h, nil, Request{Model: "ad"})
	assert.Equal(t, c, d.Endpoints[0])
}

func TestPrefixAffinityAndSpill(t *testing.T) {
	p := policy(t, "")
	h := newHost()
	x := newIndex(t, p, h)
	h.allIdle(t)
	system := strings.Repeat("You are a helpful assistant for group seven. ", 60)
	first := p.Pick(h, x, Request{Model: "m", Blocks: chatBlocks(system, "q0")})
	require.NoError(t, p.Commit(h, x, &first))
	home := first.Endpoints[0]
	// Others of the group go home although home is a little busier.
	h.allIdle(t)
	h.metrics(t, home, 1, 3, 0.3)
	for i := 1; i < 6; i++ {
		d := p.Pick(h, x, Request{Model: "m", Blocks: chatBlocks(system, fmt.Sprint("question ", i))})
		assert.Equal(t, home, d.Endpoints[0], "request %d", i)
		assert.Greater(t, d.Primary.Parts.Prefix, 0.8)
	}
	// A different group has no affinity.
	d := p.Pick(h, x, Request{Model: "m", Blocks: chatBlocks(strings.Repeat("Other prompt. ", 200), "q")})
	assert.Zero(t, d.Primary.Parts.Prefix)
	assert.NotEqual(t, home, d.Endpoints[0])

	// Home overloaded: the group spills to another server, which then
	// learns the prefix too.
	h.metrics(t, home, 5, 4, 0.5)
	d = p.Pick(h, x, Request{Model: "m", Blocks: chatBlocks(system, "spill")})
	require.NotEqual(t, home, d.Endpoints[0], "the prefix score yields to load")
	require.NoError(t, p.Commit(h, x, &d))
	second := d.Endpoints[0]
	m := x.Match(chatBlocks(system, "later"), h.now)
	assert.Greater(t, m[home], 0.8)
	assert.Greater(t, m[second], 0.8)
}

func TestBlocks(t *testing.T) {
	texts := func(parts ...string) func(func(string) bool) {
		return func(yield func(string) bool) {
			for _, s := range parts {
				if !yield(s) {
					return
				}
			}
		}
	}
	long := strings.Repeat("abcdefgh", 40) // 320 bytes: 5 blocks of 64
	b1 := Blocks("m", texts(long), 64, 256)
	require.Len(t, b1, 5)
	b2 := Blocks("m", texts(long[:200]+"different tail"+long[214:]), 64, 256)
	assert.Equal(t, b1[:3], b2[:3], "a shared prefix shares its blocks")
	assert.NotEqual(t, b1[3], b2[3])
	assert.NotEqual(t, b1[4], b2[4], "chained: a difference changes every later block")
	assert.NotEqual(t, b1[0], Blocks("other", texts(long), 64, 256)[0], "seeded by the model")
	assert.Len(t, Blocks("m", texts(strings.Repeat("x", 1<<20)), 64, 16), 16, "capped")
	assert.Empty(t, Blocks("m", texts("short"), 64, 256), "a partial block is not hashed")
	assert.NotEqual(t, Blocks("m", texts("ab", long), 64, 256)[0], Blocks("m", texts("a", "b"+long), 64, 256)[0], "pieces are separated")
	assert.Nil(t, Blocks("m", nil, 64, 256))
}

func TestIndexIsBounded(t *testing.T) {
	p := policy(t, `,"prefix":{"blocks_per_endpoint":16}`)
	h := newHost()
	x := newIndex(t, p, h)
	keys := h.st.Keys()
	for i := 0; i < 200; i++ {
		require.NoError(t, x.Record(chatBlocks(fmt.Sprint(i, strings.Repeat("z", 200)), ""), a, h.now))
	}
	assert.Equal(t, keys, h.st.Keys(), "the index never adds shared-data keys")
}

func TestLeaderLease(t *testing.T) {
	st := table.NewMemStore()
	ok, err := Lead(st, 1, 1000, 300)
	require.NoError(t, err)
	assert.True(t, ok)
	ok, _ = Lead(st, 2, 1100, 300)
	assert.False(t, ok, "the lease is held")
	ok, _ = Lead(st, 1, 1200, 300)
	assert.True(t, ok, "the holder renews")
	ok, _ = Lead(st, 2, 1501, 300)
	assert.True(t, ok, "an expired lease is taken over")
	ok, _ = Lead(st, 1, 1600, 300)
	assert.False(t, ok)
}

func TestMetricsRecord(t *testing.T) {
	st := table.NewMemStore()
	s := scrape.Snapshot{Waiting: 2, Running: 3, KVUsage: 0.5, BlockSize: 16, NumBlocks: 512, MaxLoras: 2,
		RunningLoras: []string{"a", "b"}, WaitingLoras: []string{"c"}, Has: scrape.HasWaiting | scrape.HasKV | scrape.HasLora}
	require.NoError(t, StoreScrape(st, a, s, 42))
	m := ReadMetrics(st, a)
	assert.Equal(t, s, m.Snapshot)
	assert.EqualValues(t, 42, m.AtMs)
	n, err := StoreScrapeFailure(st, a)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	m = ReadMetrics(st, a)
	assert.Equal(t, s, m.Snapshot, "a failed scrape keeps the last figures and their age")
	assert.EqualValues(t, 42, m.AtMs)
	assert.Zero(t, ReadMetrics(st, b).AtMs)
}

func TestParseConfigErrors(t *testing.T) {
	base := `"scrape_cluster":"s","pools":[{"name":"p","endpoints":[{"address":"10.0.0.1:80"}]}]`
	tests := []struct {
		name, cfg, want string
	}{
		{"unknown field", `{` + base + `,"weight":{}}`, "unknown field"},
		{"no pools", `{"scrape_cluster":"s"}`, "pools needs"},
		{"no scrape cluster", `{"pools":[{"name":"p","endpoints":[{"address":"10.0.0.1:80"}]}]}`, "scrape_cluster"},
		{"bad address", `{"scrape_cluster":"s","pools":[{"name":"p","endpoints":[{"address":"host:80"}]}]}`, "want ip:port"},
		{"no port", `{"scrape_cluster":"s","pools":[{"name":"p","endpoints":[{"address":"10.0.0.1"}]}]}`, "want ip:port"},
		{"bad engine", `{"scrape_cluster":"s","pools":[{"name":"p","endpoints":[{"address":"10.0.0.1:80","engine":"tgi"}]}]}`, "unknown engine"},
		{"duplicate endpoint", `{"scrape_cluster":"s","pools":[{"name":"p","endpoints":[{"address":"10.0.0.1:80"},{"address":"10.0.0.1:80"}]}]}`, "twice"},
		{"duplicate pool", `{"scrape_cluster":"s","pools":[{"name":"p","endpoints":[{"address":"10.0.0.1:80"}]},{"name":"p","endpoints":[{"address":"10.0.0.2:80"}]}]}`, "unique name"},
		{"model in two pools", `{"scrape_cluster":"s","pools":[{"name":"p","models":["m"],"endpoints":[{"address":"10.0.0.1:80"}]},{"name":"q","models":["m"],"endpoints":[{"address":"10.0.0.2:80"}]}]}`, "is in pools"},
		{"empty pool", `{"scrape_cluster":"s","pools":[{"name":"p","endpoints":[]}]}`, "no endpoints"},
		{"bad default", `{` + base + `,"default_pool":"x"}`, "default_pool"},
		{"weights", `{` + base + `,"weights":{"queue":-1}}`, "weights.queue"},
		{"fallbacks", `{` + base + `,"fallbacks":9}`, "fallbacks"},
		{"interval", `{` + base + `,"scrape_interval":"5ms"}`, "scrape_interval"},
		{"saturation", `{` + base + `,"saturation":{"queue":5,"kv":2}}`, "saturation"},
		{"header", `{` + base + `,"destination_header":"X Bad"}`, "not an HTTP header name"},
		{"trailing", `{` + base + `}}`, "trailing"},
		{"scoring", `{` + base + `,"scoring":"fastest"}`, "scoring"},
		{"latency with weights scoring", `{` + base + `,"scoring":"weights","latency":{"max_num_seqs":4}}`, "needs \"scoring\""},
		{"latency seqs", `{` + base + `,"scoring":"latency","latency":{"max_num_seqs":-1}}`, "max_num_seqs"},
		{"latency service time", `{` + base + `,"scoring":"latency","latency":{"service_time":"0s5"}}`, "service_time"},
		{"latency cold weight", `{` + base + `,"scoring":"latency","latency":{"cold_weight":-2}}`, "cold_weight"},
		{"latency busy cold weight", `{` + base + `,"scoring":"latency","latency":{"busy_cold_weight":101}}`, "busy_cold_weight"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.cfg))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	p, err := Parse([]byte(`{` + base + `,"weights":{"prefix":0},"fallbacks":0,"destination_header":"X-Dest"}`))
	require.NoError(t, err)
	assert.Equal(t, 0.0, p.WPrefix)
	assert.Equal(t, 2.0, p.WQueue)
	assert.Equal(t, "x-dest", p.DestinationHeader)
	assert.Equal(t, 0, p.Fallbacks)
}

func FuzzDecodeRecords(f *testing.F) {
	f.Add(encodeMetrics(Metrics{Snapshot: scrape.Snapshot{Waiting: 1, RunningLoras: []string{"x"}}, AtMs: 5}))
	f.Add(encodeHolders([]holder{{addr: a, at: 1}, {addr: b, at: 2}}))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if m, ok := decodeMetrics(raw); ok {
			again, ok2 := decodeMetrics(encodeMetrics(m))
			if !ok2 || again.AtMs != m.AtMs || again.Waiting != m.Waiting {
				t.Fatalf("round trip changed %+v", m)
			}
		}
		if hs := decodeHolders(raw); len(hs) > maxHolders {
			t.Fatalf("%d holders", len(hs))
		}
	})
}

func TestScrapeLagIsCompensated(t *testing.T) {
	p := policy(t, "")
	h := newHost()
	h.allIdle(t)
	d := p.Pick(h, nil, Request{Model: "m", HasSubset: true, Subset: []string{a}})
	require.NoError(t, p.Commit(h, nil, &d))
	h.metrics(t, a, 0, 1, 0) // the scrape sees our request running
	require.NoError(t, p.Done(h, a))
	// The scrape still says running 1, but that request was ours and has
	// finished: a is as idle as the others.
	seen := map[string]bool{}
	for i := 0; i < 40; i++ {
		d := p.Pick(h, nil, Request{Model: "m"})
		seen[d.Endpoints[0]] = true
		if d.Endpoints[0] == a {
			assert.Equal(t, 1.0, d.Primary.Parts.Queue)
		}
	}
	assert.True(t, seen[a])
	// Another client's load on b still counts.
	h.metrics(t, b, 2, 4, 0)
	for i := 0; i < 10; i++ {
		assert.NotEqual(t, b, p.Pick(h, nil, Request{Model: "m"}).Endpoints[0])
	}
}

func TestPrefixAffinityHoldsUnderUniformOverload(t *testing.T) {
	p := policy(t, `,"scoring":"weights"`)
	h := newHost()
	x := newIndex(t, p, h)
	h.allIdle(t)
	system := strings.Repeat("Overloaded group prompt. ", 120)
	d := p.Pick(h, x, Request{Model: "m", Blocks: chatBlocks(system, "q"), HasSubset: true, Subset: []string{c}})
	require.NoError(t, p.Commit(h, x, &d))
	require.NoError(t, p.Done(h, c))
	for _, e := range []string{a, b, c} {
		h.metrics(t, e, 8, 4, 0.9) // every server saturated alike
	}
	for i := 0; i < 10; i++ {
		d := p.Pick(h, x, Request{Model: "m", Blocks: chatBlocks(system, fmt.Sprint("q", i))})
		assert.Equal(t, ReasonFailOpen, d.Reason)
		assert.Equal(t, c, d.Endpoints[0], "equal queues: the cache hit decides")
	}
	h.metrics(t, c, 18, 4, 0.9) // now far longer than the others
	assert.NotEqual(t, c, p.Pick(h, x, Request{Model: "m", Blocks: chatBlocks(system, "late")}).Endpoints[0])
}

func TestPoolsSource(t *testing.T) {
	p, err := Parse([]byte(`{"scrape_cluster":"s","pools_source":{"cluster":"ks","path":"/v1/pools"}}`))
	require.NoError(t, err, "a pools source may stand in for configured pools")
	assert.Equal(t, time.Second, p.PoolsSource.Interval)
	assert.Equal(t, "ks", p.PoolsSource.Authority)
	assert.Equal(t, 2*time.Second, p.PoolsSource.Timeout)
	assert.Empty(t, p.PoolsSource.Token)

	p2, err := Parse([]byte(`{"scrape_cluster":"s","pools_source":{"token":"data-plane-token-0123456789","interval":"5s"}}`))
	require.NoError(t, err, "the keystore is the default pools source")
	assert.Equal(t, "keystore", p2.PoolsSource.Cluster)
	assert.Equal(t, "/v1/pools", p2.PoolsSource.Path)
	assert.Equal(t, 5*time.Second, p2.PoolsSource.Interval)
	assert.Equal(t, [][2]string{{"authorization", "Bearer data-plane-token-0123456789"}}, p2.PoolsSource.AppendAuth(nil),
		"the pools call carries the keystore's data-plane token")
	assert.Empty(t, p.Pools)
	h := newHost()
	assert.Equal(t, ReasonNoPool, p.Pick(h, nil, Request{Model: "m"}).Reason, "no pools yet: 503")

	doc := []byte(`{"pools":[{"name":"p","models":["m"],"endpoints":[{"address":"10.0.0.1:80"},{"address":"10.0.0.2:80"}]}]}`)
	require.NoError(t, p.SetPools(doc))
	assert.Len(t, p.Endpoints(), 2)
	d := p.Pick(h, nil, Request{Model: "m"})
	require.Zero(t, d.Status)
	assert.Len(t, d.Endpoints, 2)

	for _, bad := range []string{`{"pools":[{"name":"p","endpoints":[{"address":"x"}]}]}`, `{"pool":[]}`, `{"pools":[]}}`} {
		assert.Error(t, p.SetPools([]byte(bad)), bad)
	}
	assert.Len(t, p.Endpoints(), 2, "a refused document leaves the pools as they were")

	st := table.NewMemStore()
	changed, err := StorePools(st, doc)
	require.NoError(t, err)
	assert.True(t, changed)
	raw, v1, found := ReadPools(st)
	require.True(t, found)
	assert.Equal(t, doc, raw)
	changed, _ = StorePools(st, doc)
	assert.False(t, changed, "an unchanged document is not written again")
	_, v2, _ := ReadPools(st)
	assert.Equal(t, v1, v2)

	for _, cfg := range []string{
		`{"scrape_cluster":"s","pools_source":{"cluster":"ks","path":"v1"}}`,
		`{"scrape_cluster":"s","pools_source":{"cluster":"ks","path":"/p","interval":"5ms"}}`,
		`{"scrape_cluster":"s","pools_source":{"token":"a","token_env":"B"}}`,
		`{"scrape_cluster":"s","pools_source":{"token_env":"TOLLGATE_NO_SUCH_VARIABLE_SET"}}`,
		`{"scrape_cluster":"s","pools_source":{"timeout":"2h"}}`,
		`{"scrape_cluster":"s"}`,
	} {
		_, err := Parse([]byte(cfg))
		assert.Error(t, err, cfg)
	}
}

// TestLatencyScoring: with "scoring": "latency" a full home whose waiting
// queue still reads 0 is not free: the request goes where its predicted
// TTFT (slot wait + uncached prefill) is lowest.
func TestLatencyScoring(t *testing.T) {
	system := strings.Repeat("You are a helpful assistant for group seven. ", 60) // ~43 blocks
	// slot time 0.5 s; a cold prefill of the prompt ~0.35 s (0.7 slots) × cold_weight.
	// cold: the cold weight while the pool has room; busy: at 100% of its slots held.
	latency := func(cold, busy string) string {
		return `,"scoring":"latency","latency":{"max_num_seqs":4,"service_time":"2s","prefill_per_block":"8ms","cold_weight":` + cold + `,"busy_cold_weight":` + busy + `}`
	}
	tests := []struct {
		name  string
		extra string
		// home's and the others' sequences: running at the scrape, plus
		// this Envoy's requests picked since (in flight, not yet scraped).
		homeRunning, homeSent, otherRunning int
		wantHome                            bool
	}{
		{"home with a free slot keeps the group", latency("1", "1"), 3, 0, 0, true},
		{"full home, empty queue, idle cold servers: spill (weights mode would not)", latency("1", "1"), 4, 0, 0, false},
		{"full home by this Envoy's own picks since the scrape: spill", latency("1", "1"), 2, 2, 0, false},
		{"full home, but a cold prefill counts double: stay", latency("2", "2"), 4, 0, 0, true},
		{"every server full alike: the cache hit decides", latency("1", "1"), 4, 0, 4, true},
		{"home one deeper than full others: the cold cost doubles with one queued, stay", latency("1", "1"), 5, 0, 4, true},
		{"home two deeper than full others: spill", latency("1", "1"), 6, 0, 4, false},
		{"home one deeper than full others, cold counts double: stay", latency("2", "2"), 5, 0, 4, true},
		{"home three deeper, cold counts double: spill", latency("2", "2"), 7, 0, 4, false},
		{"uniform overload, home two deeper: the cold cost grows with the queues, stay", latency("1", "1"), 14, 0, 12, true},
		{"overload, home far deeper than the others: spill", latency("1", "1"), 24, 0, 12, false},
		{"full home, pool at 33%: the cold weight is low, spill", latency("0.5", "3"), 4, 0, 0, false},
		{"full home, pool at 83%: the cold weight has risen, stay", latency("0.5", "3"), 4, 0, 3, true},
		{"weights mode: a full home with an empty queue looks free", `,"scoring":"weights"`, 4, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := policy(t, tc.extra)
			h := newHost()
			x := newIndex(t, p, h)
			h.allIdle(t)
			first := p.Pick(h, x, Request{Model: "m", Blocks: chatBlocks(system, "q0"), HasSubset: true, Subset: []string{a}})
			require.NoError(t, p.Commit(h, x, &first))
			require.NoError(t, p.Done(h, a))
			waiting := func(n int) float64 { return float64(max(0, n-4)) }
			running := func(n int) float64 { return float64(min(4, n)) }
			h.metrics(t, a, waiting(tc.homeRunning), running(tc.homeRunning), 0.3)
			for _, e := range []string{b, c} {
				h.metrics(t, e, waiting(tc.otherRunning), running(tc.otherRunning), 0.3)
			}
			for i := 0; i < tc.homeSent; i++ {
				d := Decision{Endpoints: []string{a}}
				require.NoError(t, p.Commit(h, nil, &d))
			}
			for i := 0; i < 8; i++ {
				d := p.Pick(h, x, Request{Model: "m", Blocks: chatBlocks(system, fmt.Sprint("question ", i))})
				require.Zero(t, d.Status, d.Err)
				assert.Equal(t, tc.wantHome, d.Endpoints[0] == a, "pick %d went to %s (parts %+v)", i, d.Endpoints[0], d.Primary.Parts)
				if strings.Contains(tc.extra, "latency") {
					assert.Greater(t, d.Primary.Score, 0.0)
					assert.LessOrEqual(t, d.Primary.Score, 1.0, "latency scores are 1/(1+cost)")
				}
			}
		})
	}
}

// TestLatencyScoringSpreadsColdRequests: without a prefix, latency scoring
// sends a burst between scrapes to the least occupied endpoints.
func TestLatencyScoringSpreadsColdRequests(t *testing.T) {
	p := policy(t, `,"scoring":"latency","latency":{"max_num_seqs":4}`)
	h := newHost()
	h.allIdle(t)
	counts := map[string]int{}
	for i := 0; i < 12; i++ {
		d := p.Pick(h, nil, Request{Model: "m"})
		require.NoError(t, p.Commit(h, nil, &d))
		counts[d.Endpoints[0]]++
	}
	assert.Equal(t, map[string]int{a: 4, b: 4, c: 4}, counts)
}

// TestPrefixWeightZeroIgnoresIndex: "weights": {"prefix": 0} takes the
// prefix index out of the pick in every scoring mode (the benchmark's
// picker-no-prefix): a home that holds the group's blocks gets no credit
// for them, the pick is the one a request without a prompt would get (the
// least loaded endpoint), and a commit teaches the index nothing. With
// the default weight the same home wins on its cache hit.
func TestPrefixWeightZeroIgnoresIndex(t *testing.T) {
	system := strings.Repeat("You are a helpful assistant for group seven. ", 60) // ~43 blocks
	tests := []struct {
		name     string
		extra    string
		wantPick string
	}{
		{"latency, learned figures (the default): the cache hit wins", ``, a},
		{"latency, learned figures, prefix 0: least loaded", `,"weights":{"prefix":0}`, c},
		{"latency, configured figures: the cache hit wins", `,"latency":{"max_num_seqs":4}`, a},
		{"latency, configured figures, prefix 0: least loaded", `,"latency":{"max_num_seqs":4},"weights":{"prefix":0}`, c},
		{"weights: the cache hit wins", `,"scoring":"weights"`, a},
		{"weights, prefix 0: least loaded", `,"scoring":"weights","weights":{"prefix":0}`, c},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := policy(t, tc.extra)
			h := newHost()
			x := newIndex(t, p, h)
			// a holds the group's prompt (as a prefix-scoring Envoy sharing
			// this index would have recorded it) and is the busiest.
			blocks := chatBlocks(system, "q0")
			require.NoError(t, x.Record(blocks, a, h.now))
			h.metrics(t, a, 0, 2, 0.2)
			h.metrics(t, b, 0, 1, 0.1)
			h.metrics(t, c, 0, 0, 0)
			req := Request{Model: "m", Blocks: chatBlocks(system, "question 1")}
			for i := 0; i < 8; i++ {
				d := p.Pick(h, x, req)
				require.Zero(t, d.Status, d.Err)
				assert.Equal(t, tc.wantPick, d.Endpoints[0], "pick %d (parts %+v)", i, d.Primary.Parts)
				if p.WPrefix > 0 {
					continue
				}
				bare := p.Pick(h, x, Request{Model: "m"})
				assert.Equal(t, bare.Endpoints, d.Endpoints, "prefix 0 picks as if there were no prompt")
				for _, cand := range d.Candidates {
					assert.Zero(t, cand.Parts.Prefix, "%s: no prefix part", cand.Address)
					if p.Latency != nil {
						assert.Equal(t, float64(len(req.Blocks)), cand.Uncached, "%s: every block counts as uncached", cand.Address)
					}
				}
			}
			d := p.Pick(h, x, req)
			require.NoError(t, p.Commit(h, x, &d))
			m := x.Match(req.Blocks, h.now)
			if p.WPrefix > 0 {
				assert.Greater(t, m[d.Endpoints[0]], 0.9, "a commit records the prompt")
			} else {
				assert.Zero(t, m[d.Endpoints[0]], "prefix 0: a commit records nothing")
			}
		})
	}
}
