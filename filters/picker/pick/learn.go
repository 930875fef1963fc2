package pick

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/tollgate/tollgate/filters/picker/scrape"
	"github.com/tollgate/tollgate/shared/table"
)

// Latency scoring needs three facts about the servers that no engine
// exports: the batch limit (vLLM's --max-num-seqs), how long a request
// holds a slot, and the prefill time of a prompt block. The picker learns
// them per endpoint, in shared data next to the endpoint's metrics (one
// picture per Envoy), and pools them over a request's candidates:
//
//   - the batch limit from scrapes: once two scrapes in a row show requests
//     waiting (and none of them for a LoRA adapter that is not resident),
//     the running count then is the limit; a later running count above it
//     raises it; a lower one replaces it only after LearnSeqsTTL without
//     confirmation (a server restarted with a smaller batch). Until then the
//     endpoint has no known limit and no slot wait;
//   - the service time from this Envoy's own streams: pick to stream end of
//     2xx responses picked while the endpoint had a free slot (so queueing
//     does not inflate it), a decaying mean;
//   - the prefill time per block from this Envoy's own event streams: time
//     from the pick to the first response bytes (the first token) against
//     the prompt blocks the endpoint did not hold, as two decaying means
//     (mostly cached and mostly cold prompts) whose slope is the time per
//     block; the fixed part (network, overhead) cancels out.
//
// Every input is checked (NaN, negative, huge values are ignored) and
// every output clamped; a configured figure overrides the learned one.

// Bounds of the learned figures.
const (
	// MaxLearnedSeqs bounds a learned batch limit (max_num_seqs' range).
	MaxLearnedSeqs = 65536
	// LearnSeqsTTL: a learned limit not confirmed for this long may fall.
	LearnSeqsTTL = 10 * time.Minute
	// learnDecay is the weight of the newest sample once a mean has
	// learnDecay samples (until then every sample counts equally).
	learnDecay = 32
	// maxSample bounds a stream duration sample.
	maxSample = time.Hour
	// minServiceTime and minPrefillPerBlock clamp the estimates from below.
	minServiceTime     = time.Millisecond
	minPrefillPerBlock = time.Microsecond
	maxPrefillPerBlock = 10 * time.Second
	// minSlopeBlocks: the cold and cached means must be this many uncached
	// blocks apart before their slope is trusted.
	minSlopeBlocks = 4
	// unitSeqs sizes the slot unit of an endpoint whose limit is unknown
	// (vLLM's long-standing default --max-num-seqs); it only scales the
	// least-loaded tie-break and the LoRA and session bonuses.
	unitSeqs = 256
)

// Fallbacks until a figure is learned or configured.
const (
	FallbackServiceTime     = 2 * time.Second
	FallbackPrefillPerBlock = 8 * time.Millisecond
)

const keyLearn = keyPrefix + "learn."

// Mean is a decaying mean: every sample counts equally until there are
// learnDecay of them, then the newest weighs 1/learnDecay.
type Mean struct {
	V float64
	N int
}

func (m *Mean) add(v float64) {
	m.N = min(m.N+1, learnDecay)
	m.V += (v - m.V) / float64(m.N)
}

// Point is a decaying mean of (uncached blocks, time to first token in s).
type Point struct {
	X, Y float64
	N    int
}

func (p *Point) add(x, y float64) {
	p.N = min(p.N+1, learnDecay)
	p.X += (x - p.X) / float64(p.N)
	p.Y += (y - p.Y) / float64(p.N)
}

// Learned is what the picker has learned about one endpoint.
type Learned struct {
	// Seqs is the learned batch limit (0: not learned).
	Seqs int
	// SeqsAtMs is when Seqs was set or last confirmed.
	SeqsAtMs int64
	// WaitSinceMs is the time of the first of the current run of scrapes
	// that showed requests waiting (0: the last scrape showed none).
	WaitSinceMs int64
	// Service is the mean time (s) from pick to stream end of requests
	// picked while the endpoint had a free slot.
	Service Mean
	// Hot and Cold are the means of mostly cached (≤ 25% of the blocks
	// uncached) and mostly cold (≥ 50%, ≥ minSlopeBlocks) streams.
	Hot, Cold Point
}

func encodeLearned(l Learned) []byte {
	b := make([]byte, 0, 96)
	b = binary.AppendUvarint(b, uint64(l.Seqs))
	b = binary.AppendVarint(b, l.SeqsAtMs)
	b = binary.AppendVarint(b, l.WaitSinceMs)
	b = binary.AppendUvarint(b, uint64(l.Service.N))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(l.Service.V))
	for _, p := range []Point{l.Hot, l.Cold} {
		b = binary.AppendUvarint(b, uint64(p.N))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(p.X))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(p.Y))
	}
	return b
}

