package mockllm

import (
	"container/list"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/shared/apierror"
)

// SimOptions turn the mock into a simulated vLLM server under load, so the
// endpoint picker can be tested and benchmarked against servers whose
// queues, KV caches and LoRA adapters behave like vLLM's:
//
//   - at most MaxNumSeqs sequences run at once; the rest wait in a FIFO
//     queue of at most MaxQueue (then 429), requests for resident LoRA
//     adapters first;
//   - time to first token is the queue wait plus Overhead plus
//     PrefillPerToken for every prompt token not found in the prefix cache
//     (prompts are cut into blocks of BlockSize tokens; a block is
//     BlockSize×4 bytes of the prompt, chained-hashed; the cache holds
//     NumBlocks blocks, least recently used evicted);
//   - decoding takes ITL per output token, both slowed by LoadFactor as the
//     batch fills (linearly from 1 at one sequence to LoadFactor at
//     MaxNumSeqs);
//   - GET /metrics reports vLLM's metric names (see WriteMetrics).
//
// Every delay is multiplied by TimeScale, so tests run the same schedule
// ten times faster with TimeScale 0.1. With max_tokens (or
// max_completion_tokens) set, a simulated reply has exactly that many
// tokens, as vLLM's ignore_eos benchmarks do.
type SimOptions struct {
	// MaxNumSeqs is vLLM's --max-num-seqs (default 4).
	MaxNumSeqs int
	// MaxQueue bounds the waiting queue; beyond it requests get 429 (default 1000).
	MaxQueue int
	// Overhead is the fixed part of the time to first token (default 20ms).
	Overhead time.Duration
	// PrefillPerToken is the prefill time of one uncached prompt token (default 500µs).
	PrefillPerToken time.Duration
	// ITL is the time between output tokens (default 10ms).
	ITL time.Duration
	// LoadFactor slows prefill and decode when the batch is full (default 1: no slowdown).
	LoadFactor float64
	// BlockSize is the KV-cache block size in tokens (default 16).
	BlockSize int
	// NumBlocks is the number of KV-cache blocks (default 512).
	NumBlocks int
	// Loras are LoRA adapter names the server accepts as models.
	Loras []string
	// PreloadedLoras are resident from the start (each must be in Loras).
	PreloadedLoras []string
	// MaxLoras is vLLM's --max-loras: adapters resident at once (default 2).
	MaxLoras int
	// LoraLoadTime is added to the prefill of a request whose adapter must be loaded (default 50ms).
	LoraLoadTime time.Duration
	// TimeScale multiplies every simulated delay (default 1).
	TimeScale float64
}

// withDefaults fills the zero fields.
func (o SimOptions) withDefaults() SimOptions {
	if o.MaxNumSeqs <= 0 {
		o.MaxNumSeqs = 4
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 1000
	}
	if o.Overhead == 0 {
		o.Overhead = 20 * time.Millisecond
	}
	if o.PrefillPerToken == 0 {
		o.PrefillPerToken = 500 * time.Microsecond
	}
	if o.ITL == 0 {
		o.ITL = 10 * time.Millisecond
	}
	if o.LoadFactor < 1 {
		o.LoadFactor = 1
	}
	if o.BlockSize <= 0 {
		o.BlockSize = 16
	}
	if o.NumBlocks <= 0 {
		o.NumBlocks = 512
	}
	if o.MaxLoras <= 0 {
		o.MaxLoras = 2
	}
	if o.LoraLoadTime == 0 {
		o.LoraLoadTime = 50 * time.Millisecond
	}
	if o.TimeScale <= 0 {
		o.TimeScale = 1
	}
	return o
}

// Validate reports options a simulator cannot run with.
func (o SimOptions) Validate() error {
	if o.Overhead < 0 || o.PrefillPerToken < 0 || o.ITL < 0 || o.LoraLoadTime < 0 {
		return fmt.Errorf("simulator delays must not be negative")
	}
	if o.MaxNumSeqs > 4096 || o.MaxQueue > 1<<20 || o.NumBlocks > 1<<22 || o.BlockSize > 1024 || o.MaxLoras > 256 {
		return fmt.Errorf("simulator sizes out of range (max-num-seqs ≤ 4096, queue ≤ %d, blocks ≤ %d, block size ≤ 1024, max-loras ≤ 256)", 1<<20, 1<<22)
	}
	for _, l := range o.PreloadedLoras {
		if !slices.Contains(o.Loras, l) {
			return fmt.Errorf("preloaded LoRA %q is not one of the LoRA adapters", l)
		}
	}
	if d := o.withDefaults(); len(o.PreloadedLoras) > d.MaxLoras {
		return fmt.Errorf("%d preloaded LoRAs exceed max-loras %d", len(o.PreloadedLoras), d.MaxLoras)
	}
	return nil
}

