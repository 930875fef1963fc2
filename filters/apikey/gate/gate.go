// Package gate is the apikey filter's lookup state machine: per-VM decoded
// answers, the shared cache, keystore callouts, and coalescing of concurrent
// misses for one key — within a VM (streams join this VM's callout) and
// across VMs (streams poll the shared cache while another worker's claim is
// live, then either find the answer or take the claim over).
//
// It reaches the host only through the Host interface, so the whole machine,
// several "workers" included, runs in native tests.
package gate

import (
	"errors"
	"time"

	"github.com/tollgate/tollgate/filters/apikey/policy"
	"github.com/tollgate/tollgate/shared/cache"
)

// Event is something worth counting.
type Event int

// Events, each a metric.
const (
	// CacheHit: an answer was found in this VM's memo or the shared cache.
	CacheHit Event = iota
	// CacheMiss: the answer had to be fetched or waited for.
	CacheMiss
	// Coalesced: a request waited for another request's callout instead of making one.
	Coalesced
	// CalloutOK: the keystore answered with a usable verify result.
	CalloutOK
	// CalloutError: the keystore call failed or its answer was unusable.
	CalloutError
	// CacheError: the shared cache could not be read or written (the request went on without it).
	CacheError
)

// Events lists every event, for defining metrics.
var Events = []Event{CacheHit, CacheMiss, Coalesced, CalloutOK, CalloutError, CacheError}

// String is the metric label of the event.
func (e Event) String() string {
	switch e {
	case CacheHit:
		return "hit"
	case CacheMiss:
		return "miss"
	case Coalesced:
		return "coalesced"
	case CalloutOK:
		return "ok"
	case CalloutError:
		return "error"
	case CacheError:
		return "cache_error"
	}
	return "unknown"
}

// Host is what the gate needs from proxy-wasm.
type Host interface {
	// Now is the current time.
	Now() time.Time
	// Dispatch sends a keystore callout; done runs later, exactly once, with
	// the HTTP status (0 when no response came) and the body. An error means
	// the call was not sent and done will never run.
	Dispatch(headers [][2]string, body []byte, timeout time.Duration, done func(status int, body []byte)) error
	// Finish applies a decision to a stream paused in Check.
	Finish(stream uint32, d policy.Decision)
	// SetTick starts (d > 0) or stops (d == 0) calls of Tick.
	SetTick(d time.Duration)
	// Count records an event.
	Count(e Event)
}

// Request is the part of a request the decision depends on.
type Request struct {
	Stream uint32
	Source int // index of the key source the key came from
	Method string
	Path   string
}

type waiter struct {
	req      Request
	hash     string
	deadline time.Time // for streams polling another VM's claim
}

// flight is a callout of this VM and the streams waiting for it.
type flight struct {
	waiters []*waiter
}

// Gate decides requests for one VM.
type Gate struct {
	pol    *policy.Policy
	shared *cache.Cache // nil: no shared cache (local mode)
	memo   *cache.Memo[policy.Answer]
	host   Host
	owner  uint64

	flights map[string]*flight   // key hash → this VM's callout
	polling map[string][]*waiter // key hash → streams waiting for another VM's claim
	streams map[uint32]*waiter   // every paused stream
	ticking bool
}

// New returns the gate of one VM. shared may be nil (no shared data, e.g.
// local mode); owner must be unique to this VM and non-zero.
func New(pol *policy.Policy, shared *cache.Cache, host Host, owner uint64) *Gate {
	max := pol.Cache.MaxEntries
	if max == 0 {
		max = 1
	}
	return &Gate{
		pol:     pol,
		shared:  shared,
		memo:    cache.NewMemo[policy.Answer](max),
		host:    host,
		owner:   owner,
		flights: map[string]*flight{},
		polling: map[string][]*waiter{},
		streams: map[uint32]*waiter{},
	}
}

