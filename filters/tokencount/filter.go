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
	"errors"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/identity"
	"github.com/tollgate/tollgate/shared/proxywasm"
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
}

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
	}
	if err := proxywasm.SetTickPeriod(tick); err != nil {
		return err
	}
	proxywasm.Logf(proxywasm.LogLevelInfo, "tokencount: keystore cluster %s, counted %s, include_usage %v, fail_open %v",
		pol.Cluster, pol.Metric, pol.InjectIncludeUsage, pol.FailOpen)
	return nil
}

// add increases a counter; metrics never fail a request.
func (p *plugin) add(name string, n int64) {
	if n > 0 {
		p.metrics.Add(name, uint64(n))
	}
}

func (p *plugin) record(name string, v uint64) { p.metrics.Record(name, v) }

// enqueue keeps a settle or release the keystore did not answer, for the
// tick to retry.
func (p *plugin) enqueue(op string, c meter.Callout) {
	evicted, err := p.queue.Push(op, c, time.Now())
	if err != nil {
		p.add(meter.SettleQueueMetric(meter.QueueDropped), 1)
		proxywasm.Logf(proxywasm.LogLevelError, "tokencount: queue %s for retry: %v", op, err)
		return
	}
	p.add(meter.SettleQueueMetric(meter.QueueQueued), 1)
	if evicted {
		p.add(meter.SettleQueueMetric(meter.QueueDropped), 1)
		proxywasm.Logf(proxywasm.LogLevelError, "tokencount: settle queue full: an older entry was dropped")
	}
	p.sweep = true
}

// OnTick retries the queued settles that are due.
func (p *plugin) OnTick() {
	if p.usage != nil {
		if err := p.usage.Tick(time.Now()); err != nil {
			proxywasm.Logf(proxywasm.LogLevelWarn, "tokencount: usage records: %v", err)
		}
	}
	p.ticks++
	if !p.sweep && p.ticks%orphanSweepTicks != 0 {
		return
	}
	pol := p.pol
	now := time.Now()
	pend, live, err := p.queue.Claim(now, pol.Timeout+time.Second, retryBatch)
	if err != nil {
		proxywasm.Logf(proxywasm.LogLevelWarn, "tokencount: settle queue: %v", err)
	}
	p.sweep = live > 0
	for _, e := range pend {
		id, op := e.ID, e.Op
		handler := func(r *proxywasm.CallResponse) {
			_, err := meter.ParseAnswer(r.Failed, r.Status, r.Body)
			now := time.Now()
			switch {
			case err == nil || errors.Is(err, meter.ErrNotFound):
				// Delivered; not found means an earlier attempt was counted
				// (or the counter released the reservation).
				p.add(meter.SettleQueueMetric(meter.QueueDelivered), 1)
				err = p.queue.Delivered(id, now)
			case meter.Retryable(r.Failed, r.Status):
				p.add(meter.SettleQueueMetric(meter.QueueRetried), 1)
				err = p.queue.Retry(id, now)
			default:
				p.add(meter.SettleQueueMetric(meter.QueueDropped), 1)
				proxywasm.Logf(proxywasm.LogLevelError, "tokencount: queued %s refused by the keystore: %v", op, err)
				err = p.queue.Delivered(id, now)
			}
			if err != nil {
				proxywasm.Logf(proxywasm.LogLevelWarn, "tokencount: settle queue: %v", err)
			}
		}
		if _, err := proxywasm.DispatchHttpCall(pol.Cluster, pol.CalloutHeaders(e.Callout), e.Callout.Body, nil, pol.Timeout, handler); err != nil {
			p.add(meter.SettleQueueMetric(meter.QueueRetried), 1)
			if err := p.queue.Retry(id, now); err != nil {
				proxywasm.Logf(proxywasm.LogLevelWarn, "tokencount: settle queue: %v", err)
			}
		}
	}
}

// NewHttpContext starts the state of one stream.
func (p *plugin) NewHttpContext(uint32) proxywasm.HttpContext { return &stream{p: p} }

