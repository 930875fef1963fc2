package meter

import (
	"strconv"
	"time"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/identity"
	"github.com/tollgate/tollgate/shared/lease"
	"github.com/tollgate/tollgate/shared/reqview"
	"github.com/tollgate/tollgate/shared/usagelog"
)

// Action is what a stream callback asks of the proxy.
type Action int

const (
	// Continue lets the stream go on.
	Continue Action = iota
	// Pause stops the stream until the machine resumes it (or answered locally).
	Pause
	// Gather pauses the request and asks for its whole body, delivered to
	// OnRequestBody (or BodyTooLarge / BodyUnreadable).
	Gather
)

// MemoHost is a StreamHost that offers the stream's request-view memo, so
// the body parsed by an earlier filter of the same stream is not parsed
// again.
type MemoHost interface {
	RequestMemo() *reqview.Memo
}

// StreamHost is what one metered stream needs from the proxy, so that the
// whole per-stream machine runs (and is table-tested) as plain Go. Calls
// whose failure the machine cannot act on log it themselves.
type StreamHost interface {
	AccountHost
	// Now is the current time (usage record latency).
	Now() time.Time
	// Error logs an error.
	Error(msg string)
	// RequestHeader is a request header's value ("" when absent).
	RequestHeader(name string) string
	// RemoveRequestHeader drops a request header.
	RemoveRequestHeader(name string)
	// ReplaceRequestBody replaces the forwarded request body (content-length fixed).
	ReplaceRequestBody(body []byte) error
	// ResumeRequest continues a request paused by the machine.
	ResumeRequest()
	// SendError answers the client locally with e and the extra headers.
	SendError(e *apierror.Error, extra ...[2]string)
	// ResponseHeader is a response header's value; ok is false when absent.
	ResponseHeader(name string) (value string, ok bool)
	// RemoveResponseHeader drops a response header.
	RemoveResponseHeader(name string)
	// SetResponseHeader sets (replaces) a response header.
	SetResponseHeader(name, value string)
	// ResponseChunk is the first size bytes of the buffered response body.
	ResponseChunk(size int) []byte
	// ResponseBody is the whole buffered response body.
	ResponseBody() []byte
	// ReplaceResponseBody replaces the buffered response body.
	ReplaceResponseBody(body []byte)
	// ResumeResponse continues a response paused by the machine.
	ResumeResponse()
	// Report queues the stream's usage record.
	Report(rec *usagelog.Record)
}

// Stream follows one request through the filter: the body gathered, the
// reservation (clamped or refused), the response metered (a small JSON
// response held until settled), the settlement or release at its end, and
// the usage record. The proxy's callbacks call its On* methods.
type Stream struct {
	h         StreamHost
	pol       *Policy
	models    *LabelSet
	apps      *LabelSet
	reporting bool // usage records are kept

	api       usage.API
	quota     *Quota
	app       string
	reserving bool // the reserve callout is in flight
	clamped   bool // the output cap was lowered after a denial
	replied   bool // this filter answered locally
	ended     bool // OnDone ran: the stream is gone

	plan     *Plan
	reserved *State // the reservation (nil: none held)
	leases   Leaser // budget leases (nil: off)
	leased   string // the lease counter the reservation was taken from ("": a keystore reservation)
	open     bool   // the reservation still awaits settle or release
	failOpen bool   // the keystore failed and the request went on unreserved

	resp    *Response
	holding bool       // a JSON response's headers wait for the settlement
	done    bool       // the usage was accounted
	pending Settlement // the settlement, sent from OnDone

	// The usage record (only kept when reporting).
	start    time.Time
	reqID    string
	ident    identity.Identity
	status   int          // the status the client got
	used     *usage.Usage // what was charged
	aborted  bool
	reported bool
}

// NewStream starts the machine of one stream; models and apps bound the
// metric labels, reporting turns usage records on.
func NewStream(h StreamHost, pol *Policy, models, apps *LabelSet, reporting bool) *Stream {
	return &Stream{h: h, pol: pol, models: models, apps: apps, reporting: reporting}
}