// charsPerToken turns a block of tokens into bytes of prompt text.
const charsPerToken = 4

// sim is the scheduler and cache state of a simulated server.
type sim struct {
	o SimOptions

	mu        sync.Mutex
	running   int
	heldKV    int            // KV blocks reserved by running sequences
	queue     *list.List     // of *simWaiter
	loaded    *list.List     // resident adapters, most recently used first (of string)
	loraRun   map[string]int // running sequences per adapter
	cache     *list.List     // prefix-cache block hashes, most recently used first
	cacheIdx  map[uint64]*list.Element
	counters  map[string]float64 // monotonic counters by metric line
	successes map[string]float64 // request_success_total by finished_reason
}

// simWaiter is a request waiting for a sequence slot.
type simWaiter struct {
	lora    string
	ready   chan struct{}
	granted bool
	loads   bool // its adapter was loaded for it
}

func newSim(o SimOptions) *sim {
	o = o.withDefaults()
	m := &sim{o: o, queue: list.New(), loaded: list.New(), loraRun: map[string]int{},
		cache: list.New(), cacheIdx: map[uint64]*list.Element{}, counters: map[string]float64{}, successes: map[string]float64{}}
	for _, l := range o.PreloadedLoras {
		m.loaded.PushBack(l)
	}
	return m
}

// scale applies TimeScale.
func (m *sim) scale(d time.Duration) time.Duration {
	return time.Duration(float64(d) * m.o.TimeScale)
}

// pacing is the schedule of one admitted request.
type pacing struct {
	ttft   time.Duration // from now to the first token
	itl    time.Duration
	cached int // prompt tokens served from the prefix cache
	done   func(finish string)
}

// isLora reports whether model is one of the adapters.
func (m *sim) isLora(model string) bool { return slices.Contains(m.o.Loras, model) }

// residentLocked finds a resident adapter.
func (m *sim) residentLocked(lora string) *list.Element {
	for e := m.loaded.Front(); e != nil; e = e.Next() {
		if e.Value.(string) == lora {
			return e
		}
	}
	return nil
}

// canStartLocked reports whether a request for lora may start now, and
// whether its adapter must be loaded first (evicting an idle one if needed).
func (m *sim) canStartLocked(lora string, residentOnly bool) (ok, loads bool) {
	if m.running >= m.o.MaxNumSeqs {
		return false, false
	}
	if lora == "" || m.residentLocked(lora) != nil {
		return true, false
	}
	if residentOnly {
		return false, false
	}
	if m.loaded.Len() < m.o.MaxLoras {
		return true, true
	}
	for e := m.loaded.Back(); e != nil; e = e.Prev() {
		if m.loraRun[e.Value.(string)] == 0 {
			return true, true
		}
	}
	return false, false
}

// startLocked runs a granted request: counts it and makes its adapter resident.
func (m *sim) startLocked(lora string, loads bool) {
	m.running++
	if lora == "" {
		return
	}
	m.loraRun[lora]++
	if e := m.residentLocked(lora); e != nil {
		m.loaded.MoveToFront(e)
		return
	}
	if loads && m.loaded.Len() >= m.o.MaxLoras {
		for e := m.loaded.Back(); e != nil; e = e.Prev() {
			if m.loraRun[e.Value.(string)] == 0 {
				m.loaded.Remove(e)
				break
			}
		}
	}
	m.loaded.PushFront(lora)
}

// dispatchLocked grants waiting requests while slots are free: first those
// whose adapter is resident (or that need none), in arrival order, then
// those whose adapter can be loaded.
func (m *sim) dispatchLocked() {
	for m.running < m.o.MaxNumSeqs && m.queue.Len() > 0 {
		var pick *list.Element
		loads := false
		for _, residentOnly := range []bool{true, false} {
			for e := m.queue.Front(); e != nil; e = e.Next() {
				if ok, l := m.canStartLocked(e.Value.(*simWaiter).lora, residentOnly); ok {
					pick, loads = e, l
					break
				}
			}
			if pick != nil {
				break
			}
		}
		if pick == nil {
			return
		}
		w := m.queue.Remove(pick).(*simWaiter)
		w.granted, w.loads = true, loads
		m.startLocked(w.lora, loads)
		close(w.ready)
	}
}

