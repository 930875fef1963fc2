package pick

import (
	"slices"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/shared/apierror"
)

// Error codes of the picker's refusals.
const (
	CodeNoEndpoint = "no_endpoint_available"
	CodeShed       = "pool_saturated"
)

// Reasons a pick reports (access log, reason header, metrics).
const (
	ReasonScored         = "scored"
	ReasonFailOpen       = "fail_open"    // every candidate was saturated or had stale metrics
	ReasonEjectedOnly    = "ejected_only" // every candidate was ejected
	ReasonNoPool         = "no_pool"      // 503: no pool for the request
	ReasonNoEligible     = "no_eligible"  // 503: the subset hint left nothing
	ReasonShed           = "shed"         // 429
	ReasonSingleEndpoint = "single_endpoint"
)

// Request is what the policy reads from one request.
type Request struct {
	// PoolHint is the pool header's value ("" when absent).
	PoolHint string
	// Model is the body's model ("" when none).
	Model string
	// Blocks are the prompt's chained block hashes (Blocks), nil without a body.
	Blocks []uint64
	// Priority is the priority header's value.
	Priority string
	// Subset is the subset hint's entries; HasSubset tells an empty hint from none.
	Subset    []string
	HasSubset bool
	// Session is the endpoint a session token names ("" for none).
	Session string
}

// Parts are a candidate's scorer values, each 0..1.
type Parts struct {
	Queue, KV, Prefix, Lora, Session float64
}

// Candidate is one endpoint as the policy saw it for one request.
type Candidate struct {
	Endpoint
	Metrics
	AgeMs      int64
	Stale      bool
	Ejected    bool
	InFlight   int64
	Waiting    float64 // the waiting queue, raised to this Envoy's in-flight excess
	Saturation float64
	Parts      Parts
	Score      float64
	// Learned are the endpoint's learned figures (latency scoring only).
	Learned Learned
	// Ahead is the requests predicted ahead of this one for a slot
	// (latency scoring; 0 with a free slot or an unknown limit).
	Ahead float64
	// Uncached is the prompt blocks the endpoint does not hold.
	Uncached float64
}

// Decision is the outcome of Pick.
type Decision struct {
	// Status is 0 for a pick, or 429/503 with Err to answer.
	Status int
	Err    *apierror.Error
	// RetryAfter is set with a 429 (seconds).
	RetryAfter int
	Pool       string
	// Endpoints are the primary and its fallbacks, best first.
	Endpoints []string
	Reason    string
	// Primary is the picked candidate (zero on refusals).
	Primary Candidate
	// PoolSaturation is the average saturation of the pool's candidates.
	PoolSaturation float64
	// Candidates are every candidate considered, for metrics.
	Candidates []Candidate
	blocks     []uint64
}

// Header is the destination header value: the endpoints comma-joined.
func (d *Decision) Header() string { return strings.Join(d.Endpoints, ",") }

// IsSheddable reports whether a priority value may be shed: a configured
// name or a negative integer (InferenceObjective priorities).
func (p *Policy) IsSheddable(priority string) bool {
	if p.Sheddable[strings.ToLower(priority)] {
		return true
	}
	n, err := strconv.Atoi(priority)
	return err == nil && n < 0
}

// PoolFor finds the request's pool: by name (the pool header), by model,
// the default pool, or the only pool.
func (p *Policy) PoolFor(hint, model string) *Pool {
	if pool := p.named(hint); pool != nil {
		return pool
	}
	if model != "" {
		for i := range p.Pools {
			if slices.Contains(p.Pools[i].Models, model) {
				return &p.Pools[i]
			}
		}
	}
	if pool := p.named(p.DefaultPool); pool != nil {
		return pool
	}
	if len(p.Pools) == 1 {
		return &p.Pools[0]
	}
	return nil
}

// named finds a pool by name ("" finds none).
func (p *Policy) named(name string) *Pool {
	for i := range p.Pools {
		if name != "" && p.Pools[i].Name == name {
			return &p.Pools[i]
		}
	}
	return nil
}

