// Package tokencount is the token metering filter: it estimates what an
// OpenAI-compatible (or Anthropic) request may cost, reserves that against
// the caller's token quota in the counter engine before the upstream sees
// the request (429 when it does not fit, so concurrent requests cannot
// overshoot), reads the real usage from the JSON or streamed response
// without holding the stream, settles the reservation with it, and
// releases it when the request fails or is abandoned. The policy lives in
// filters/tokencount/meter and filters/tokencount/usage; this file only
// wires it to the proxy-wasm callbacks.
//
// The PluginConfig must set allow_on_headers_stop_iteration: true, or Envoy
// never delivers the request body this filter pauses for.
package tokencount

import (
	"strconv"
	"time"

	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/lease"
	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/reqview"
	"github.com/tollgate/tollgate/shared/table/shareddata"
	"github.com/tollgate/tollgate/shared/usagelog"
)

// RootID is the root_id a module holding several filters registers New under.
const RootID = "tokencount"

// New creates the filter's root context, for proxywasm.SetPluginFactory or
// proxywasm.RegisterPlugin; wasm/ is the standalone module.
func New(uint32) proxywasm.PluginContext { return &plugin{} }

// plugin is one configured instance of the filter in one VM.
type plugin struct {
	proxywasm.DefaultPluginContext
	pol     *meter.Policy
	models  *meter.LabelSet
	apps    *meter.LabelSet
	metrics *proxywasm.Metrics
	queue   *meter.SettleQueue // failed settles, retried on the tick
	ticks   int
	sweep   bool             // the queue held entries at the last look
	usage   *usagelog.Sender // usage records for analytics (nil: usage.enabled is off)
	leases  *lease.Leases    // budget leases (nil: lease.enabled is off)
}

// LeaseNamespace prefixes the shared-data keys of the filter's leases.
const LeaseNamespace = "tollgate.tokencount.lease.v1"

// orphanSweepTicks is how often an idle VM still sweeps the shared queue,
// for entries another (perhaps crashed) VM left.
const orphanSweepTicks = 10

// retryBatch bounds the retries sent per tick.
const retryBatch = 64

// OnPluginStart parses the configuration and defines the fixed metrics.
func (p *plugin) OnPluginStart(config []byte) error {
	pol, err := meter.Parse(config)
	if err != nil {
		return err
	}
	p.pol = pol
	p.models = meter.NewLabelSet(pol.MetricModels, pol.MaxMetricModels)
	p.apps = meter.NewLabelSet(nil, pol.MaxMetricApps)
	p.metrics = proxywasm.NewMetrics("tokencount")
	for _, op := range meter.Ops() {
		if err := p.metrics.Define(meter.KeystoreErrorsMetric(op)); err != nil {
			return err
		}
	}
	for _, ev := range meter.QueueEvents() {
		if err := p.metrics.Define(meter.SettleQueueMetric(ev)); err != nil {
			return err
		}
	}
	if p.queue, err = meter.NewSettleQueue(shareddata.Store{}, pol.SettleQueueEntries, pol.ReservationTTL, pol.SettleRetryInterval); err != nil {
		return err
	}
	if err := p.queue.Init(); err != nil {
		return err
	}
	tick := pol.SettleRetryInterval
	if pol.Usage.Enabled {
		h, err := usagelog.NewProxyHost(pol.Keystore, pol.Usage)
		if err != nil {
			return err
		}
		p.usage = usagelog.New(pol.Usage, h)
		tick = min(tick, pol.Usage.FlushInterval)
		for _, ev := range usagelog.Events() {
			if err := p.metrics.Define(meter.UsageRecordsMetric(ev)); err != nil {
				return err
			}
		}
	}
	if pol.Lease.Enabled {
		if p.leases, err = lease.New(shareddata.Store{}, leaseHost{p}, LeaseNamespace, pol.Lease, pol.Timeout); err != nil {
			return err
		}
		if err := p.leases.Init(); err != nil {
			return err
		}
		for _, r := range meter.LeaseResults() {
			if err := p.metrics.Define(meter.LeaseMetric(r)); err != nil {
				return err
			}
		}
		tick = min(tick, pol.Lease.Renew)
	}
	if err := proxywasm.SetTickPeriod(tick); err != nil {
		return err
	}
	proxywasm.Log(proxywasm.LogLevelInfo, "tokencount: keystore cluster "+pol.Cluster+", counted "+pol.Metric.String()+", include_usage "+strconv.FormatBool(pol.InjectIncludeUsage)+", fail_open "+strconv.FormatBool(pol.FailOpen))
	return nil
}