// admit waits for a sequence slot, then computes the request's schedule
// from the prefix cache and the load. prompt is the canonical prompt text
// (its blocks are what the cache matches), promptTokens its usage count.
func (m *sim) admit(ctx context.Context, model, prompt string, promptTokens, outTokens int) (*pacing, *apierror.Error) {
	lora := ""
	if m.isLora(model) {
		lora = model
	}
	m.mu.Lock()
	w := &simWaiter{lora: lora, ready: make(chan struct{})}
	if m.queue.Len() >= m.o.MaxQueue {
		m.mu.Unlock()
		return nil, apierror.New(http.StatusTooManyRequests, "server_busy", "The simulated server's waiting queue is full.")
	}
	elem := m.queue.PushBack(w)
	m.dispatchLocked()
	m.mu.Unlock()
	select {
	case <-w.ready:
	case <-ctx.Done():
		m.mu.Lock()
		defer m.mu.Unlock()
		if !w.granted {
			m.queue.Remove(elem)
			return nil, nil
		}
		m.finishLocked(lora, 0, "abort")
		return nil, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()

	blocks := promptBlocks(model, prompt, m.o.BlockSize*charsPerToken)
	hits := m.matchLocked(blocks)
	m.insertLocked(blocks)
	// One more block than the full ones: the partial last block (or the
	// last token, which vLLM always computes) never comes from the cache.
	cached := promptTokens * hits / (len(blocks) + 1)
	m.counters["vllm:prefix_cache_queries_total"] += float64(promptTokens)
	m.counters["vllm:prefix_cache_hits_total"] += float64(cached)
	m.counters["vllm:prompt_tokens_total"] += float64(promptTokens)

	kv := (promptTokens+outTokens+m.o.BlockSize-1)/m.o.BlockSize + 1
	m.heldKV += kv
	slow := 1.0
	if m.o.MaxNumSeqs > 1 {
		slow = 1 + (m.o.LoadFactor-1)*float64(m.running-1)/float64(m.o.MaxNumSeqs-1)
	}
	prefill := m.o.Overhead + time.Duration(float64(time.Duration(promptTokens-cached)*m.o.PrefillPerToken)*slow)
	if w.loads {
		prefill += m.o.LoraLoadTime
	}
	p := &pacing{ttft: m.scale(prefill), itl: m.scale(time.Duration(float64(m.o.ITL) * slow)), cached: cached}
	var once sync.Once
	p.done = func(finish string) {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.heldKV -= kv
			m.finishLocked(lora, outTokens, finish)
		})
	}
	return p, nil
}

// finishLocked frees a slot and grants the next waiters.
func (m *sim) finishLocked(lora string, outTokens int, finish string) {
	m.running--
	if lora != "" {
		if m.loraRun[lora]--; m.loraRun[lora] <= 0 {
			delete(m.loraRun, lora)
		}
	}
	if finish != "" {
		m.successes[finish]++
		if finish != "abort" {
			m.counters["vllm:generation_tokens_total"] += float64(outTokens)
		}
	}
	m.dispatchLocked()
}

// promptBlocks cuts prompt into full blocks of size bytes and returns their
// chained hashes, seeded by the model, so equal prefixes share hashes.
func promptBlocks(model, prompt string, size int) []uint64 {
	n := len(prompt) / size
	out := make([]uint64, 0, n)
	h := fnv.New64a()
	io.WriteString(h, model)
	prev := h.Sum64()
	var buf [8]byte
	for i := 0; i < n; i++ {
		h.Reset()
		for j := range buf {
			buf[j] = byte(prev >> (8 * j))
		}
		h.Write(buf[:])
		io.WriteString(h, prompt[i*size:(i+1)*size])
		prev = h.Sum64()
		out = append(out, prev)
	}
	return out
}

// matchLocked counts the leading blocks found in the cache.
func (m *sim) matchLocked(blocks []uint64) int {
	for i, b := range blocks {
		if _, ok := m.cacheIdx[b]; !ok {
			return i
		}
	}
	return len(blocks)
}

// insertLocked makes blocks the most recently used, evicting the least
// recently used beyond NumBlocks.
func (m *sim) insertLocked(blocks []uint64) {
	for _, b := range blocks {
		if e, ok := m.cacheIdx[b]; ok {
			m.cache.MoveToFront(e)
			continue
		}
		m.cacheIdx[b] = m.cache.PushFront(b)
		for m.cache.Len() > m.o.NumBlocks {
			last := m.cache.Back()
			delete(m.cacheIdx, last.Value.(uint64))
			m.cache.Remove(last)
		}
	}
}

// SimState is a snapshot of a simulated server, for tests and logs.
type SimState struct {
	Running, Waiting int
	KVUsage          float64
	CachedBlocks     int
	Resident         []string // resident LoRA adapters, most recently used first
	WaitingLoras     []string
}

// State returns the simulator's current state; ok is false when the server
// is not a simulator.
func (s *Server) State() (SimState, bool) {
	if s.sim == nil {
		return SimState{}, false
	}
	return s.sim.state(), true
}