// Leaser draws reservations from budget leases (shared/lease.Leases).
type Leaser interface {
	// Take reserves n locally; ok false means the lease cannot cover it.
	Take(counter string, n int64) (g lease.Grant, ok bool, err error)
	// Settle ends a local reservation of taken at actual.
	Settle(counter string, taken, actual int64) error
}

// WithLeases makes the stream reserve from budget leases when they cover
// the request (l nil: never).
func (s *Stream) WithLeases(l Leaser) *Stream {
	s.leases = l
	return s
}

// takeLease reserves the plan's amount from the quota's lease; it reports
// whether the lease covered it (else the keystore is asked).
func (s *Stream) takeLease() bool {
	if s.leases == nil {
		return false
	}
	item := LeaseItem(s.quota)
	g, ok, err := s.leases.Take(item, s.plan.Amount)
	if err != nil {
		s.h.Warn("lease: " + err.Error())
		return false
	}
	if !ok {
		s.h.Add(LeaseMetric(LeaseFallback), 1)
		return false
	}
	s.h.Add(LeaseMetric(LeaseTaken), 1)
	st := State{Allowed: true, Limit: g.Limit, Remaining: g.Remaining, Used: max(g.Limit-g.Remaining, 0)}
	if g.Reset > 0 {
		st.ResetAfter = max(time.UnixMilli(g.Reset).Sub(s.h.Now()), 0)
	}
	s.reserved, s.open, s.leased = &st, true, item
	return true
}

// settleLease ends a reservation taken from a lease, locally: actual is
// charged, the rest returns to the lease. When the lease's record is gone
// the consumption is recorded at the keystore directly, so it is never lost.
func (s *Stream) settleLease(actual int64) {
	taken := s.plan.Amount
	if err := s.leases.Settle(s.leased, taken, actual); err != nil {
		s.h.Warn("lease settle: " + err.Error())
		if actual > 0 {
			Send(s.h, Settlement{Op: OpConsume, Callout: Record(s.quota, actual)}, nil)
		}
	}
	r := s.reserved
	r.Remaining = max(r.Remaining+taken-actual, 0)
	r.Used = max(r.Limit-r.Remaining, 0)
}

// Reserving reports whether the reserve callout is in flight.
func (s *Stream) Reserving() bool { return s.reserving }

// OnRequestHeaders decides whether the request is metered: Continue (not
// metered), Pause (answered locally) or Gather.
func (s *Stream) OnRequestHeaders(endOfStream bool) Action {
	h, pol := s.h, s.pol
	if h.RequestHeader(":method") != "POST" {
		return Continue
	}
	path := h.RequestHeader(":path")
	if s.reporting {
		s.start, s.reqID = h.Now(), h.RequestHeader("x-request-id")
		if pol.TrustIdentity {
			s.ident, _, _ = identity.Parse(pol.Identity, h.RequestHeader)
		}
	}
	s.api = usage.APIForPath(path)
	q, id, aerr := pol.Resolve(h.RequestHeader)
	s.app = id.App
	if s.api == usage.APIUnknown && aerr == nil {
		// Not an API the filter meters: refused when a token quota applies
		// (unless allowed), so no endpoint consumes tokens uncounted.
		if aerr = pol.Unmetered(path, q); aerr == nil {
			return Continue
		}
	}
	if aerr != nil {
		return s.reject(aerr, OutcomeRejected)
	}
	s.quota = q
	if pol.StripAcceptEncoding {
		h.RemoveRequestHeader("accept-encoding")
	}
	if endOfStream {
		return s.reject(BodyRequired(), OutcomeRejected)
	}
	return Gather
}

// BodyTooLarge answers 413 before the whole body is read.
func (s *Stream) BodyTooLarge() Action {
	return s.reject(s.pol.TooLarge(), OutcomeRejected)
}

