// Package limiter decides requests for the quota filter: it carries out a
// policy.Plan in the rule's mode (strict callout, local counters, async
// counters with a periodic sync), applies spike arrest and the failure mode,
// and counts outcomes. It is plain Go: the proxy-wasm host is behind the
// Host interface and shared data behind table.Store, so the whole decision
// flow, multi-worker sync included, is tested natively.
package limiter

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/filters/quota/ledger"
	"github.com/tollgate/tollgate/filters/quota/policy"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/lease"
	"github.com/tollgate/tollgate/shared/table"
	"github.com/tollgate/tollgate/window"
)

// Host is what the limiter needs from the proxy.
type Host interface {
	// Now is the wall clock.
	Now() time.Time
	// Call posts body to the keystore's consume endpoint. done runs later
	// (never inside Call) with the answer, or with failed set when no
	// answer came (timeout, reset, connection refused).
	Call(body []byte, done func(status int, body []byte, failed bool)) error
	// Count adds n to the counter metric of that name.
	Count(metric string, n uint64)
	// Warn writes a warning to the proxy log.
	Warn(msg string)
}

// Verdict is the decision for one request.
type Verdict struct {
	Mode    policy.Mode
	Outcome policy.Outcome
	// Pass lets the request through.
	Pass bool
	// Err and Headers make the local reply when Pass is false.
	Err     *apierror.Error
	Headers [][2]string
	// Rate, when set on a passed request, is reported in x-ratelimit-*
	// response headers.
	Rate *policy.State
}

// Limits of the limiter.
const (
	// MaxTracked bounds the async counters one worker syncs.
	MaxTracked = 4096
	// maxIdle stops syncing a counter unused for this long (or half its
	// window, when shorter; its local record lives a whole window).
	maxIdle = time.Minute
	// warnEvery rate-limits failure warnings per worker.
	warnEvery = time.Second
)

// tracked is an async counter this worker syncs.
type tracked struct {
	key      counter.Key
	spec     window.Spec
	lastUsed time.Time
}

// Limiter decides requests for one plugin configuration in one worker.
type Limiter struct {
	pol     *policy.Policy
	host    Host
	table   *table.Table
	engine  *counter.Engine
	spikes  *ledger.Spikes
	async   *ledger.Async
	health  *ledger.Health
	tracked map[string]*tracked
	// warns rate-limits failure warnings per kind (operation and rule).
	warns map[string]*warnState
	// leases admit strict requests locally when set (shared/lease).
	leases Leaser
	// requests names the requests counter of each mode and outcome, built
	// once: one is counted on every request.
	requests map[modeOutcome]string
}

type modeOutcome struct {
	m policy.Mode
	o policy.Outcome
}

// Leaser admits requests from budget leases (shared/lease.Leases).
type Leaser interface {
	// Take reserves n locally; ok false means the lease cannot cover it.
	Take(counter string, n int64) (g lease.Grant, ok bool, err error)
	// Settle ends a local reservation of taken at actual.
	Settle(counter string, taken, actual int64) error
	// Consume takes n and records it as consumed at once.
	Consume(counter string, n int64) (g lease.Grant, ok bool, err error)
}

// UseLeases makes strict rules admit from budget leases when every counter
// of the request has one that covers it, and consume at the keystore as
// before otherwise.
func (l *Limiter) UseLeases(x Leaser) { l.leases = x }

// warnState is when a kind of warning was last logged and how many were
// held back since.
type warnState struct {
	last       time.Time
	suppressed int
}