// inSubset matches an endpoint against the subset hint: an entry with a
// port must equal the address, an entry without one matches the IP (as
// llm-d matches pods).
func inSubset(e Endpoint, subset []string) bool {
	for _, s := range subset {
		s = strings.TrimSpace(s)
		if s == e.Address || s == e.IP || strings.Trim(s, "[]") == e.IP {
			return true
		}
	}
	return false
}

// Pick chooses the endpoints for req.
func (p *Policy) Pick(h Host, x *Index, req Request) Decision {
	pool := p.PoolFor(req.PoolHint, req.Model)
	if pool == nil {
		return refuse(503, ReasonNoPool, "no endpoint pool serves this request")
	}
	d := Decision{Pool: pool.Name, blocks: req.Blocks}
	st := h.Store()
	now := h.NowMs()
	cands := make([]Candidate, 0, len(pool.Endpoints))
	for _, e := range pool.Endpoints {
		if req.HasSubset && !inSubset(e, req.Subset) {
			continue
		}
		c := Candidate{Endpoint: e, Metrics: ReadMetrics(st, e.Address), InFlight: InFlight(st, e.Address), Ejected: Ejected(st, e.Address, now)}
		if p.Latency != nil {
			c.Learned = ReadLearned(st, e.Address)
		}
		c.AgeMs = now - c.AtMs
		c.Stale = c.AtMs == 0 || c.AgeMs > p.StaleAfter.Milliseconds() || !c.Complete()
		// Requests sent since the scrape are assumed to queue, requests
		// finished since leave the queue: the scrape lags, our count does not.
		c.Waiting = max(0, c.Snapshot.Waiting+float64(c.InFlight-c.InFlightAtScrape))
		if c.Stale {
			c.Saturation = 1
		} else {
			c.Saturation = max(c.Waiting/p.SatQueue, c.KVUsage/p.SatKV)
		}
		d.PoolSaturation += min(c.Saturation, 1) // one overloaded endpoint cannot outvote idle ones
		cands = append(cands, c)
	}
	if len(cands) == 0 {
		d = refuse(503, ReasonNoEligible, "no endpoint of pool "+pool.Name+" is eligible for this request")
		d.Pool = pool.Name
		return d
	}
	d.PoolSaturation /= float64(len(cands))
	d.Candidates = cands
	if d.PoolSaturation >= 1 && p.IsSheddable(req.Priority) {
		r := refuse(429, ReasonShed, "the model servers are saturated; retry later")
		r.Pool, r.RetryAfter, r.PoolSaturation, r.Candidates = pool.Name, p.RetryAfter, d.PoolSaturation, cands
		return r
	}

	d.Reason = ReasonScored
	p.score(cands, x, req, slices.Contains(pool.Adapters, req.Model), now)
	live := filter(cands, func(c *Candidate) bool { return !c.Ejected })
	if len(live) == 0 {
		live, d.Reason = cands, ReasonEjectedOnly
	}
	rest := []Candidate(nil)
	if open := filter(live, func(c *Candidate) bool { return c.Saturation < 1 }); len(open) > 0 {
		// Saturated endpoints stay behind the open ones as fallbacks.
		rest = filter(live, func(c *Candidate) bool { return c.Saturation >= 1 })
		live = open
	} else if d.Reason == ReasonScored {
		d.Reason = ReasonFailOpen
	}
	if len(cands) == 1 && d.Reason == ReasonScored {
		d.Reason = ReasonSingleEndpoint
	}
	order := func(cs []Candidate) {
		// Random tie-break: shuffle, then a stable sort by score.
		for i := len(cs) - 1; i > 0; i-- {
			j := h.Intn(i + 1)
			cs[i], cs[j] = cs[j], cs[i]
		}
		slices.SortStableFunc(cs, func(a, b Candidate) int {
			switch {
			case a.Score > b.Score:
				return -1
			case a.Score < b.Score:
				return 1
			}
			return 0
		})
	}
	order(live)
	order(rest)
	d.Primary = live[0]
	for _, c := range append(live, rest...) {
		if len(d.Endpoints) > p.Fallbacks {
			break
		}
		d.Endpoints = append(d.Endpoints, c.Address)
	}
	return d
}