// BodyUnreadable answers 500 when the host cannot return the body.
func (s *Stream) BodyUnreadable(err error) Action {
	return s.internal("read request body", err)
}

// OnRequestBody plans the reservation on the whole body and asks for it.
func (s *Stream) OnRequestBody(body []byte) Action {
	pol := s.pol
	var memo *reqview.Memo
	if mh, ok := s.h.(MemoHost); ok {
		memo = mh.RequestMemo()
	}
	pl, aerr := pol.PlanRequestMemo(memo, s.api, body, s.quota, pol.PublicModel(s.h.RequestHeader))
	if aerr != nil {
		if aerr.Status != 429 {
			return s.reject(aerr, OutcomeRejected)
		}
		s.plan = pl // for the model label; the request never reaches the upstream
		s.h.Add(RefusedMetric(s.labels(pl.Model)), 1)
		return s.reject(aerr, OutcomeRefused)
	}
	s.plan = pl
	if pl.Body != nil {
		if err := s.h.ReplaceRequestBody(pl.Body); err != nil {
			return s.internal("rewrite request body", err)
		}
		pl.Body = nil // the proxy holds the body now
	}
	if s.quota == nil || s.takeLease() {
		return Continue
	}
	if err := s.h.Dispatch(pol.Reserve(s.quota, pl.Amount), s.onReserve); err != nil {
		return s.keystoreFailed(err)
	}
	s.reserving = true
	return Pause
}

// onReserve runs with the keystore's answer to a reservation.
func (s *Stream) onReserve(failed bool, status int, body []byte) {
	s.reserving = false
	st, err := ParseReserve(failed, status, body)
	if s.ended {
		// The client left while we waited: give the reservation back.
		if err == nil && st.Allowed {
			Send(s.h, Settlement{Op: OpRelease, Callout: Release(st.ID)}, nil)
		}
		return
	}
	if err != nil {
		if s.keystoreFailed(err) == Continue {
			s.h.ResumeRequest()
		}
		return
	}
	if !st.Allowed && !s.clamped && s.clamp(st) {
		return
	}
	if !st.Allowed {
		s.h.Add(RefusedMetric(s.labels(s.plan.Model)), 1)
		e, extra := s.pol.Refusal(s.plan, st)
		s.reject(e, OutcomeRefused, extra...)
		return
	}
	s.reserved, s.open = &st, true
	s.h.ResumeRequest()
}

// clamp answers a denied reservation, when clamp_max_tokens allows, by
// lowering the output cap to what the budget has left: the forwarded body
// is rewritten and the smaller amount reserved again. It reports whether
// that second reservation is on its way.
func (s *Stream) clamp(st State) bool {
	pol := s.pol
	per, ok := pol.ClampOutput(s.plan, st.Remaining)
	if !ok {
		return false
	}
	body, err := pol.Clamp(s.plan, s.plan.Sent, per)
	if err != nil {
		s.h.Warn("clamp output: " + err.Error())
		return false
	}
	if err := s.h.ReplaceRequestBody(body); err != nil {
		s.h.Warn("clamp output: " + err.Error())
		return false
	}
	s.plan.Sent, s.clamped = body, true
	if err := s.h.Dispatch(pol.Reserve(s.quota, s.plan.Amount), s.onReserve); err != nil {
		if s.keystoreFailed(err) == Continue {
			s.h.ResumeRequest()
		}
		return true
	}
	s.reserving = true
	return true
}

// keystoreFailed applies the failure mode: Continue (fail open) or a 503.
func (s *Stream) keystoreFailed(err error) Action {
	s.h.Add(KeystoreErrorsMetric(OpReserve), 1)
	s.h.Warn("reserve: " + err.Error())
	if s.pol.FailOpen {
		s.failOpen = true
		return Continue
	}
	return s.reject(KeystoreUnavailable(), OutcomeFailed)
}

