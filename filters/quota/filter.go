// Package quota is the Tollgate request-quota and spike-arrest filter. It
// counts each request against the quotas of its app (from the apikey
// filter's identity headers) or of a configured key (a header, the client
// IP), in strict (keystore callout per request), local (shared data) or
// async (local, synced on a tick) mode, and answers 429 with OpenAI-style
// bodies and x-ratelimit-* headers. This file only wires proxy-wasm
// callbacks to the pure packages policy (configuration, plans, responses)
// and limiter (decisions); see docs/quota.md.
package quota

import (
	"strconv"
	"time"

	"github.com/tollgate/tollgate/filters/quota/limiter"
	"github.com/tollgate/tollgate/filters/quota/policy"
	"github.com/tollgate/tollgate/shared/identity"
	"github.com/tollgate/tollgate/shared/lease"
	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/table/shareddata"
	"github.com/tollgate/tollgate/shared/usagelog"
)

// RootID is the root_id a module holding several filters registers New under.
const RootID = "quota"

// New creates the filter's root context, for proxywasm.SetPluginFactory or
// proxywasm.RegisterPlugin; wasm/ is the standalone module.
func New(uint32) proxywasm.PluginContext { return &plugin{} }

type plugin struct {
	proxywasm.DefaultPluginContext
	pol      *policy.Policy
	lim      *limiter.Limiter
	metrics  *proxywasm.Metrics
	usage    *usagelog.Sender // nil unless usage.enabled
	leases   *lease.Leases    // nil unless lease.enabled (strict rules)
	lastSync time.Time
}

// LeaseNamespace prefixes the shared-data keys of the filter's leases.
const LeaseNamespace = "tollgate.quota.lease.v1"

// leaseHost adapts proxy-wasm to lease.Host.
type leaseHost struct{ p *plugin }

func (leaseHost) Now() time.Time { return proxywasm.Now() }

func (h leaseHost) Dispatch(body []byte, done func(failed bool, status int, body []byte)) error {
	ks := h.p.pol.Keystore
	ks.Path = lease.Path
	_, err := proxywasm.DispatchHttpCall(ks.Cluster, ks.CalloutHeaders(), body, nil, ks.Timeout, func(r *proxywasm.CallResponse) {
		done(r.Failed, r.Status, r.Body)
	})
	return err
}

func (p *plugin) OnPluginStart(raw []byte) error {
	pol, err := policy.ParseConfig(raw)
	if err != nil {
		return err
	}
	p.pol = pol
	if err := p.defineMetrics(); err != nil {
		return err
	}
	lim, err := limiter.New(pol, shareddata.Store{}, host{p})
	if err != nil {
		return err
	}
	if err := lim.Init(); err != nil {
		return err
	}
	p.lim = lim
	period := time.Duration(0)
	if pol.UsesMode[policy.Async] {
		period = pol.SyncPeriod
	}
	if pol.Lease.Enabled && pol.UsesMode[policy.Strict] {
		if p.leases, err = lease.New(shareddata.Store{}, leaseHost{p}, LeaseNamespace, pol.Lease, pol.Keystore.Timeout); err != nil {
			return err
		}
		if err := p.leases.Init(); err != nil {
			return err
		}
		lim.UseLeases(p.leases)
		if period == 0 || pol.Lease.Renew < period {
			period = pol.Lease.Renew
		}
	}
	if pol.Usage.Enabled {
		h, err := usagelog.NewProxyHost(pol.Keystore.Keystore, pol.Usage)
		if err != nil {
			return err
		}
		p.usage = usagelog.New(pol.Usage, h)
		if period == 0 || pol.Usage.FlushInterval < period {
			period = pol.Usage.FlushInterval
		}
	}
	if period > 0 {
		return proxywasm.SetTickPeriod(period)
	}
	return nil
}

func (p *plugin) defineMetrics() error {
	names := []string{policy.MetricSyncItems, policy.MetricEvictions, policy.MetricLedgerErrors,
		policy.KeystoreErrorsMetric("consume"), policy.KeystoreErrorsMetric("sync"),
		policy.SyncsMetric("ok"), policy.SyncsMetric("error")}
	for _, m := range []policy.Mode{policy.Strict, policy.Local, policy.Async} {
		if p.pol.UsesMode[m] {
			for _, o := range policy.Outcomes {
				names = append(names, policy.RequestsMetric(m, o))
			}
		}
	}
	if p.pol.Usage.Enabled {
		for _, ev := range usagelog.Events() {
			names = append(names, policy.UsageRecordsMetric(ev))
		}
	}
	p.metrics = proxywasm.NewMetrics("quota")
	return p.metrics.Define(names...)
}