// stream follows one request: buffering, reservation, response metering,
// settlement.
type stream struct {
	proxywasm.DefaultHttpContext
	p *plugin

	api       usage.API
	quota     *meter.Quota
	app       string
	body      proxywasm.BodyGatherer // the request body, gathered before the reservation
	reserving bool                   // the reserve callout is in flight
	clamped   bool                   // the output cap was lowered after a denial
	replied   bool                   // this filter answered locally
	ended     bool                   // OnDone ran: the stream is gone

	plan     *meter.Plan
	reserved *meter.State // the reservation (nil: none held)
	open     bool         // the reservation still awaits settle or release
	failOpen bool         // the keystore failed and the request went on unreserved

	resp    *meter.Response
	holding bool             // a JSON response's headers wait for the settlement
	done    bool             // the usage was accounted
	pending meter.Settlement // the settlement, sent from OnDone

	// The usage record (only kept when usage reporting is on).
	start    time.Time
	reqID    string
	ident    identity.Identity
	status   int          // the status the client got
	used     *usage.Usage // what was charged
	aborted  bool
	reported bool
}

func header(name string) string {
	v, _ := proxywasm.RequestHeaders.Get(name)
	return v
}

func (s *stream) OnRequestHeaders(_ int, endOfStream bool) proxywasm.Action {
	method, _ := proxywasm.RequestHeaders.Get(":method")
	path, _ := proxywasm.RequestHeaders.Get(":path")
	if method != "POST" {
		return proxywasm.ActionContinue
	}
	pol := s.p.pol
	if s.p.usage != nil {
		s.start, s.reqID = time.Now(), header("x-request-id")
		if pol.TrustIdentity {
			s.ident, _, _ = identity.Parse(pol.Identity, header)
		}
	}
	s.api = usage.APIForPath(path)
	q, id, aerr := pol.Resolve(header)
	s.app = id.App
	if s.api == usage.APIUnknown && aerr == nil {
		// Not an API the filter meters: refused when a token quota applies
		// (unless allowed), so no endpoint consumes tokens uncounted.
		if aerr = pol.Unmetered(path, q); aerr == nil {
			return proxywasm.ActionContinue
		}
	}
	if aerr != nil {
		return s.reject(aerr, meter.OutcomeRejected)
	}
	s.quota = q
	if pol.StripAcceptEncoding {
		_ = proxywasm.RequestHeaders.Remove("accept-encoding")
	}
	if endOfStream {
		return s.reject(meter.BodyRequired(), meter.OutcomeRejected)
	}
	s.body.Limit = pol.MaxRequestBytes
	return s.body.Start()
}

func (s *stream) OnRequestBody(bodySize int, endOfStream bool) proxywasm.Action {
	return s.body.OnBody(bodySize, endOfStream, s)
}

// OnRequestTrailers finishes a request whose body ended with trailers.
func (s *stream) OnRequestTrailers(int) proxywasm.Action {
	return s.body.OnTrailers(s)
}

// BodyTooLarge answers 413 before the whole body is read.
func (s *stream) BodyTooLarge() proxywasm.Action {
	return s.reject(s.p.pol.TooLarge(), meter.OutcomeRejected)
}

// BodyUnreadable answers 500 when the host cannot return the body.
func (s *stream) BodyUnreadable(err error) proxywasm.Action {
	return s.internal("read request body", err)
}

// BodyComplete plans the reservation on the whole body and asks for it.
func (s *stream) BodyComplete(body []byte) proxywasm.Action {
	pol := s.p.pol
	pl, aerr := pol.PlanRequestAs(s.api, body, s.quota, pol.PublicModel(header))
	if aerr != nil {
		if aerr.Status != 429 {
			return s.reject(aerr, meter.OutcomeRejected)
		}
		s.plan = pl // for the model label; the request never reaches the upstream
		s.p.add(meter.RefusedMetric(s.labels(pl.Model)), 1)
		return s.reject(aerr, meter.OutcomeRefused)
	}
	s.plan = pl
	if pl.Body != nil {
		if err := proxywasm.ReplaceRequestBody(pl.Body); err != nil {
			return s.internal("rewrite request body", err)
		}
		pl.Body = nil // the proxy holds the body now
	}
	if s.quota == nil {
		return proxywasm.ActionContinue
	}
	c := pol.Reserve(s.quota, pl.Amount)
	if _, err := proxywasm.DispatchHttpCall(pol.Cluster, pol.CalloutHeaders(c), c.Body, nil, pol.Timeout, s.onReserve); err != nil {
		return s.keystoreFailed(err)
	}
	s.reserving = true
	return proxywasm.ActionPause
}