// score fills each candidate's parts and weighted score.
func (p *Policy) score(cs []Candidate, x *Index, req Request, isLora bool, now int64) {
	minL, maxL := -1.0, -1.0
	// The queue scorer reads the waiting queue, as llm-d's does: the
	// scraped queue corrected by this Envoy's requests sent or finished
	// since the scrape; running sequences show in the KV use. Without
	// fresh metrics only this Envoy's in-flight count is known.
	load := func(c *Candidate) float64 {
		if c.Stale {
			return float64(c.InFlight)
		}
		return c.Waiting
	}
	for i := range cs {
		l := load(&cs[i])
		if minL < 0 || l < minL {
			minL = l
		}
		maxL = max(maxL, l)
		if req.Model != "" && (slices.Contains(cs[i].RunningLoras, req.Model) || slices.Contains(cs[i].WaitingLoras, req.Model)) {
			isLora = true
		}
	}
	var match map[string]float64
	if x != nil && len(req.Blocks) > 0 && p.WPrefix > 0 {
		match = x.Match(req.Blocks, now)
	}
	if p.Latency != nil {
		p.scoreLatency(cs, match, req, isLora)
		return
	}
	for i := range cs {
		c := &cs[i]
		pt := Parts{Queue: 1}
		if maxL > minL {
			pt.Queue = (maxL - load(c)) / (maxL - minL)
		}
		if !c.Stale {
			pt.KV = 1 - c.KVUsage
		}
		// The prefix score fades as the endpoint's queue grows beyond the
		// shortest one: a cache hit saves a prefill, a much longer queue
		// costs more than that. When every queue is long (overload), the
		// affinity stays, since hits are then the only spare capacity.
		pt.Prefix = match[c.Address] * max(0, 1-(load(c)-minL)/p.LoadCutoff)
		pt.Lora, pt.Session = loraSession(c, req, isLora)
		c.Parts = pt
		c.Score = p.WQueue*pt.Queue + p.WKV*pt.KV + p.WPrefix*pt.Prefix + p.WLora*pt.Lora + p.WSession*pt.Session
	}
}

// loraSession are the LoRA-affinity and session parts of a candidate.
func loraSession(c *Candidate, req Request, isLora bool) (lora, session float64) {
	if isLora {
		switch {
		case slices.Contains(c.RunningLoras, req.Model):
			lora = 1
		case c.MaxLoras > 0 && len(c.RunningLoras) < c.MaxLoras:
			lora = 0.8
		case slices.Contains(c.WaitingLoras, req.Model):
			lora = 0.6
		}
	}
	if req.Session != "" && req.Session == c.Address {
		session = 1
	}
	return lora, session
}

// Occupancy is the sequences an endpoint holds now: this Envoy's in-flight
// requests plus the others' load seen at the last scrape (running and
// waiting beyond this Envoy's count then). The scraped waiting queue alone
// reads 0 for a server whose every slot is busy; this count does not.
func (c *Candidate) Occupancy() float64 {
	n := float64(c.InFlight)
	if !c.Stale {
		n += max(0, c.Snapshot.Running+c.Snapshot.Waiting-float64(c.InFlightAtScrape))
	}
	return n
}