// New returns a limiter keeping its shared state in store.
func New(pol *policy.Policy, store table.Store, host Host) (*Limiter, error) {
	t, err := table.New(store, table.Options{Namespace: pol.Namespace, MaxEntries: pol.MaxEntries})
	if err != nil {
		return nil, config.Wrap("quota table: ", err, "")
	}
	l := &Limiter{pol: pol, host: host, table: t, tracked: map[string]*tracked{}, warns: map[string]*warnState{},
		requests: map[modeOutcome]string{}}
	for _, m := range []policy.Mode{policy.Strict, policy.Local, policy.Async} {
		for _, o := range policy.Outcomes {
			l.requests[modeOutcome{m, o}] = policy.RequestsMetric(m, o)
		}
	}
	evicted := func() { host.Count(policy.MetricEvictions, 1) }
	counters := ledger.NewCounters(t)
	counters.OnEvict = evicted
	l.engine = counter.New(counters, counter.WithClock(host.Now))
	l.spikes = ledger.NewSpikes(t)
	l.spikes.OnEvict = evicted
	l.async = ledger.NewAsync(t)
	l.async.OnEvict = evicted
	l.health = ledger.NewHealth(t)
	return l, nil
}

// Init creates the shared table's sets; call it once per worker before serving.
func (l *Limiter) Init() error { return l.table.Init() }

// Tracked is the number of async counters this worker syncs.
func (l *Limiter) Tracked() int { return len(l.tracked) }

// Check decides a request. When done is false the decision needs the
// keystore: resume runs later, once, with the verdict (the stream stays
// paused until then).
func (l *Limiter) Check(r policy.Request, resume func(Verdict)) (v Verdict, done bool) {
	pl := l.pol.Plan(r)
	rule := pl.Rule
	v = Verdict{Mode: rule.Mode}
	switch {
	case pl.Err != nil:
		v.Outcome, v.Err = policy.Invalid, pl.Err
		return l.count(v), true
	case pl.NoKey:
		v.Outcome, v.Pass = policy.NoKey, true
		return l.count(v), true
	case len(pl.Checks) == 0 && pl.SpikeID == "":
		v.Outcome, v.Pass = policy.Unlimited, true
		return l.count(v), true
	}
	now := l.host.Now()
	if pl.SpikeID != "" {
		ok, retry, err := l.spikes.Admit(pl.SpikeID, rule.Spike.Rate, rule.Spike.Burst, now)
		if err != nil {
			l.host.Count(policy.MetricLedgerErrors, 1)
			return l.count(l.failure(rule, "spike arrest", err)), true
		}
		if !ok {
			v.Outcome = policy.SpikeDenied
			v.Err, v.Headers = policy.SpikeArrested(rule.Spike, retry)
			return l.count(v), true
		}
	}
	if len(pl.Checks) == 0 {
		v.Outcome, v.Pass = policy.Allowed, true
		return l.count(v), true
	}
	switch rule.Mode {
	case policy.Local:
		return l.count(l.local(rule, pl.Checks, now)), true
	case policy.Async:
		return l.count(l.asyncCheck(rule, pl.Checks, now)), true
	}
	if l.leases != nil {
		if v, ok := l.leased(rule, pl.Checks, now); ok {
			return l.count(v), true
		}
	}
	return l.strict(rule, pl.Checks, resume)
}

// leased admits a strict request from the leases of all its counters, one
// request each, or takes nothing (ok false: consume at the keystore). A
// counter whose record vanished before the consumption was recorded is
// consumed at the keystore directly (forced), so no request goes uncounted.
func (l *Limiter) leased(rule *policy.Rule, checks []policy.Check, now time.Time) (Verdict, bool) {
	items := make([]string, len(checks))
	states := make([]policy.State, len(checks))
	one := len(checks) == 1 // one counter: consumed in one step
	for i, c := range checks {
		items[i] = policy.LeaseItem(c)
		take := l.leases.Take
		if one {
			take = l.leases.Consume
		}
		g, ok, err := take(items[i], 1)
		if err != nil {
			l.host.Count(policy.MetricLedgerErrors, 1)
			l.warn("lease|"+rule.Name, "quota: lease for rule "+strconv.Quote(rule.Name)+": "+err.Error()+"; consuming at the keystore")
		}
		if err != nil || !ok {
			for j := range i {
				_ = l.leases.Settle(items[j], 1, 0)
			}
			return Verdict{}, false
		}
		reset := now
		if g.Reset > 0 {
			reset = time.UnixMilli(g.Reset)
		}
		states[i] = policy.State{Allowed: true, Limit: g.Limit, Remaining: g.Remaining, Reset: reset}
	}
	var lost []policy.Item
	for i, c := range checks {
		if one {
			break
		}
		if err := l.leases.Settle(items[i], 1, 1); err != nil {
			lost = append(lost, policy.Item{Key: c.Key, Spec: c.Spec, N: 1, Force: true})
		}
	}
	if len(lost) > 0 {
		if err := l.host.Call(policy.EncodeConsume(lost, false), func(int, []byte, bool) {}); err != nil {
			l.host.Count(policy.KeystoreErrorsMetric("consume"), 1)
		}
	}
	return l.decided(rule, states, now), true
}