// OnTick syncs async counters every sync period and flushes usage records;
// the tick runs at the shorter of the two periods.
func (p *plugin) OnTick() {
	now := time.Now()
	if p.leases != nil {
		if _, err := p.leases.Tick(); err != nil {
			proxywasm.Log(proxywasm.LogLevelWarn, "quota: leases: "+err.Error())
		}
	}
	if p.pol.UsesMode[policy.Async] && now.Sub(p.lastSync) >= p.pol.SyncPeriod*9/10 {
		p.lastSync = now
		p.lim.Tick()
	}
	if p.usage != nil {
		if err := p.usage.Tick(now); err != nil {
			proxywasm.Log(proxywasm.LogLevelWarn, "quota: usage: "+err.Error())
		}
		p.usage.Export(p.exportUsage)
	}
}

// exportUsage adds a usage records event to its counter.
func (p *plugin) exportUsage(event string, n uint64) {
	p.metrics.Add(policy.UsageRecordsMetric(event), n)
}

func (p *plugin) NewHttpContext(uint32) proxywasm.HttpContext { return &stream{p: p} }

// host adapts proxy-wasm to limiter.Host.
type host struct{ p *plugin }

func (host) Now() time.Time { return proxywasm.Now() }

func (h host) Call(body []byte, done func(int, []byte, bool)) error {
	ks := h.p.pol.Keystore
	_, err := proxywasm.DispatchHttpCall(ks.Cluster, ks.CalloutHeaders(), body, nil, ks.Timeout, func(r *proxywasm.CallResponse) {
		done(r.Status, r.Body, r.Failed)
	})
	return err
}

func (h host) Count(name string, n uint64) { h.p.metrics.Add(name, n) }

func (host) Warn(msg string) { proxywasm.Log(proxywasm.LogLevelWarn, msg) }

type stream struct {
	proxywasm.DefaultHttpContext
	p       *plugin
	rate    *policy.State
	replied bool
	start   time.Time
	get     func(name string) string // request headers, kept for the usage record
}

func (s *stream) OnRequestHeaders(int, bool) proxywasm.Action {
	all, err := proxywasm.RequestHeaders.GetAll()
	if err != nil {
		proxywasm.Log(proxywasm.LogLevelError, "quota: read request headers: "+err.Error())
	}
	get := func(name string) string {
		for _, kv := range all {
			if kv[0] == name {
				return kv[1]
			}
		}
		return ""
	}
	s.start, s.get = proxywasm.Now(), get
	r := policy.Request{
		Method: get(":method"),
		Path:   get(":path"),
		Header: get,
		ClientIP: func() string {
			b, _ := proxywasm.GetProperty("source", "address")
			return string(b)
		},
		RouteName: func() string {
			b, _ := proxywasm.GetProperty("xds", "route_name")
			return string(b)
		},
	}
	v, done := s.p.lim.Check(r, func(v limiter.Verdict) {
		// Runs from the callout's answer, with this stream current again.
		if !s.apply(v) {
			if err := proxywasm.ContinueRequest(); err != nil {
				proxywasm.Log(proxywasm.LogLevelDebug, "quota: resume stream: "+err.Error())
			}
		}
	})
	if !done || s.apply(v) {
		return proxywasm.ActionPause
	}
	return proxywasm.ActionContinue
}

// apply carries out a verdict; it reports whether a local reply was sent.
func (s *stream) apply(v limiter.Verdict) bool {
	if v.Pass {
		s.rate = v.Rate
		return false
	}
	s.replied = true
	if err := proxywasm.SendError(v.Err, s.p.pol.Style, v.Headers...); err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "quota: send "+strconv.Itoa(v.Err.Status)+": "+err.Error())
	}
	s.report(v.Err.Status)
	return true
}

// report queues the usage record of a request this filter refused (the
// requests it lets through are reported by tokencount when it meters them).
func (s *stream) report(status int) {
	if s.p.usage == nil || s.get == nil {
		return
	}
	id, _, _ := identity.Parse(s.p.pol.Identity, s.get)
	now := proxywasm.Now()
	rec := usagelog.Record{RequestID: usagelog.RequestID(s.get("x-request-id"), now), Time: now, App: id.App, Product: id.Product,
		Developer: id.Developer, KeyID: id.KeyID, Status: status, Outcome: usagelog.OutcomeRefused, Latency: now.Sub(s.start)}
	if err := s.p.usage.Report(&rec); err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "quota: usage: "+err.Error())
	}
}

func (s *stream) OnResponseHeaders(int, bool) proxywasm.Action {
	if s.rate == nil || s.replied {
		return proxywasm.ActionContinue
	}
	for _, kv := range policy.RateHeaders(*s.rate, proxywasm.Now()) {
		_ = proxywasm.ResponseHeaders.Replace(kv[0], kv[1])
	}
	return proxywasm.ActionContinue
}