// Check decides a request whose key hashes to hash. done is false when the
// stream must pause: Host.Finish will deliver the decision later.
func (g *Gate) Check(req Request, hash string) (d policy.Decision, done bool) {
	now := g.host.Now()
	if g.pol.Local != nil {
		grant, ok := g.pol.Local[hash]
		if !ok {
			return g.pol.Invalid(req.Source, ""), true
		}
		return g.pol.Decide(policy.Answer{Kind: policy.Granted, Grant: grant}, req.Source, req.Method, req.Path, now), true
	}
	if a, ok := g.memo.Get(hash, now); ok {
		g.host.Count(CacheHit)
		return g.pol.Decide(a, req.Source, req.Method, req.Path, now), true
	}
	w := &waiter{req: req, hash: hash}
	if f, ok := g.flights[hash]; ok {
		g.host.Count(CacheMiss)
		g.host.Count(Coalesced)
		f.waiters = append(f.waiters, w)
		g.streams[req.Stream] = w
		return policy.Decision{}, false
	}
	if g.shared != nil {
		l, err := g.shared.GetOrClaim(hash, g.owner, now, g.pol.Cache.CoalesceWait)
		if err != nil {
			g.host.Count(CacheError)
		} else {
			switch l.State {
			case cache.Hit:
				if a, ok := g.adopt(hash, l, now); ok {
					g.host.Count(CacheHit)
					return g.pol.Decide(a, req.Source, req.Method, req.Path, now), true
				}
			case cache.Pending:
				g.host.Count(CacheMiss)
				g.host.Count(Coalesced)
				w.deadline = now.Add(g.pol.Cache.CoalesceWait)
				g.polling[hash] = append(g.polling[hash], w)
				g.streams[req.Stream] = w
				g.tick()
				return policy.Decision{}, false
			case cache.Claimed:
			}
		}
	}
	g.host.Count(CacheMiss)
	if err := g.fetch(hash, []*waiter{w}); err != nil {
		return g.pol.KeystoreFailure(), true
	}
	return policy.Decision{}, false
}

// adopt decodes a shared hit into the memo.
func (g *Gate) adopt(hash string, l cache.Lookup, now time.Time) (policy.Answer, bool) {
	a, err := policy.DecodeAnswer(l.Value)
	if err != nil {
		g.host.Count(CacheError)
		return policy.Answer{}, false
	}
	g.memo.Put(hash, a, l.Expires, now)
	return a, true
}

// errDispatch reports a callout the host refused to send.
var errDispatch = errors.New("gate: callout not sent")

// fetch starts this VM's callout for hash on behalf of ws.
func (g *Gate) fetch(hash string, ws []*waiter) error {
	f := &flight{waiters: ws}
	g.flights[hash] = f
	for _, w := range ws {
		g.streams[w.req.Stream] = w
	}
	headers, body := g.pol.VerifyRequest(hash)
	err := g.host.Dispatch(headers, body, g.pol.Keystore.Timeout, func(status int, body []byte) {
		g.complete(hash, f, status, body)
	})
	if err != nil {
		delete(g.flights, hash)
		for _, w := range ws {
			delete(g.streams, w.req.Stream)
		}
		g.host.Count(CalloutError)
		if g.shared != nil {
			if rerr := g.shared.Release(hash, g.owner, g.host.Now()); rerr != nil {
				g.host.Count(CacheError)
			}
		}
		return errors.Join(errDispatch, err)
	}
	return nil
}

// complete stores a callout's answer and finishes every stream waiting for it.
func (g *Gate) complete(hash string, f *flight, status int, body []byte) {
	now := g.host.Now()
	a := policy.DecodeVerify(status, body)
	if a.Kind == policy.Failed {
		g.host.Count(CalloutError)
	} else {
		g.host.Count(CalloutOK)
	}
	exp := g.pol.Expiry(a, now)
	if g.shared != nil {
		g.store(hash, a, exp, now)
	}
	g.memo.Put(hash, a, exp, now)
	if g.flights[hash] == f {
		delete(g.flights, hash)
	}
	g.finish(f.waiters, a, now)
	if ws := g.polling[hash]; len(ws) > 0 {
		delete(g.polling, hash)
		g.finish(ws, a, now)
	}
	g.tick()
}

