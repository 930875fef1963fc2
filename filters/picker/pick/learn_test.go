package pick

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/picker/scrape"
	"github.com/tollgate/tollgate/shared/table"
)

// obs is one scrape: ms after the start, waiting and running, and the
// adapters the waiting requests need.
type obs struct {
	at               int64
	waiting, running float64
	waitingLoras     []string
}

// o is a scrape without LoRA adapters.
func o(at int64, waiting, running float64) obs {
	return obs{at: at, waiting: waiting, running: running}
}

func learnScrapes(t *testing.T, st table.Store, addr string, scrapes []obs) {
	t.Helper()
	for _, o := range scrapes {
		snap := scrape.Snapshot{Waiting: o.waiting, Running: o.running, WaitingLoras: o.waitingLoras, Has: scrape.HasWaiting | scrape.HasRunning | scrape.HasKV}
		require.NoError(t, LearnScrape(st, addr, snap, 1_000_000+o.at))
	}
}

func TestLearnBatchLimit(t *testing.T) {
	ttl := LearnSeqsTTL.Milliseconds()
	tests := []struct {
		name    string
		scrapes []obs
		want    int
	}{
		{"never a queue: unknown", []obs{o(0, 0, 3), o(50, 0, 4), o(100, 0, 2)}, 0},
		{"a queue in one scrape only: a transient, unknown", []obs{o(0, 1, 2), o(50, 0, 3), o(100, 2, 3), o(150, 0, 1)}, 0},
		{"a queue in two scrapes in a row: the running count", []obs{o(0, 1, 4), o(50, 2, 4)}, 4},
		{"two scrapes at the same instant do not count", []obs{o(0, 1, 4), o(0, 1, 4)}, 0},
		{"a running count above the limit raises it", []obs{o(0, 1, 3), o(50, 1, 3), o(100, 0, 6)}, 6},
		{"a lower count with a queue does not lower a fresh limit", []obs{o(0, 1, 8), o(50, 1, 8), o(100, 1, 5), o(150, 1, 5)}, 8},
		{"a lower count with a queue replaces a limit older than the TTL", []obs{o(0, 1, 8), o(50, 1, 8), o(ttl+100, 1, 5), o(ttl+150, 1, 5)}, 5},
		{"requests waiting for a LoRA adapter teach nothing", []obs{{0, 1, 2, []string{"ad"}}, {50, 1, 2, []string{"ad"}}}, 0},
		{"NaN is ignored", []obs{o(0, 1, math.NaN()), o(50, math.NaN(), 4), o(100, 1, math.NaN())}, 0},
		{"negative counts are ignored", []obs{o(0, 1, -4), o(50, 1, -4)}, 0},
		{"a huge running count is ignored", []obs{o(0, 1, 1e12), o(50, 1, 1e12), o(100, 1, math.Inf(1))}, 0},
		{"a huge running count does not raise a limit", []obs{o(0, 1, 4), o(50, 1, 4), o(100, 0, 1e9)}, 4},
		{"a queue with nothing running teaches nothing", []obs{o(0, 3, 0), o(50, 3, 0)}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := table.NewMemStore()
			learnScrapes(t, st, a, tc.scrapes)
			assert.Equal(t, tc.want, ReadLearned(st, a).Seqs)
		})
	}
}

func TestLearnBatchLimitNeedsBothFigures(t *testing.T) {
	st := table.NewMemStore()
	for at := int64(0); at < 200; at += 50 {
		snap := scrape.Snapshot{Waiting: 2, Running: 4, Has: scrape.HasWaiting}
		require.NoError(t, LearnScrape(st, a, snap, at+1))
	}
	assert.Zero(t, ReadLearned(st, a).Seqs, "no running count: nothing to learn")
}