func (l *Limiter) count(v Verdict) Verdict {
	name, ok := l.requests[modeOutcome{v.Mode, v.Outcome}]
	if !ok {
		name = policy.RequestsMetric(v.Mode, v.Outcome)
	}
	l.host.Count(name, 1)
	return v
}

// decided turns counter states into a verdict.
func (l *Limiter) decided(rule *policy.Rule, states []policy.State, now time.Time) Verdict {
	v := Verdict{Mode: rule.Mode}
	b := policy.Binding(states)
	for _, s := range states {
		if !s.Allowed {
			v.Outcome = policy.Denied
			v.Err, v.Headers = policy.OverQuota(b, now)
			return v
		}
	}
	v.Outcome, v.Pass = policy.Allowed, true
	if rule.ResponseHeaders {
		v.Rate = &b
	}
	return v
}

// failure applies the rule's failure mode after the keystore or shared data
// failed, with a metric (by the caller) and a rate-limited warning.
func (l *Limiter) failure(rule *policy.Rule, what string, err error) Verdict {
	v := Verdict{Mode: rule.Mode}
	action := "failing closed (503)"
	if rule.FailOpen {
		action = "failing open"
	}
	l.warn(what+"|"+rule.Name, "quota: "+what+" failed for rule "+strconv.Quote(rule.Name)+": "+err.Error()+"; "+action)
	if rule.FailOpen {
		v.Outcome, v.Pass = policy.FailedOpen, true
		return v
	}
	v.Outcome = policy.FailedClosed
	v.Err, v.Headers = policy.Unavailable()
	return v
}

// warn logs at most one warning of a kind per second per worker, saying
// how many it held back. Kinds are bounded: an operation and a rule name.
func (l *Limiter) warn(kind, msg string) {
	now := l.host.Now()
	w := l.warns[kind]
	if w == nil {
		w = &warnState{}
		l.warns[kind] = w
	} else if now.Sub(w.last) < warnEvery {
		w.suppressed++
		return
	}
	if w.suppressed > 0 {
		msg += " (" + strconv.Itoa(w.suppressed) + " similar warnings suppressed in the last " + now.Sub(w.last).Round(time.Millisecond).String() + ")"
	}
	w.last, w.suppressed = now, 0
	l.host.Warn(msg)
}

// local decides in this Envoy's shared data with the keystore's window rules.
func (l *Limiter) local(rule *policy.Rule, checks []policy.Check, now time.Time) Verdict {
	reqs := make([]counter.Request, len(checks))
	for i, c := range checks {
		reqs[i] = counter.Request{Key: c.Key, Spec: c.Spec, N: 1}
	}
	ds, err := l.engine.ConsumeBatch(context.Background(), reqs, true)
	if err != nil {
		l.host.Count(policy.MetricLedgerErrors, 1)
		return l.failure(rule, "local counting", err)
	}
	states := make([]policy.State, len(ds))
	for i, d := range ds {
		states[i] = policy.State{Allowed: d.Allowed, Limit: d.Limit, Remaining: d.Remaining, Reset: d.Reset, RetryAfter: d.RetryAfter}
	}
	return l.decided(rule, states, now)
}