// onReserve runs with the paused stream current (or the root context when
// the stream has gone meanwhile).
func (s *stream) onReserve(r *proxywasm.CallResponse) {
	s.reserving = false
	st, err := meter.ParseReserve(r.Failed, r.Status, r.Body)
	if s.ended {
		// The client left while we waited: give the reservation back.
		if err == nil && st.Allowed {
			meter.Send(accountHost{s.p}, meter.Settlement{Op: meter.OpRelease, Callout: meter.Release(st.ID)}, nil)
		}
		return
	}
	if err != nil {
		if s.keystoreFailed(err) == proxywasm.ActionContinue {
			s.resume()
		}
		return
	}
	if !st.Allowed && !s.clamped && s.clamp(st) {
		return
	}
	if !st.Allowed {
		s.p.add(meter.RefusedMetric(s.labels(s.plan.Model)), 1)
		e, h := s.p.pol.Refusal(s.plan, st)
		s.reject(e, meter.OutcomeRefused, h...)
		return
	}
	s.reserved, s.open = &st, true
	s.resume()
}

// clamp answers a denied reservation, when clamp_max_tokens allows, by
// lowering the output cap to what the budget has left: the forwarded body
// is rewritten and the smaller amount reserved again. It reports whether
// that second reservation is on its way.
func (s *stream) clamp(st meter.State) bool {
	pol := s.p.pol
	per, ok := pol.ClampOutput(s.plan, st.Remaining)
	if !ok {
		return false
	}
	body, err := pol.Clamp(s.plan, s.plan.Sent, per)
	if err != nil {
		proxywasm.Logf(proxywasm.LogLevelWarn, "tokencount: clamp output: %v", err)
		return false
	}
	if err := proxywasm.ReplaceRequestBody(body); err != nil {
		proxywasm.Logf(proxywasm.LogLevelWarn, "tokencount: clamp output: %v", err)
		return false
	}
	s.plan.Sent, s.clamped = body, true
	c := pol.Reserve(s.quota, s.plan.Amount)
	if _, err := proxywasm.DispatchHttpCall(pol.Cluster, pol.CalloutHeaders(c), c.Body, nil, pol.Timeout, s.onReserve); err != nil {
		if s.keystoreFailed(err) == proxywasm.ActionContinue {
			s.resume()
		}
		return true
	}
	s.reserving = true
	return true
}

func (s *stream) resume() {
	if err := proxywasm.ContinueRequest(); err != nil {
		proxywasm.Logf(proxywasm.LogLevelWarn, "tokencount: resume request: %v", err)
	}
}

// keystoreFailed applies the failure mode: Continue (fail open) or a 503.
func (s *stream) keystoreFailed(err error) proxywasm.Action {
	s.p.add(meter.KeystoreErrorsMetric(meter.OpReserve), 1)
	proxywasm.Logf(proxywasm.LogLevelWarn, "tokencount: reserve: %v", err)
	if s.p.pol.FailOpen {
		s.failOpen = true
		return proxywasm.ActionContinue
	}
	return s.reject(meter.KeystoreUnavailable(), meter.OutcomeFailed)
}

func (s *stream) reject(e *apierror.Error, o meter.Outcome, extra ...[2]string) proxywasm.Action {
	model := ""
	if s.plan != nil {
		model = s.plan.Model
	}
	s.p.add(meter.RequestsMetric(s.labels(model), o), 1)
	s.replied = true
	s.status = e.Status
	if err := proxywasm.SendError(e, s.p.pol.Style, extra...); err != nil {
		proxywasm.Logf(proxywasm.LogLevelError, "tokencount: send %d: %v", e.Status, err)
	}
	return proxywasm.ActionPause
}

func (s *stream) internal(what string, err error) proxywasm.Action {
	proxywasm.Logf(proxywasm.LogLevelError, "tokencount: %s: %v", what, err)
	return s.reject(apierror.New(500, meter.CodeInternal, "the gateway could not meter this request"), meter.OutcomeRejected)
}

func (s *stream) labels(model string) meter.Labels {
	return meter.Labels{Model: s.p.models.Label(model), App: s.p.apps.Label(s.app)}
}

// ---- response ----

func (s *stream) OnResponseHeaders(_ int, endOfStream bool) proxywasm.Action {
	if s.plan == nil || s.replied {
		return proxywasm.ActionContinue
	}
	pol := s.p.pol
	status, _ := proxywasm.ResponseHeaders.Get(":status")
	code, _ := strconv.Atoi(status)
	s.status = code
	ct, _ := proxywasm.ResponseHeaders.Get("content-type")
	ce, _ := proxywasm.ResponseHeaders.Get("content-encoding")
	s.resp = pol.NewResponse(s.plan, code, ct, ce)
	switch s.resp.Kind() {
	case meter.KindError:
		// Nothing was generated: release now and show the budget without it.
		if s.reserved != nil {
			s.setHeaders(meter.Released(*s.reserved, s.plan.Amount))
		}
		s.finish()
		return proxywasm.ActionContinue
	case meter.KindSSE:
		if s.resp.Rewrites() {
			_ = proxywasm.ResponseHeaders.Remove("content-length")
		}
	case meter.KindJSON:
		if endOfStream {
			s.finish()
			break
		}
		if s.open && pol.HoldResponseBytes > 0 && contentLength() <= pol.HoldResponseBytes {
			// Hold the headers until the body is read and settled, so the
			// client's remaining-tokens header shows the settled usage.
			s.holding = true
			return proxywasm.ActionPause
		}
	}
	if s.reserved != nil {
		s.setHeaders(*s.reserved)
	}
	return proxywasm.ActionContinue
}