func TestLearnStream(t *testing.T) {
	ms := time.Millisecond
	hot := func(ttft time.Duration) StreamSample {
		return StreamSample{Duration: 600 * ms, TTFT: ttft, Uncached: 1, Blocks: 100}
	}
	cold := func(ttft time.Duration) StreamSample {
		return StreamSample{Duration: 700 * ms, TTFT: ttft, Uncached: 100, Blocks: 100}
	}
	tests := []struct {
		name        string
		samples     []StreamSample
		wantService time.Duration // 0: none learned
		wantPrefill time.Duration // 0: none learned
	}{
		{"nothing", nil, 0, 0},
		{"service time is the mean duration", []StreamSample{{Duration: 400 * ms}, {Duration: 600 * ms}}, 500 * ms, 0},
		{"cached streams alone teach no prefill time", []StreamSample{hot(20 * ms), hot(30 * ms)}, 600 * ms, 0},
		{"cold streams alone: their time per block, an upper bound", []StreamSample{cold(520 * ms)}, 700 * ms, 5200 * time.Microsecond},
		{"cached and cold: the slope, the fixed part cancels",
			[]StreamSample{hot(20 * ms), cold(515 * ms), hot(20 * ms), cold(515 * ms)}, 650 * ms, 5 * ms},
		{"a middle sample (40% cold) counts for service only",
			[]StreamSample{hot(20 * ms), {Duration: 800 * ms, TTFT: 300 * ms, Uncached: 40, Blocks: 100}, cold(515 * ms)}, 700 * ms, 5 * ms},
		{"a small cold prompt is not a cold point", []StreamSample{{Duration: 100 * ms, TTFT: 30 * ms, Uncached: 3, Blocks: 3}}, 100 * ms, 0},
		{"absurd samples are ignored", []StreamSample{
			{Duration: -ms}, {Duration: 0}, {Duration: 2 * time.Hour},
			{Duration: 500 * ms, TTFT: 600 * ms, Uncached: 100, Blocks: 100}, // first token after the end: no point
			{Duration: 500 * ms, TTFT: 400 * ms, Uncached: math.NaN(), Blocks: 100},
			{Duration: 500 * ms, TTFT: 400 * ms, Uncached: -3, Blocks: 100},
			{Duration: 500 * ms, TTFT: 400 * ms, Uncached: 200, Blocks: 100},
			{Duration: 500 * ms, TTFT: -400 * ms, Uncached: 100, Blocks: 100},
		}, 500 * ms, 0},
		{"a cold point below the cached one gives no negative slope",
			[]StreamSample{hot(300 * ms), cold(100 * ms)}, 650 * ms, time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := table.NewMemStore()
			for _, s := range tc.samples {
				require.NoError(t, LearnStream(st, a, s))
			}
			l := ReadLearned(st, a)
			assert.InDelta(t, tc.wantService.Seconds(), l.ServiceTime().Seconds(), 1e-6)
			assert.InDelta(t, tc.wantPrefill.Seconds(), l.PrefillPerBlock().Seconds(), 1e-6)
		})
	}
}

// TestLearnStreamDecays: the means follow a change within a bounded
// number of samples, and a record never grows.
func TestLearnStreamDecays(t *testing.T) {
	st := table.NewMemStore()
	for range 1000 {
		require.NoError(t, LearnStream(st, a, StreamSample{Duration: 10 * time.Second}))
	}
	for range 4 * learnDecay {
		require.NoError(t, LearnStream(st, a, StreamSample{Duration: time.Second}))
	}
	l := ReadLearned(st, a)
	assert.InDelta(t, 1.0, l.ServiceTime().Seconds(), 0.2, "the old figure has decayed")
	assert.Equal(t, learnDecay, l.Service.N)
	raw, _, _, err := st.Get(keyLearn + a)
	require.NoError(t, err)
	assert.Less(t, len(raw), 128)
}

func TestLatencyFigures(t *testing.T) {
	learned := func(seqs int, svc float64, hot, cold Point) Learned {
		return Learned{Seqs: seqs, Service: Mean{V: svc, N: 4}, Hot: hot, Cold: cold}
	}
	hot := Point{X: 1, Y: 0.02, N: 4}
	cold := Point{X: 101, Y: 0.52, N: 2}
	tests := []struct {
		name        string
		latency     string
		cands       []Learned
		wantSeqs    []float64
		wantService float64
		wantPrefill float64
	}{
		{"nothing learned: no limit, fallbacks", `{}`, []Learned{{}, {}}, []float64{0, 0}, FallbackServiceTime.Seconds(), FallbackPrefillPerBlock.Seconds()},
		{"learned, pooled over the candidates", `{}`, []Learned{learned(4, 0.5, hot, cold), learned(0, 0.7, Point{}, Point{})},
			[]float64{4, 4}, 0.6, 0.005},
		{"each endpoint its own limit", `{}`, []Learned{learned(4, 0.5, hot, cold), learned(8, 0.5, hot, cold)}, []float64{4, 8}, 0.5, 0.005},
		{"configured figures win", `{"max_num_seqs":16,"service_time":"3s","prefill_per_block":"1ms"}`,
			[]Learned{learned(4, 0.5, hot, cold), {}}, []float64{16, 16}, 3, 0.001},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := policy(t, `,"scoring":"latency","latency":`+tc.latency)
			var cs []Candidate
			for _, l := range tc.cands {
				cs = append(cs, Candidate{Learned: l})
			}
			f := p.Latency.figures(cs)
			assert.Equal(t, tc.wantSeqs, p.Latency.seqs(cs))
			assert.InDelta(t, tc.wantService, f.ServiceTime, 1e-9)
			assert.InDelta(t, tc.wantPrefill, f.PrefillPerBlock, 1e-9)
		})
	}
}