// strict consumes at the keystore: one callout for all of the request's
// counters, atomically.
func (l *Limiter) strict(rule *policy.Rule, checks []policy.Check, resume func(Verdict)) (Verdict, bool) {
	items := make([]policy.Item, len(checks))
	for i, c := range checks {
		items[i] = policy.Item{Key: c.Key, Spec: c.Spec, N: 1}
	}
	err := l.host.Call(policy.EncodeConsume(items, true), func(status int, body []byte, failed bool) {
		resume(l.count(l.strictAnswer(rule, len(items), status, body, failed)))
	})
	if err != nil {
		l.host.Count(policy.KeystoreErrorsMetric("consume"), 1)
		return l.count(l.failure(rule, "keystore consume", err)), true
	}
	return Verdict{}, false
}

func (l *Limiter) strictAnswer(rule *policy.Rule, n, status int, body []byte, failed bool) Verdict {
	var err error
	var rs []policy.Result
	if failed {
		err = errors.New("no answer from cluster " + strconv.Quote(l.pol.Keystore.Cluster) + " within " + l.pol.Keystore.Timeout.String())
	} else {
		rs, err = policy.DecodeConsume(status, body, n)
	}
	if err != nil {
		l.host.Count(policy.KeystoreErrorsMetric("consume"), 1)
		return l.failure(rule, "keystore consume", err)
	}
	now := l.host.Now()
	states := make([]policy.State, len(rs))
	for i, r := range rs {
		states[i] = r.State(now)
	}
	return l.decided(rule, states, now)
}

// asyncID is the ledger id of an async counter.
func asyncID(c policy.Check) string { return counter.CounterID(c.Key, c.Spec) }

// asyncCheck decides against the local view of async counters. Several
// counters are first checked without counting, so a request denied by one
// is not counted by the others (two workers racing between the check and
// the count can over-count by one request each, which async mode's bound
// already covers).
func (l *Limiter) asyncCheck(rule *policy.Rule, checks []policy.Check, now time.Time) Verdict {
	if !rule.FailOpen {
		failing, err := l.health.Failing(now, l.staleAfter())
		if err == nil && failing {
			return l.failure(rule, "keystore sync", errors.New("no successful sync for over "+l.staleAfter().String()))
		}
	}
	states := make([]policy.State, len(checks))
	if len(checks) > 1 {
		for i, c := range checks {
			id := asyncID(c)
			l.track(id, c, now) // keep a denied counter's view fresh too
			d, err := l.async.Consume(id, c.Spec, 0, now)
			if err != nil {
				l.host.Count(policy.MetricLedgerErrors, 1)
				return l.failure(rule, "async counting", err)
			}
			if d.Remaining < 1 {
				states[i] = asyncState(d)
				states[i].Allowed = false
				states[i].RetryAfter = max(d.RetryAfter, d.Reset.Sub(now))
				return l.decided(rule, states[i:i+1], now)
			}
		}
	}
	for i, c := range checks {
		id := asyncID(c)
		d, err := l.async.Consume(id, c.Spec, 1, now)
		if err != nil {
			l.host.Count(policy.MetricLedgerErrors, 1)
			return l.failure(rule, "async counting", err)
		}
		states[i] = asyncState(d)
		l.track(id, c, now)
		if n := l.pol.SyncCount; n > 0 && d.Pending >= n {
			l.syncNow(id, c, now)
		}
	}
	return l.decided(rule, states, now)
}

// syncNow pushes one counter at once, when its pending usage reached
// async.sync_count, unless a push of it is already in flight. The request
// does not wait for it.
func (l *Limiter) syncNow(id string, c policy.Check, now time.Time) {
	delta, claimed, err := l.async.Claim(id, c.Spec, now, l.pol.Keystore.Timeout+l.pol.SyncPeriod, 0)
	if err != nil {
		l.host.Count(policy.MetricLedgerErrors, 1)
		return
	}
	if claimed {
		l.push([]policy.Item{{Key: c.Key, Spec: c.Spec, N: delta, Force: true}}, []string{id})
	}
}