func (s *Stream) reject(e *apierror.Error, o Outcome, extra ...[2]string) Action {
	model := ""
	if s.plan != nil {
		model = s.plan.Model
	}
	s.h.Add(RequestsMetric(s.labels(model), o), 1)
	s.replied = true
	s.status = e.Status
	s.h.SendError(e, extra...)
	return Pause
}

func (s *Stream) internal(what string, err error) Action {
	s.h.Error(what + ": " + err.Error())
	return s.reject(apierror.New(500, CodeInternal, "the gateway could not meter this request"), OutcomeRejected)
}

func (s *Stream) labels(model string) Labels {
	return Labels{Model: s.models.Label(model), App: s.apps.Label(s.app)}
}

// ---- response ----

// OnResponseHeaders starts metering the response: an error releases at
// once, an SSE stream is metered as it passes, a small JSON answer has its
// headers held (Pause) until its usage is settled.
func (s *Stream) OnResponseHeaders(endOfStream bool) Action {
	if s.plan == nil || s.replied {
		return Continue
	}
	pol, h := s.pol, s.h
	status, _ := h.ResponseHeader(":status")
	code, _ := strconv.Atoi(status)
	s.status = code
	ct, _ := h.ResponseHeader("content-type")
	ce, _ := h.ResponseHeader("content-encoding")
	s.resp = pol.NewResponse(s.plan, code, ct, ce)
	switch s.resp.Kind() {
	case KindError:
		// Nothing was generated: release now and show the budget without it.
		if s.reserved != nil {
			s.setHeaders(Released(*s.reserved, s.plan.Amount))
		}
		s.finish()
		return Continue
	case KindSSE:
		if s.resp.Rewrites() {
			h.RemoveResponseHeader("content-length")
		}
	case KindJSON:
		if endOfStream {
			s.finish()
			break
		}
		if s.open && pol.HoldResponseBytes > 0 && s.contentLength() <= pol.HoldResponseBytes {
			// Hold the headers until the body is read and settled, so the
			// client's remaining-tokens header shows the settled usage.
			s.holding = true
			return Pause
		}
	}
	if s.reserved != nil {
		s.setHeaders(*s.reserved)
	}
	return Continue
}

// contentLength is the response's content-length, 0 when absent, huge
// when unreadable.
func (s *Stream) contentLength() int64 {
	v, ok := s.h.ResponseHeader("content-length")
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 1 << 62
	}
	return n
}

func (s *Stream) setHeaders(st State) {
	for _, kv := range s.pol.RateLimitHeaders(st) {
		s.h.SetResponseHeader(kv[0], kv[1])
	}
}

// OnResponseBody meters (and, for SSE, may rewrite) the response as it
// passes; a held JSON body is buffered and settled at its end.
func (s *Stream) OnResponseBody(bodySize int, endOfStream bool) Action {
	if s.resp == nil || s.done {
		return Continue
	}
	if s.holding {
		return s.holdBody(bodySize, endOfStream)
	}
	var chunk []byte
	if bodySize > 0 {
		chunk = s.h.ResponseChunk(bodySize)
	}
	out, changed := s.resp.Feed(chunk, endOfStream)
	if changed {
		s.h.ReplaceResponseBody(out)
	}
	if endOfStream {
		s.finish()
	}
	return Continue
}

// holdBody buffers a held JSON response; at its end the usage is settled
// before headers and body go on. A body outgrowing the hold limit is let
// through, headers showing the reservation.
func (s *Stream) holdBody(bodySize int, endOfStream bool) Action {
	if int64(bodySize) > s.pol.HoldResponseBytes {
		s.holding = false
		s.resp.Feed(s.h.ResponseBody(), endOfStream)
		s.setHeaders(*s.reserved)
		if endOfStream {
			s.finish()
		}
		return Continue
	}
	if !endOfStream {
		return Pause
	}
	return s.settleHeld()
}