// store writes the answer to the shared cache (replacing the claim), or
// releases the claim when the answer must not be cached.
func (g *Gate) store(hash string, a policy.Answer, exp, now time.Time) {
	if exp.IsZero() {
		exp = now // removes the entry, and with it the claim
	}
	enc, err := a.Encode()
	if err == nil {
		err = g.shared.Put(hash, enc, exp, now)
	}
	if err != nil {
		g.host.Count(CacheError)
		if rerr := g.shared.Release(hash, g.owner, now); rerr != nil {
			g.host.Count(CacheError)
		}
	}
}

func (g *Gate) finish(ws []*waiter, a policy.Answer, now time.Time) {
	for _, w := range ws {
		if g.streams[w.req.Stream] != w {
			continue // the stream ended
		}
		delete(g.streams, w.req.Stream)
		g.host.Finish(w.req.Stream, g.pol.Decide(a, w.req.Source, w.req.Method, w.req.Path, now))
	}
}

// Tick polls the shared cache for streams waiting on another VM's callout.
func (g *Gate) Tick() {
	now := g.host.Now()
	for hash, ws := range g.polling {
		ws = g.live(ws)
		if len(ws) == 0 {
			delete(g.polling, hash)
			continue
		}
		if a, ok := g.memo.Get(hash, now); ok {
			delete(g.polling, hash)
			g.finish(ws, a, now)
			continue
		}
		l, err := g.shared.GetOrClaim(hash, g.owner, now, g.pol.Cache.CoalesceWait)
		if err != nil {
			g.host.Count(CacheError)
			l.State = cache.Claimed // go on without the cache
		}
		switch l.State {
		case cache.Hit:
			if a, ok := g.adopt(hash, l, now); ok {
				delete(g.polling, hash)
				g.finish(ws, a, now)
				continue
			}
			g.takeOver(hash, ws, now)
		case cache.Claimed:
			g.takeOver(hash, ws, now)
		case cache.Pending:
			var late, waiting []*waiter
			for _, w := range ws {
				if now.Before(w.deadline) {
					waiting = append(waiting, w)
				} else {
					late = append(late, w)
				}
			}
			g.polling[hash] = waiting
			if len(waiting) == 0 {
				delete(g.polling, hash)
			}
			if len(late) > 0 {
				g.join(hash, late, now)
			}
		}
	}
	g.tick()
}

// takeOver makes this VM fetch for streams whose awaited claim lapsed.
func (g *Gate) takeOver(hash string, ws []*waiter, now time.Time) {
	delete(g.polling, hash)
	g.join(hash, ws, now)
}

// join adds streams to this VM's callout for hash, starting one if needed.
func (g *Gate) join(hash string, ws []*waiter, now time.Time) {
	if f, ok := g.flights[hash]; ok {
		f.waiters = append(f.waiters, ws...)
		return
	}
	if err := g.fetch(hash, ws); err != nil {
		g.finish(ws, policy.Answer{Kind: policy.Failed, Reason: "callout not sent"}, now)
	}
}

// live drops waiters whose streams ended.
func (g *Gate) live(ws []*waiter) []*waiter {
	out := ws[:0]
	for _, w := range ws {
		if g.streams[w.req.Stream] == w {
			out = append(out, w)
		}
	}
	return out
}

// tick keeps the timer running exactly while streams poll.
func (g *Gate) tick() {
	want := len(g.polling) > 0
	if want == g.ticking {
		return
	}
	g.ticking = want
	if want {
		g.host.SetTick(g.pol.Cache.PollInterval)
	} else {
		g.host.SetTick(0)
	}
}

// StreamDone forgets a stream that ended while paused, so it is never finished.
func (g *Gate) StreamDone(stream uint32) {
	delete(g.streams, stream)
}

// Waiting is the number of paused streams (for tests and gauges).
func (g *Gate) Waiting() int { return len(g.streams) }