// add increases a counter; metrics never fail a request.
func (p *plugin) add(name string, n int64) {
	if n > 0 {
		p.metrics.Add(name, uint64(n))
	}
}

// exportUsage adds a usage records event to its counter.
func (p *plugin) exportUsage(event string, n uint64) {
	p.metrics.Add(meter.UsageRecordsMetric(event), n)
}

// OnTick flushes usage records and retries the queued settles that are due.
func (p *plugin) OnTick() {
	if p.usage != nil {
		if err := p.usage.Tick(time.Now()); err != nil {
			proxywasm.Log(proxywasm.LogLevelWarn, "tokencount: usage records: "+err.Error())
		}
		p.usage.Export(p.exportUsage)
	}
	if p.leases != nil {
		if _, err := p.leases.Tick(); err != nil {
			proxywasm.Log(proxywasm.LogLevelWarn, "tokencount: leases: "+err.Error())
		}
	}
	p.ticks++
	if !p.sweep && p.ticks%orphanSweepTicks != 0 {
		return
	}
	p.sweep = p.queue.RetryDue(host{p}, p.pol.Timeout+time.Second, retryBatch) > 0
}

// NewHttpContext starts the state of one stream.
func (p *plugin) NewHttpContext(uint32) proxywasm.HttpContext {
	m := meter.NewStream(host{p}, p.pol, p.models, p.apps, p.usage != nil)
	if p.leases != nil {
		m.WithLeases(p.leases)
	}
	return &stream{m: m, limit: p.pol.MaxRequestBytes}
}

// leaseHost adapts proxy-wasm to lease.Host.
type leaseHost struct{ p *plugin }

func (leaseHost) Now() time.Time { return proxywasm.Now() }

func (h leaseHost) Dispatch(body []byte, done func(failed bool, status int, body []byte)) error {
	pol := h.p.pol
	_, err := proxywasm.DispatchHttpCall(pol.Cluster, pol.CalloutHeaders(meter.Callout{Path: lease.Path}), body, nil, pol.Timeout,
		func(r *proxywasm.CallResponse) { done(r.Failed, r.Status, r.Body) })
	return err
}

// stream adapts the proxy-wasm callbacks of one stream to meter.Stream.
type stream struct {
	proxywasm.DefaultHttpContext
	m     *meter.Stream
	body  proxywasm.BodyGatherer // the request body, gathered before the reservation
	limit int64
}

func action(a meter.Action) proxywasm.Action {
	if a == meter.Continue {
		return proxywasm.ActionContinue
	}
	return proxywasm.ActionPause
}

func (s *stream) OnRequestHeaders(_ int, endOfStream bool) proxywasm.Action {
	a := s.m.OnRequestHeaders(endOfStream)
	if a != meter.Gather {
		return action(a)
	}
	s.body.Limit = s.limit
	return s.body.Start()
}

func (s *stream) OnRequestBody(bodySize int, endOfStream bool) proxywasm.Action {
	return s.body.OnBody(bodySize, endOfStream, s)
}

// OnRequestTrailers finishes a request whose body ended with trailers.
func (s *stream) OnRequestTrailers(int) proxywasm.Action { return s.body.OnTrailers(s) }

// BodyTooLarge, BodyUnreadable and BodyComplete end the body's gathering.
func (s *stream) BodyTooLarge() proxywasm.Action { return action(s.m.BodyTooLarge()) }

func (s *stream) BodyUnreadable(err error) proxywasm.Action { return action(s.m.BodyUnreadable(err)) }

func (s *stream) BodyComplete(body []byte) proxywasm.Action { return action(s.m.OnRequestBody(body)) }

func (s *stream) OnResponseHeaders(_ int, endOfStream bool) proxywasm.Action {
	return action(s.m.OnResponseHeaders(endOfStream))
}