// settleHeld reads the held body, settles and resumes the response when
// the counter answers.
func (s *Stream) settleHeld() Action {
	s.holding = false
	s.resp.Feed(s.h.ResponseBody(), true)
	held := *s.reserved
	ok := s.account(func(err error, st State) {
		if s.ended {
			return
		}
		if err == nil {
			held = st
		}
		s.setHeaders(held)
		s.h.ResumeResponse()
	})
	if !ok {
		s.setHeaders(*s.reserved) // settled from a lease, or the callout failed
		return Continue
	}
	return Pause
}

// OnResponseTrailers ends a response whose body ended with trailers.
func (s *Stream) OnResponseTrailers() Action {
	if s.resp == nil || s.done {
		return Continue
	}
	if s.holding {
		return s.settleHeld()
	}
	s.resp.Feed(nil, true)
	s.finish()
	return Continue
}

// finish accounts the ended response without waiting for the counter.
func (s *Stream) finish() { s.account(nil) }

// account records the response's usage (metrics, filter state) and settles
// or releases the reservation; then runs when the counter answered. It
// reports whether a callout is on its way (then will run).
func (s *Stream) account(then func(error, State)) bool {
	if s.done {
		return false
	}
	s.done = true
	u, src := s.resp.Usage()
	return s.charge(u, src, false, then)
}

// charge ends a metered stream through Charge (metrics, filter state, the
// settle/release decision) and sends the settlement: now when then waits
// for it, else from OnDone, so the last bytes of the answer never wait for a
// callout to be sent.
func (s *Stream) charge(u usage.Usage, src Source, aborted bool, then func(error, State)) bool {
	s.used, s.aborted = &u, aborted
	e := Ending{Quota: s.quota, FailOpen: s.failOpen, Open: s.open, Source: src,
		Aborted: aborted, ReleaseOnAbort: s.pol.ReleaseOnAbort}
	if s.reserved != nil {
		e.ReservationID = s.reserved.ID
	}
	d := Charge(s.h, Charging{Plan: s.plan, Labels: s.labels(s.plan.Model), Usage: u,
		Response: s.resp, Ended: s.ended, Ending: e})
	if d.Op == "" {
		return false
	}
	s.open = false
	if s.leased != "" && (d.Op == OpSettle || d.Op == OpRelease) {
		actual := int64(0)
		if d.Op == OpSettle {
			actual = s.plan.Charge(u)
		}
		s.settleLease(actual)
		return false
	}
	if then == nil && !s.ended {
		s.pending = d
		return false
	}
	return Send(s.h, d, then)
}

// OnDone settles or releases whatever the stream still holds (a client
// abort, an upstream reset or a local reply after the reservation), sends
// the settlement the response's end left, and reports the usage record.
func (s *Stream) OnDone() {
	defer s.report()
	s.ended = true
	if s.pending.Op != "" {
		Send(s.h, s.pending, nil)
		s.pending = Settlement{}
	}
	if s.done || s.plan == nil || s.replied {
		return
	}
	s.done = true
	if s.resp == nil {
		// No response began: nothing was generated that we can see.
		if s.open {
			s.h.Add(RequestsMetric(s.labels(s.plan.Model), OutcomeReleased), 1)
			s.open = false
			if s.leased != "" {
				s.settleLease(0)
				return
			}
			Send(s.h, Settlement{Op: OpRelease, Callout: Release(s.reserved.ID)}, nil)
		}
		return
	}
	u, src := s.resp.Partial()
	s.charge(u, src, true, nil)
}

// report queues the request's usage record once the stream is over: ok when
// the response was metered to its end, aborted when it was cut (or never
// began), refused when this filter answered locally.
func (s *Stream) report() {
	if !s.reporting || s.reported || s.start.IsZero() || (s.plan == nil && !s.replied) {
		return
	}
	s.reported = true
	now := s.h.Now()
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
		rec.Cost = float64(usage.Charge(usage.MetricCost, u, s.pol.Pricing.For(rec.Model))) / 1e6
	}
	s.h.Report(&rec)
}