// decodeLearned reads a record; a corrupt or out-of-range one is refused
// (ok false) and learning starts over.
func decodeLearned(b []byte) (l Learned, ok bool) {
	r := reader{b: b}
	l.Seqs = int(r.uvarint())
	l.SeqsAtMs = r.varint()
	l.WaitSinceMs = r.varint()
	l.Service.N = int(r.uvarint())
	l.Service.V = r.float()
	for _, p := range []*Point{&l.Hot, &l.Cold} {
		p.N = int(r.uvarint())
		p.X, p.Y = r.float(), r.float()
	}
	if r.bad || len(r.b) != 0 || l.Seqs > MaxLearnedSeqs || !l.Service.valid() || !l.Hot.valid() || !l.Cold.valid() {
		return Learned{}, false
	}
	return l, true
}

func (m Mean) valid() bool {
	return m.N >= 0 && m.N <= learnDecay && m.V >= 0 && m.V <= maxSample.Seconds()
}

func (p Point) valid() bool {
	return p.N >= 0 && p.N <= learnDecay && p.X >= 0 && p.X <= maxLearnBlocks && p.Y >= 0 && p.Y <= maxSample.Seconds()
}

// maxLearnBlocks bounds the uncached blocks of a sample (max_blocks' range).
const maxLearnBlocks = 4096

// ReadLearned returns an endpoint's learned figures (zero when none).
func ReadLearned(st table.Store, addr string) Learned {
	raw, _, found, err := st.Get(keyLearn + addr)
	if err != nil || !found {
		return Learned{}
	}
	l, _ := decodeLearned(raw)
	return l
}

// updateLearned applies f under CAS; f reports whether it changed anything.
func updateLearned(st table.Store, addr string, f func(*Learned) bool) error {
	for range maxCAS {
		raw, cas, found, err := st.Get(keyLearn + addr)
		if err != nil {
			return err
		}
		var l Learned
		if found {
			l, _ = decodeLearned(raw)
		}
		if !f(&l) {
			return nil
		}
		ok, err := st.Set(keyLearn+addr, encodeLearned(l), cas)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
	}
	return errContention
}

// LearnScrape learns the batch limit from a scrape of addr.
func LearnScrape(st table.Store, addr string, snap scrape.Snapshot, nowMs int64) error {
	if snap.Has&(scrape.HasWaiting|scrape.HasRunning) != scrape.HasWaiting|scrape.HasRunning {
		return nil
	}
	// Comparisons are false for NaN: such a scrape teaches nothing.
	if !(snap.Running >= 0 && snap.Running <= MaxLearnedSeqs && snap.Waiting >= 0 && snap.Waiting <= 1e9) {
		return nil
	}
	run := int(snap.Running)
	// Requests waiting for an adapter that is not resident wait for a LoRA
	// slot, not for a sequence slot.
	queued := snap.Waiting >= 1 && len(snap.WaitingLoras) == 0
	refresh := int64(10_000) // confirm a limit at most every 10 s
	return updateLearned(st, addr, func(l *Learned) bool {
		changed := false
		if l.Seqs > 0 && run > l.Seqs {
			// No server runs more than its limit.
			l.Seqs, l.SeqsAtMs, changed = run, nowMs, true
		}
		switch {
		case !queued:
			if l.WaitSinceMs != 0 {
				l.WaitSinceMs, changed = 0, true
			}
		case l.WaitSinceMs == 0 || l.WaitSinceMs > nowMs:
			l.WaitSinceMs, changed = nowMs, true
		case nowMs-l.WaitSinceMs >= 10 && run >= 1:
			// A queue that outlived a scrape interval: the batch is full.
			switch {
			case l.Seqs == 0 || run > l.Seqs || (run < l.Seqs && nowMs-l.SeqsAtMs > LearnSeqsTTL.Milliseconds()):
				l.Seqs, l.SeqsAtMs, changed = run, nowMs, true
			case run == l.Seqs && nowMs-l.SeqsAtMs > refresh:
				l.SeqsAtMs, changed = nowMs, true
			}
		}
		return changed
	})
}

// StreamSample is one finished request as the filter saw it.
type StreamSample struct {
	// Duration is from the pick to the end of the stream.
	Duration time.Duration
	// TTFT is from the pick to the first response body bytes of an event
	// stream (0: not an event stream, or no body).
	TTFT time.Duration
	// Uncached is the prompt blocks the endpoint did not hold at the pick;
	// Blocks the prompt's blocks.
	Uncached float64
	Blocks   int
}