func (s *stream) OnResponseBody(bodySize int, endOfStream bool) proxywasm.Action {
	return action(s.m.OnResponseBody(bodySize, endOfStream))
}

func (s *stream) OnResponseTrailers(int) proxywasm.Action { return action(s.m.OnResponseTrailers()) }

func (s *stream) OnDone() { s.m.OnDone() }

// host adapts proxy-wasm to meter.StreamHost (and meter.AccountHost); the
// stream it acts on is the current one.
type host struct{ p *plugin }

func (h host) Add(name string, n int64)     { h.p.add(name, n) }
func (h host) Record(name string, v uint64) { h.p.metrics.Record(name, v) }
func (host) Warn(msg string)                { proxywasm.Log(proxywasm.LogLevelWarn, "tokencount: "+msg) }
func (host) Error(msg string)               { proxywasm.Log(proxywasm.LogLevelError, "tokencount: "+msg) }
func (host) Now() time.Time                 { return proxywasm.Now() }

func (host) SetFilterState(pairs [][2]string) {
	for _, kv := range pairs {
		_ = proxywasm.SetProperty([]string{kv[0]}, []byte(kv[1]))
	}
}

func (h host) Dispatch(c meter.Callout, done func(failed bool, status int, body []byte)) error {
	pol := h.p.pol
	_, err := proxywasm.DispatchHttpCall(pol.Cluster, pol.CalloutHeaders(c), c.Body, nil, pol.Timeout, func(r *proxywasm.CallResponse) {
		done(r.Failed, r.Status, r.Body)
	})
	return err
}

// Enqueue queues a settle or release for OnTick's retries.
func (h host) Enqueue(op string, c meter.Callout) {
	if h.p.queue.Enqueue(h, op, c) {
		h.p.sweep = true
	}
}

func (host) RequestHeader(name string) string {
	v, _ := proxywasm.RequestHeaders.Get(name)
	return v
}

func (host) RemoveRequestHeader(name string) { _ = proxywasm.RequestHeaders.Remove(name) }

func (host) ReplaceRequestBody(body []byte) error { return proxywasm.ReplaceRequestBody(body) }

// RequestMemo shares the stream's parse of the request body (meter.MemoHost).
func (host) RequestMemo() *reqview.Memo { return proxywasm.RequestMemo() }

func (host) ResumeRequest() {
	if err := proxywasm.ContinueRequest(); err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "tokencount: resume request: "+err.Error())
	}
}

func (h host) SendError(e *apierror.Error, extra ...[2]string) {
	if err := proxywasm.SendError(e, h.p.pol.Style, extra...); err != nil {
		proxywasm.Log(proxywasm.LogLevelError, "tokencount: send "+strconv.Itoa(e.Status)+": "+err.Error())
	}
}

func (host) ResponseHeader(name string) (string, bool) {
	v, err := proxywasm.ResponseHeaders.Get(name)
	return v, err == nil
}

func (host) RemoveResponseHeader(name string) { _ = proxywasm.ResponseHeaders.Remove(name) }

func (host) SetResponseHeader(name, value string) {
	if err := proxywasm.ResponseHeaders.Replace(name, value); err != nil {
		proxywasm.Log(proxywasm.LogLevelDebug, "tokencount: set "+name+": "+err.Error())
	}
}

func (host) ResponseChunk(size int) []byte {
	b, err := proxywasm.ResponseBody.Get(0, size)
	if err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "tokencount: read response body: "+err.Error())
	}
	return b
}

func (host) ResponseBody() []byte {
	b, _ := proxywasm.ResponseBody.GetAll()
	return b
}

func (host) ReplaceResponseBody(body []byte) {
	if err := proxywasm.ResponseBody.Replace(body); err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "tokencount: rewrite response body: "+err.Error())
	}
}

func (host) ResumeResponse() {
	if err := proxywasm.ContinueResponse(); err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "tokencount: resume response: "+err.Error())
	}
}

func (h host) Report(rec *usagelog.Record) {
	if err := h.p.usage.Report(rec); err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "tokencount: usage record: "+err.Error())
	}
}