// contentLength is the response's content-length, or 0 when absent.
func contentLength() int64 {
	v, err := proxywasm.ResponseHeaders.Get("content-length")
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 1 << 62
	}
	return n
}

func (s *stream) setHeaders(st meter.State) {
	for _, h := range s.p.pol.RateLimitHeaders(st) {
		if err := proxywasm.ResponseHeaders.Replace(h[0], h[1]); err != nil {
			proxywasm.Logf(proxywasm.LogLevelDebug, "tokencount: set %s: %v", h[0], err)
		}
	}
}

func (s *stream) OnResponseBody(bodySize int, endOfStream bool) proxywasm.Action {
	if s.resp == nil || s.done {
		return proxywasm.ActionContinue
	}
	if s.holding {
		return s.holdBody(bodySize, endOfStream)
	}
	var chunk []byte
	if bodySize > 0 {
		var err error
		if chunk, err = proxywasm.ResponseBody.Get(0, bodySize); err != nil {
			proxywasm.Logf(proxywasm.LogLevelWarn, "tokencount: read response body: %v", err)
		}
	}
	out, changed := s.resp.Feed(chunk, endOfStream)
	if changed {
		if err := proxywasm.ResponseBody.Replace(out); err != nil {
			proxywasm.Logf(proxywasm.LogLevelWarn, "tokencount: rewrite response body: %v", err)
		}
	}
	if endOfStream {
		s.finish()
	}
	return proxywasm.ActionContinue
}

// holdBody buffers a held JSON response; at its end the usage is settled
// before headers and body go on. A body outgrowing the hold limit is let
// through, headers showing the reservation.
func (s *stream) holdBody(bodySize int, endOfStream bool) proxywasm.Action {
	pol := s.p.pol
	if int64(bodySize) > pol.HoldResponseBytes {
		s.holding = false
		body, _ := proxywasm.ResponseBody.GetAll()
		s.resp.Feed(body, endOfStream)
		s.setHeaders(*s.reserved)
		if endOfStream {
			s.finish()
		}
		return proxywasm.ActionContinue
	}
	if !endOfStream {
		return proxywasm.ActionPause
	}
	return s.settleHeld()
}

// settleHeld reads the held body, settles and resumes the response when
// the counter answers.
func (s *stream) settleHeld() proxywasm.Action {
	s.holding = false
	body, _ := proxywasm.ResponseBody.GetAll()
	s.resp.Feed(body, true)
	held := *s.reserved
	ok := s.account(func(err error, st meter.State) {
		if s.ended {
			return
		}
		if err == nil {
			held = st
		}
		s.setHeaders(held)
		if err := proxywasm.ContinueResponse(); err != nil {
			proxywasm.Logf(proxywasm.LogLevelWarn, "tokencount: resume response: %v", err)
		}
	})
	if !ok {
		s.setHeaders(held)
		return proxywasm.ActionContinue
	}
	return proxywasm.ActionPause
}

// OnResponseTrailers ends a response whose body ended with trailers.
func (s *stream) OnResponseTrailers(int) proxywasm.Action {
	if s.resp == nil || s.done {
		return proxywasm.ActionContinue
	}
	if s.holding {
		return s.settleHeld()
	}
	s.resp.Feed(nil, true)
	s.finish()
	return proxywasm.ActionContinue
}

// finish accounts the ended response without waiting for the counter.
func (s *stream) finish() { s.account(nil) }

// account records the response's usage (metrics, filter state) and settles
// or releases the reservation; then runs when the counter answered. It
// reports whether a callout is on its way (then will run).
func (s *stream) account(then func(error, meter.State)) bool {
	if s.done {
		return false
	}
	s.done = true
	u, src := s.resp.Usage()
	return s.charge(u, src, false, then)
}

