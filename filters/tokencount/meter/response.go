package meter

import (
	"strings"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/shared/sse"
)

// Kind is how a response is metered.
type Kind uint8

// Response kinds.
const (
	// KindError is a non-2xx answer: nothing was generated, the
	// reservation is released.
	KindError Kind = iota
	// KindJSON is a complete JSON body read for its usage object.
	KindJSON
	// KindSSE is an event stream counted event by event as it passes.
	KindSSE
)

// String names the kind for logs.
func (k Kind) String() string {
	switch k {
	case KindJSON:
		return "json"
	case KindSSE:
		return "sse"
	}
	return "error"
}

// Source says where a settled usage came from.
type Source uint8

// Usage sources.
const (
	// SourceNone: no usage; the reservation is released.
	SourceNone Source = iota
	// SourceUpstream: the upstream's own usage object.
	SourceUpstream
	// SourceEstimated: no usage in the response; the prompt estimate plus
	// the tokens of the generated text.
	SourceEstimated
	// SourceReservation: the response could not be read (compressed, too
	// large, or abandoned after the upstream generated it), or, in strict
	// mode, it carried no usage; the whole reservation is charged.
	SourceReservation
	// SourceBound: the upstream's usage broke the request's bound (absurd,
	// negative, not a count, above what the request permits); the bound is
	// charged instead (Plan.Check).
	SourceBound
)

// String names the source for filter state and logs.
func (s Source) String() string {
	switch s {
	case SourceUpstream:
		return "upstream"
	case SourceEstimated:
		return "estimated"
	case SourceReservation:
		return "reservation"
	case SourceBound:
		return "bound"
	}
	return "none"
}

// Response meters one response. It never holds the stream: an event
// stream's bytes are handed back at once (minus the usage-only chunk the
// filter asked for on the client's behalf), and a JSON body is only
// copied, up to the policy's MaxResponseBytes.
type Response struct {
	plan     *Plan
	kind     Kind
	readable bool // not compressed
	max      int64

	counter *usage.StreamCounter
	pass    *sse.Passthrough
	out     []byte

	body     []byte
	overflow bool
	ended    bool

	violation Violation
	reported  usage.Usage
}

// NewResponse starts metering a response from its status and headers.
func (p *Policy) NewResponse(pl *Plan, status int, contentType, contentEncoding string) *Response {
	r := &Response{plan: pl, max: p.MaxResponseBytes}
	ce := strings.ToLower(strings.TrimSpace(contentEncoding))
	r.readable = ce == "" || ce == "identity"
	switch {
	case status < 200 || status > 299:
		r.kind = KindError
	case isEventStream(contentType):
		r.kind = KindSSE
		if r.readable {
			r.counter = usage.NewStreamCounter(pl.API, sse.Options{})
			if pl.StripUsage {
				r.pass = sse.NewPassthrough(sse.Options{}, usage.IsUsageOnlyChunk)
			}
		}
	default:
		r.kind = KindJSON
	}
	return r
}

func isEventStream(ct string) bool {
	ct, _, _ = strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(ct), "text/event-stream")
}

// Kind is how the response is metered.
func (r *Response) Kind() Kind { return r.kind }

// Rewrites reports whether Feed may change the bytes (the usage chunk is
// removed), so the filter drops content-length up front.
func (r *Response) Rewrites() bool { return r.pass != nil }

// Feed takes the next body chunk (end: it is the last one). out is what
// goes on to the client; changed is false when it is exactly chunk, so
// the proxy's buffer can stay as it is. out is valid until the next call.
func (r *Response) Feed(chunk []byte, end bool) (out []byte, changed bool) {
	if r.ended {
		return chunk, false
	}
	r.ended = end
	switch r.kind {
	case KindSSE:
		return r.feedSSE(chunk, end)
	case KindJSON:
		if !r.overflow && r.readable {
			if int64(len(r.body)+len(chunk)) > r.max {
				r.overflow, r.body = true, nil
			} else {
				r.body = append(r.body, chunk...)
			}
		}
	}
	return chunk, false
}