// scoreLatency scores each candidate by its predicted time to first token,
// in slot times (ServiceTime/MaxNumSeqs, the mean gap between two freed
// slots of a full server): the wait for a free slot, which is zero while
// the occupancy is below MaxNumSeqs and one slot time per request ahead
// beyond it, plus the prefill of the prompt blocks the endpoint does not
// hold (× ColdWeight × (1 + the shortest queue among the candidates)).
// A group's home therefore keeps it while it has a
// free slot or while its queue costs less than a cold prefill elsewhere,
// and spills to the best second server once it does not. LoRA and session
// affinity subtract their weights in slot times; a tenth of a slot per
// request held breaks ties towards the least loaded endpoint. Score is
// 1/(1+cost): the lowest cost scores highest. The figures are configured
// or learned (Latency.figures, Latency.seqs); an endpoint whose batch
// limit is unknown has no slot wait. With a prefix weight of 0 match is
// nil: every candidate lacks every block, so the cold cost is the same for
// all and only the wait and the load tie-break decide.
func (p *Policy) scoreLatency(cs []Candidate, match map[string]float64, req Request, isLora bool) {
	l := p.Latency
	f := l.figures(cs)
	seqs := l.seqs(cs)
	slots := make([]float64, len(cs)) // each candidate's slot time, s
	held, capacity, slotRef := 0.0, 0.0, 0.0
	minAhead := -1.0
	for i := range cs {
		c := &cs[i]
		n := c.Occupancy()
		unit := seqs[i]
		if unit > 0 {
			c.Ahead = max(0, n-unit+1)
			held += n
			capacity += unit
		} else {
			unit = unitSeqs
		}
		slots[i] = f.ServiceTime / unit
		slotRef += slots[i]
		if minAhead < 0 || c.Ahead < minAhead {
			minAhead = c.Ahead
		}
	}
	slotRef /= float64(len(cs))
	fill := 0.0
	if capacity > 0 {
		fill = min(1, max(0, (held/capacity-0.7)/0.3))
	}
	cold := l.ColdWeight + (l.BusyColdWeight-l.ColdWeight)*fill
	// A cold prefill also holds a slot that much longer: once every
	// server queues, each request waiting behind it pays too. So the cold
	// cost grows with the shortest queue among the candidates, and in a
	// uniform overload a group keeps its home (hits are then the only
	// spare capacity) unless the home's queue is far longer.
	coldCost := float64(len(req.Blocks)) * f.PrefillPerBlock * cold * (1 + max(0, minAhead))
	for i := range cs {
		c := &cs[i]
		n := c.Occupancy()
		unit := seqs[i]
		if unit <= 0 {
			unit = unitSeqs
		}
		pt := Parts{Queue: 1 / (1 + c.Ahead), Prefix: match[c.Address]}
		if !c.Stale {
			pt.KV = 1 - c.KVUsage
		}
		pt.Lora, pt.Session = loraSession(c, req, isLora)
		c.Uncached = (1 - pt.Prefix) * float64(len(req.Blocks))
		cost := (c.Ahead*slots[i] + (1-pt.Prefix)*coldCost + 0.1*slots[i]*n/unit) / slotRef
		cost -= p.WLora*pt.Lora + p.WSession*pt.Session
		c.Parts = pt
		c.Score = 1 / (1 + max(0, cost+p.WLora+p.WSession))
	}
}

// Commit records a pick: the primary's in-flight count rises and the
// prefix index learns that it now holds the prompt's blocks. Call Done
// once the stream ends.
func (p *Policy) Commit(h Host, x *Index, d *Decision) error {
	if len(d.Endpoints) == 0 {
		return nil
	}
	if _, err := addInt64(h.Store(), keyInflight+d.Endpoints[0], 1); err != nil {
		return err
	}
	if x != nil && len(d.blocks) > 0 && p.WPrefix > 0 {
		return x.Record(d.blocks, d.Endpoints[0], h.NowMs())
	}
	return nil
}

// Done lowers the in-flight count a Commit raised.
func (p *Policy) Done(h Host, addr string) error {
	_, err := addInt64(h.Store(), keyInflight+addr, -1)
	return err
}

func filter(cs []Candidate, keep func(*Candidate) bool) []Candidate {
	out := make([]Candidate, 0, len(cs))
	for i := range cs {
		if keep(&cs[i]) {
			out = append(out, cs[i])
		}
	}
	return out
}

func refuse(status int, reason, msg string) Decision {
	code := CodeNoEndpoint
	if status == 429 {
		code = CodeShed
	}
	e := apierror.New(status, code, msg)
	return Decision{Status: status, Err: e, Reason: reason}
}