func (m *sim) state() SimState {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := SimState{Running: m.running, Waiting: m.queue.Len(), CachedBlocks: m.cache.Len(),
		KVUsage: min(1, float64(m.heldKV)/float64(m.o.NumBlocks))}
	for e := m.loaded.Front(); e != nil; e = e.Next() {
		st.Resident = append(st.Resident, e.Value.(string))
	}
	seen := map[string]bool{}
	for e := m.queue.Front(); e != nil; e = e.Next() {
		l := e.Value.(*simWaiter).lora
		if l != "" && !seen[l] && !slices.Contains(st.Resident, l) {
			seen[l] = true
			st.WaitingLoras = append(st.WaitingLoras, l)
		}
	}
	return st
}

// metrics answers GET /metrics in the Prometheus text format with vLLM's
// names: vllm:num_requests_running, vllm:num_requests_waiting,
// vllm:kv_cache_usage_perc (and the older vllm:gpu_cache_usage_perc),
// vllm:cache_config_info{block_size,num_gpu_blocks}, vllm:lora_requests_info
// {running_lora_adapters (resident adapters), waiting_lora_adapters, max_lora}
// whose value is a timestamp, and the prefix-cache, token and request counters.
func (m *sim) metrics(w http.ResponseWriter, _ *http.Request) {
	st := m.state()
	m.mu.Lock()
	counters := make(map[string]float64, len(m.counters))
	for k, v := range m.counters {
		counters[k] = v
	}
	succ := make(map[string]float64, len(m.successes))
	for k, v := range m.successes {
		succ[k] = v
	}
	m.mu.Unlock()
	const model = `model_name="sim"`
	var b strings.Builder
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s{%s} %s\n", name, help, name, name, model, strconv.FormatFloat(v, 'g', -1, 64))
	}
	gauge("vllm:num_requests_running", "Number of requests in model execution batches.", float64(st.Running))
	gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", float64(st.Waiting))
	gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", st.KVUsage)
	gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", st.KVUsage)
	fmt.Fprintf(&b, "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n# TYPE vllm:cache_config_info gauge\n"+
		"vllm:cache_config_info{block_size=\"%d\",enable_prefix_caching=\"True\",num_gpu_blocks=\"%d\"} 1.0\n", m.o.BlockSize, m.o.NumBlocks)
	fmt.Fprintf(&b, "# HELP vllm:lora_requests_info Running stats on lora requests.\n# TYPE vllm:lora_requests_info gauge\n"+
		"vllm:lora_requests_info{max_lora=\"%d\",running_lora_adapters=\"%s\",waiting_lora_adapters=\"%s\"} %d.0\n",
		m.o.MaxLoras, strings.Join(st.Resident, ","), strings.Join(st.WaitingLoras, ","), time.Now().Unix())
	for _, name := range []string{"vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total"} {
		fmt.Fprintf(&b, "# TYPE %s counter\n%s{%s} %s\n", name, name, model, strconv.FormatFloat(counters[name], 'f', 1, 64))
	}
	b.WriteString("# TYPE vllm:request_success_total counter\n")
	for _, reason := range []string{"abort", "length", "stop"} {
		fmt.Fprintf(&b, "vllm:request_success_total{finished_reason=%q,%s} %.1f\n", reason, model, succ[reason])
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	io.WriteString(w, b.String())
}

// schedule paces a generation request: in a simulator it waits for a
// sequence slot and derives the delays from the cache and load; otherwise
// it returns the configured fixed delays. A nil pacing with a nil error
// means the client went away while waiting.
func (s *Server) schedule(ctx context.Context, model, prompt string, promptTokens, outTokens int) (*pacing, *apierror.Error) {
	if s.sim == nil {
		return &pacing{ttft: s.opts.TimeToFirstToken, itl: s.opts.InterTokenDelay, done: func(string) {}}, nil
	}
	return s.sim.admit(ctx, model, prompt, promptTokens, outTokens)
}

// simReplies makes n replies; in a simulator with a limit, each has exactly
// limit tokens (ignore_eos), otherwise generate's natural lengths.
func (s *Server) simReplies(seed uint64, n, limit int) []reply {
	replies := make([]reply, n)
	for i := range replies {
		sd := seedWith(seed, int64(i))
		if s.sim != nil && limit > 0 {
			replies[i] = generateExactly(sd, limit)
			continue
		}
		replies[i] = generate(sd, limit)
	}
	return replies
}

// generateExactly makes a reply of exactly n one-token pieces.
func generateExactly(seed uint64, n int) reply {
	g := rng{s: seed}
	pieces := make([]string, 0, n)
	for i := 0; i < n; i++ {
		w := vocabulary[g.next()%uint64(len(vocabulary))]
		if i > 0 {
			w = " " + w
		}
		pieces = append(pieces, w)
	}
	return reply{pieces: pieces, finish: "length"}
}