// charge ends a metered stream through meter.Charge (metrics, filter state,
// the settle/release decision) and sends the settlement: now when then waits
// for it, else from OnDone, so the last bytes of the answer never wait for a
// callout to be sent.
func (s *stream) charge(u usage.Usage, src meter.Source, aborted bool, then func(error, meter.State)) bool {
	s.used, s.aborted = &u, aborted
	e := meter.Ending{Quota: s.quota, FailOpen: s.failOpen, Open: s.open, Source: src,
		Aborted: aborted, ReleaseOnAbort: s.p.pol.ReleaseOnAbort}
	if s.reserved != nil {
		e.ReservationID = s.reserved.ID
	}
	d := meter.Charge(accountHost{s.p}, meter.Charging{Plan: s.plan, Labels: s.labels(s.plan.Model), Usage: u,
		Response: s.resp, Ended: s.ended, Ending: e})
	if d.Op == "" {
		return false
	}
	s.open = false
	if then == nil && !s.ended {
		s.pending = d
		return false
	}
	return meter.Send(accountHost{s.p}, d, then)
}

// accountHost adapts proxy-wasm to meter.AccountHost.
type accountHost struct{ p *plugin }

func (h accountHost) Add(name string, n int64)     { h.p.add(name, n) }
func (h accountHost) Record(name string, v uint64) { h.p.record(name, v) }
func (accountHost) Warn(msg string)                { proxywasm.Log(proxywasm.LogLevelWarn, "tokencount: "+msg) }

func (accountHost) SetFilterState(pairs [][2]string) {
	for _, kv := range pairs {
		_ = proxywasm.SetProperty([]string{kv[0]}, []byte(kv[1]))
	}
}

func (h accountHost) Dispatch(c meter.Callout, done func(failed bool, status int, body []byte)) error {
	pol := h.p.pol
	_, err := proxywasm.DispatchHttpCall(pol.Cluster, pol.CalloutHeaders(c), c.Body, nil, pol.Timeout, func(r *proxywasm.CallResponse) {
		done(r.Failed, r.Status, r.Body)
	})
	return err
}

func (h accountHost) Enqueue(op string, c meter.Callout) { h.p.enqueue(op, c) }

// OnDone settles or releases whatever the stream still holds: a client
// abort, an upstream reset or a local reply after the reservation.
func (s *stream) OnDone() {
	defer s.report()
	s.ended = true
	if s.pending.Op != "" {
		meter.Send(accountHost{s.p}, s.pending, nil)
		s.pending = meter.Settlement{}
	}
	if s.done || s.plan == nil || s.replied {
		return
	}
	s.done = true
	if s.resp == nil {
		// No response began: nothing was generated that we can see.
		if s.open {
			s.p.add(meter.RequestsMetric(s.labels(s.plan.Model), meter.OutcomeReleased), 1)
			s.open = false
			meter.Send(accountHost{s.p}, meter.Settlement{Op: meter.OpRelease, Callout: meter.Release(s.reserved.ID)}, nil)
		}
		return
	}
	u, src := s.resp.Partial()
	s.charge(u, src, true, nil)
}

// report queues the request's usage record once the stream is over: ok when
// the response was metered to its end, aborted when it was cut (or never
// began), refused when this filter answered locally.
func (s *stream) report() {
	p := s.p
	if p.usage == nil || s.reported || s.start.IsZero() || (s.plan == nil && !s.replied) {
		return
	}
	s.reported = true
	now := time.Now()
	rec := usagelog.Record{RequestID: usagelog.RequestID(s.reqID, now), Time: now, App: s.ident.App, Product: s.ident.Product,
		Developer: s.ident.Developer, KeyID: s.ident.KeyID, Status: s.status, Latency: now.Sub(s.start)}
	if s.plan != nil {
		rec.Model = s.plan.Model
	}
	switch {
	case s.replied:
		rec.Outcome = usagelog.OutcomeRefused
	case s.used == nil || s.aborted:
		rec.Outcome = usagelog.OutcomeAborted
	default:
		rec.Outcome = usagelog.OutcomeOK
	}
	if s.used != nil {
		u := *s.used
		rec.PromptTokens, rec.CompletionTokens, rec.TotalTokens = u.PromptTokens, u.CompletionTokens, u.TotalTokens
		if rec.TotalTokens == 0 {
			rec.TotalTokens = u.PromptTokens + u.CompletionTokens
		}
		rec.Cost = float64(usage.Charge(usage.MetricCost, u, p.pol.Pricing.For(rec.Model))) / 1e6
	}
	if err := p.usage.Report(&rec); err != nil {
		proxywasm.Logf(proxywasm.LogLevelWarn, "tokencount: usage record: %v", err)
	}
}