// LearnStream learns the service time and the prefill time per block from
// a 2xx response of addr that was picked while addr had a free slot.
func LearnStream(st table.Store, addr string, s StreamSample) error {
	dur := s.Duration
	if dur <= 0 || dur > maxSample {
		return nil
	}
	ttft := s.TTFT
	x := s.Uncached
	point := ttft > 0 && ttft <= dur && s.Blocks > 0 && s.Blocks <= maxLearnBlocks && x >= 0 && x <= float64(s.Blocks)
	return updateLearned(st, addr, func(l *Learned) bool {
		l.Service.add(dur.Seconds())
		if point {
			switch frac := x / float64(s.Blocks); {
			case frac <= 0.25:
				l.Hot.add(x, ttft.Seconds())
			case frac >= 0.5 && x >= minSlopeBlocks:
				l.Cold.add(x, ttft.Seconds())
			}
		}
		return true
	})
}

// Figures are the latency model's inputs for one pick.
type Figures struct {
	// ServiceTime and PrefillPerBlock in seconds.
	ServiceTime, PrefillPerBlock float64
	// Learned flags which came from learning rather than configuration or fallback.
	LearnedService, LearnedPrefill bool
}

// ServiceTime is the learned mean service time (0: none learned).
func (l Learned) ServiceTime() time.Duration {
	if l.Service.N == 0 {
		return 0
	}
	return clampDuration(l.Service.V, minServiceTime, maxSample)
}

// PrefillPerBlock is the prefill time per block from one endpoint's
// samples alone (0: not learned).
func (l Learned) PrefillPerBlock() time.Duration {
	ppb, _ := prefillPerBlock(l.Hot, l.Cold)
	return time.Duration(ppb * float64(time.Second))
}

// prefillPerBlock is the slope between the cached and cold means; with
// cold samples only, their time per block (an upper bound: it includes
// the fixed part).
func prefillPerBlock(hot, cold Point) (float64, bool) {
	var v float64
	switch {
	case cold.N > 0 && hot.N > 0 && cold.X-hot.X >= minSlopeBlocks && cold.Y > hot.Y:
		v = (cold.Y - hot.Y) / (cold.X - hot.X)
	case cold.N > 0 && cold.X > 0 && cold.Y > 0:
		v = cold.Y / cold.X
	default:
		return 0, false
	}
	return clampDuration(v, minPrefillPerBlock, maxPrefillPerBlock).Seconds(), true
}

func clampDuration(sec float64, lo, hi time.Duration) time.Duration {
	if !(sec >= lo.Seconds()) { // NaN too
		return lo
	}
	if sec >= hi.Seconds() {
		return hi
	}
	return time.Duration(sec * float64(time.Second))
}

// figures pools the candidates' learned figures, under the configured ones.
func (l *Latency) figures(cs []Candidate) Figures {
	f := Figures{ServiceTime: FallbackServiceTime.Seconds(), PrefillPerBlock: FallbackPrefillPerBlock.Seconds()}
	var svc Mean
	var hot, cold Point
	pool := func(into *Point, p Point) {
		if p.N == 0 {
			return
		}
		n := into.N + p.N
		into.X = (into.X*float64(into.N) + p.X*float64(p.N)) / float64(n)
		into.Y = (into.Y*float64(into.N) + p.Y*float64(p.N)) / float64(n)
		into.N = n
	}
	for i := range cs {
		ln := &cs[i].Learned
		if ln.Service.N > 0 {
			n := svc.N + ln.Service.N
			svc.V = (svc.V*float64(svc.N) + ln.Service.V*float64(ln.Service.N)) / float64(n)
			svc.N = n
		}
		pool(&hot, ln.Hot)
		pool(&cold, ln.Cold)
	}
	switch {
	case l.ServiceTime > 0:
		f.ServiceTime = l.ServiceTime.Seconds()
	case svc.N > 0:
		f.ServiceTime, f.LearnedService = clampDuration(svc.V, minServiceTime, maxSample).Seconds(), true
	}
	if l.PrefillPerBlock > 0 {
		f.PrefillPerBlock = l.PrefillPerBlock.Seconds()
	} else if v, ok := prefillPerBlock(hot, cold); ok {
		f.PrefillPerBlock, f.LearnedPrefill = v, true
	}
	return f
}

// seqs are the batch limits the candidates are scored with: configured,
// else each one's learned limit, else the largest learned in the pool,
// else 0 (unknown: no slot wait).
func (l *Latency) seqs(cs []Candidate) []float64 {
	out := make([]float64, len(cs))
	if l.MaxNumSeqs > 0 {
		for i := range out {
			out[i] = float64(l.MaxNumSeqs)
		}
		return out
	}
	poolMax := 0
	for i := range cs {
		poolMax = max(poolMax, cs[i].Learned.Seqs)
	}
	for i := range cs {
		if s := cs[i].Learned.Seqs; s > 0 {
			out[i] = float64(s)
		} else {
			out[i] = float64(poolMax)
		}
	}
	return out
}