func asyncState(d ledger.AsyncDecision) policy.State {
	return policy.State{Allowed: d.Allowed, Limit: d.Limit, Remaining: d.Remaining, Reset: d.Reset, RetryAfter: d.RetryAfter}
}

// staleAfter is how long async syncs may fail before fail-closed rules
// refuse requests: three sync periods plus a callout timeout.
func (l *Limiter) staleAfter() time.Duration {
	return 3*l.pol.SyncPeriod + l.pol.Keystore.Timeout
}

// track remembers an async counter for this worker's syncs.
func (l *Limiter) track(id string, c policy.Check, now time.Time) {
	if tr, ok := l.tracked[id]; ok {
		tr.lastUsed = now
		return
	}
	if len(l.tracked) >= MaxTracked {
		var oldest string
		for k, tr := range l.tracked {
			if oldest == "" || tr.lastUsed.Before(l.tracked[oldest].lastUsed) {
				oldest = k
			}
		}
		delete(l.tracked, oldest)
	}
	l.tracked[id] = &tracked{key: c.Key, spec: c.Spec, lastUsed: now}
}

// Tick runs an async sync round: every counter this worker tracks whose
// pending usage it can claim (or that is due for a pull) is pushed with
// force and its global usage read back, in batches of counter.MaxBatch.
func (l *Limiter) Tick() {
	if len(l.tracked) == 0 {
		return
	}
	now := l.host.Now()
	lease := l.pol.Keystore.Timeout + l.pol.SyncPeriod
	fresh := l.pol.SyncPeriod / 2
	var items []policy.Item
	var ids []string
	for id, tr := range l.tracked {
		idle := now.Sub(tr.lastUsed) > min(maxIdle, tr.spec.Length()/2)
		delta, claimed, err := l.async.Claim(id, tr.spec, now, lease, fresh)
		if err != nil {
			l.host.Count(policy.MetricLedgerErrors, 1)
			continue
		}
		if idle && (!claimed || delta == 0) {
			if claimed {
				_ = l.async.Abort(id, tr.spec, now)
			}
			delete(l.tracked, id)
			continue
		}
		if claimed {
			items = append(items, policy.Item{Key: tr.key, Spec: tr.spec, N: delta, Force: true})
			ids = append(ids, id)
		}
	}
	for start := 0; start < len(items); start += counter.MaxBatch {
		end := min(start+counter.MaxBatch, len(items))
		l.push(items[start:end], ids[start:end])
	}
}

// push sends one sync batch and completes or aborts its counters.
func (l *Limiter) push(items []policy.Item, ids []string) {
	fail := func(err error) {
		now := l.host.Now()
		for i, id := range ids {
			if aerr := l.async.Abort(id, items[i].Spec, now); aerr != nil {
				l.host.Count(policy.MetricLedgerErrors, 1)
			}
		}
		_ = l.health.Record(false, now)
		l.host.Count(policy.SyncsMetric("error"), 1)
		l.host.Count(policy.KeystoreErrorsMetric("sync"), 1)
		l.warn("sync", "quota: async sync of "+strconv.Itoa(len(ids))+" counters failed: "+err.Error()+"; their usage stays pending and is pushed by the next sync")
	}
	err := l.host.Call(policy.EncodeConsume(items, false), func(status int, body []byte, failed bool) {
		if failed {
			fail(errors.New("no answer from cluster " + strconv.Quote(l.pol.Keystore.Cluster) + " within " + l.pol.Keystore.Timeout.String()))
			return
		}
		rs, err := policy.DecodeConsume(status, body, len(items))
		if err != nil {
			fail(err)
			return
		}
		now := l.host.Now()
		for i, id := range ids {
			if err := l.async.Complete(id, items[i].Spec, now, rs[i].Used, rs[i].ResetAfter); err != nil {
				l.host.Count(policy.MetricLedgerErrors, 1)
			}
		}
		_ = l.health.Record(true, now)
		l.host.Count(policy.SyncsMetric("ok"), 1)
		l.host.Count(policy.MetricSyncItems, uint64(len(ids)))
	})
	if err != nil {
		fail(err)
	}
}