func (r *Response) feedSSE(chunk []byte, end bool) ([]byte, bool) {
	switch {
	case r.counter == nil:
		return chunk, false
	case r.pass == nil:
		_ = r.counter.Feed(chunk) // an oversized event is skipped; counting goes on
		if end {
			_ = r.counter.Finish()
		}
		return chunk, false
	}
	res, _ := r.pass.Feed(chunk)
	for i := range res.Events {
		r.counter.Observe(&res.Events[i])
	}
	if !end {
		return res.Out, !res.Unchanged
	}
	// Finish reuses the Passthrough's output buffer: keep a copy of Out.
	r.out = append(r.out[:0], res.Out...)
	changed := !res.Unchanged
	fin, _ := r.pass.Finish()
	for i := range fin.Events {
		r.counter.Observe(&fin.Events[i])
	}
	if len(fin.Out) > 0 || fin.Dropped > 0 {
		changed = true
	}
	r.out = append(r.out, fin.Out...)
	if !changed {
		return chunk, false
	}
	return r.out, true
}

// Usage is the usage to settle once the response has ended: the
// upstream's when it is within the plan's bound (else the bound, with
// Violation saying why), an estimate when there is none (the reservation
// in strict mode), or the reservation when the answer is unreadable.
func (r *Response) Usage() (usage.Usage, Source) {
	return r.checked(r.usage())
}

// Partial is what a response cut short costs (client abort, upstream
// reset): for a stream, what it carried so far (the upstream's cumulative
// usage if it sent any, else the prompt estimate plus the streamed text;
// the reservation in strict mode); for a JSON answer, whose text the
// upstream had generated in full, the reservation; for an error, nothing.
func (r *Response) Partial() (usage.Usage, Source) {
	return r.checked(r.partial())
}

// Violation is why the upstream's usage was replaced by the bound ("" when
// it was not), once Usage or Partial ran.
func (r *Response) Violation() Violation { return r.violation }

// Reported is the upstream's usage as it reported it, for the log line of a
// violation.
func (r *Response) Reported() usage.Usage { return r.reported }

func (r *Response) checked(u usage.Usage, src Source) (usage.Usage, Source) {
	switch src {
	case SourceUpstream:
		c, v := r.plan.Check(u)
		if v != "" {
			r.violation, r.reported = v, u
			return c, SourceBound
		}
	case SourceEstimated:
		if r.plan.Strict {
			return r.plan.Reserved(), SourceReservation
		}
	}
	return u, src
}

func (r *Response) usage() (usage.Usage, Source) {
	pl := r.plan
	switch {
	case r.kind == KindError:
		return usage.Usage{}, SourceNone
	case !r.readable:
		return pl.Reserved(), SourceReservation
	case r.kind == KindSSE:
		u := r.counter.Result(pl.PromptEstimate)
		if u.Estimated {
			return u, SourceEstimated
		}
		return u, SourceUpstream
	case r.overflow:
		return pl.Reserved(), SourceReservation
	}
	if u, ok := usage.FromJSON(pl.API, r.body); ok {
		return u, SourceUpstream
	}
	// No usage object: count the generated text as a stream counter would
	// count a stream made of this one message.
	c := usage.NewStreamCounter(pl.API, sse.Options{})
	c.Observe(&sse.Event{Data: r.body})
	u := c.Result(pl.PromptEstimate)
	u.Estimated = true
	return u, SourceEstimated
}

func (r *Response) partial() (usage.Usage, Source) {
	switch {
	case r.kind == KindError:
		return usage.Usage{}, SourceNone
	case r.kind == KindSSE && r.counter != nil:
		u := r.counter.Result(r.plan.PromptEstimate)
		if u.Estimated {
			return u, SourceEstimated
		}
		return u, SourceUpstream
	}
	return r.plan.Reserved(), SourceReservation
}