// TestLearnedLatencyScoring: latency scoring with nothing configured keeps
// a group on its full home until a scrape has shown the batch limit (no
// limit known: no slot wait), then spills a full home's next request to an
// idle server as the configured mode does.
func TestLearnedLatencyScoring(t *testing.T) {
	system := strings.Repeat("You are a helpful assistant for group seven. ", 60)
	require.NotNil(t, policy(t, "").Latency, "latency scoring is the default")
	require.Nil(t, policy(t, `,"scoring":"weights"`).Latency)
	p := policy(t, `,"scoring":"latency"`)
	h := newHost()
	x := newIndex(t, p, h)
	h.allIdle(t)
	first := p.Pick(h, x, Request{Model: "m", Blocks: chatBlocks(system, "q0"), HasSubset: true, Subset: []string{a}})
	require.NoError(t, p.Commit(h, x, &first))
	require.NoError(t, p.Done(h, a))
	// The streams taught a service time of 2 s and 8 ms per block (slot 0.5 s, a cold prompt ~0.7 slots).
	for _, e := range []string{a, b, c} {
		for range 4 {
			require.NoError(t, LearnStream(h.st, e, StreamSample{Duration: 2 * time.Second, TTFT: 20 * time.Millisecond, Uncached: 1, Blocks: 43}))
			require.NoError(t, LearnStream(h.st, e, StreamSample{Duration: 2 * time.Second, TTFT: 20*time.Millisecond + 42*8*time.Millisecond, Uncached: 43, Blocks: 43}))
		}
	}
	pickHome := func() bool {
		d := p.Pick(h, x, Request{Model: "m", Blocks: chatBlocks(system, "another question")})
		require.Zero(t, d.Status, d.Err)
		return d.Endpoints[0] == a
	}
	h.metrics(t, a, 0, 4, 0.3)
	assert.True(t, pickHome(), "no limit known: the home with 4 running keeps its group")

	// b showed a queue in two scrapes: 4 is the pool's limit, the home is full.
	for range 2 {
		h.now += 50
		h.allIdle(t)
		h.metrics(t, a, 0, 4, 0.3)
		h.metrics(t, b, 1, 4, 0.3)
		learnScrapes(t, h.st, b, []obs{o(h.now-1_000_000, 1, 4)})
		h.metrics(t, b, 0, 0, 0)
	}
	require.Equal(t, 4, ReadLearned(h.st, b).Seqs)
	assert.False(t, pickHome(), "the full home spills to an idle server")
	h.metrics(t, a, 0, 3, 0.3)
	assert.True(t, pickHome(), "a home with a free slot keeps its group")
}

// FuzzLearned: any record decodes to bounded figures or is refused, a
// decoded record survives a round trip, and learning from any inputs
// keeps the record valid.
func FuzzLearned(f *testing.F) {
	f.Add(encodeLearned(Learned{Seqs: 4, SeqsAtMs: 5, Service: Mean{V: 0.5, N: 3}, Hot: Point{X: 1, Y: 0.02, N: 2}}), 4.0, 1.0, int64(500), int64(50), 3.0, 10)
	f.Add([]byte{0xff, 0xff}, math.NaN(), math.Inf(1), int64(-1), int64(1<<62), -1.0, -5)
	f.Fuzz(func(t *testing.T, raw []byte, running, waiting float64, durMs, ttftMs int64, uncached float64, blocks int) {
		l, ok := decodeLearned(raw)
		if ok {
			again, ok2 := decodeLearned(encodeLearned(l))
			if !ok2 || fmt.Sprint(again) != fmt.Sprint(l) {
				t.Fatalf("round trip changed %+v to %+v", l, again)
			}
		}
		st := table.NewMemStore()
		_, _ = st.Set(keyLearn+a, raw, 0)
		for i := range 3 {
			snap := scrape.Snapshot{Waiting: waiting, Running: running, Has: scrape.HasWaiting | scrape.HasRunning}
			if err := LearnScrape(st, a, snap, int64(1000+50*i)); err != nil {
				t.Fatal(err)
			}
		}
		s := StreamSample{Duration: time.Duration(durMs) * time.Millisecond, TTFT: time.Duration(ttftMs) * time.Millisecond, Uncached: uncached, Blocks: blocks}
		if err := LearnStream(st, a, s); err != nil {
			t.Fatal(err)
		}
		got, _, _, _ := st.Get(keyLearn + a)
		if string(got) != string(raw) { // learning wrote it
			if _, ok := decodeLearned(got); !ok {
				t.Fatalf("learning wrote an invalid record %x", got)
			}
		}
		l = ReadLearned(st, a)
		if svc := l.ServiceTime(); svc < 0 || svc > maxSample {
			t.Fatalf("service time %v", svc)
		}
		if ppb := l.PrefillPerBlock(); ppb < 0 || ppb > maxPrefillPerBlock {
			t.Fatalf("prefill per block %v", ppb)
		}
		if l.Seqs < 0 || l.Seqs > MaxLearnedSeqs {
			t.Fatalf("seqs %d", l.Seqs)
		}
	})
}
