package httpapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/window"
)

// PathLease is the budget-lease endpoint (docs/counter.md, /work/lease-api.md).
const PathLease = "/v1/quota/lease"

// wireLeaseItem is one lease item on the wire. used and want are required so
// that a forgotten field never drops consumption or closes a lease.
type wireLeaseItem struct {
	Key   counter.Key `json:"key"`
	Spec  *wireSpec   `json:"spec"`
	ID    string      `json:"id"`
	Used  *int64      `json:"used"`
	Want  *int64      `json:"want"`
	Min   int64       `json:"min"`
	TTLMs int64       `json:"ttl_ms"`
	Seq   int64       `json:"seq"`
}

type wireLease struct {
	Items []wireLeaseItem `json:"items"`
}

// LeaseItem is one decoded lease item: a valid request, or the error that
// item alone answers with.
type LeaseItem struct {
	// Req is the validated request when Err is nil.
	Req counter.LeaseRequest
	// Err is the item's validation error.
	Err *ErrorBody
}

// LeaseRequest is the body of POST /v1/quota/lease.
type LeaseRequest struct {
	// Items are the decoded items, in order.
	Items []LeaseItem
}

// DecodeLease parses a lease body. The body's shape (JSON, field names and
// types, 1–128 items, the required key, spec, used and want) is checked as a
// whole; the values of each item are validated on their own, so one bad
// counter does not block the other leases' reports.
func DecodeLease(body []byte) (LeaseRequest, *Error) {
	var w wireLease
	if err := decodeStrict(body, &w); err != nil {
		return LeaseRequest{}, err
	}
	if err := checkCount(len(w.Items)); err != nil {
		return LeaseRequest{}, err
	}
	out := LeaseRequest{Items: make([]LeaseItem, len(w.Items))}
	for i, it := range w.Items {
		p := fmt.Sprintf("items[%d]", i)
		switch {
		case it.Spec == nil:
			return LeaseRequest{}, badRequest("missing_field", p+".spec", "%s.spec is required", p)
		case it.Spec.Limit == nil:
			return LeaseRequest{}, badRequest("missing_field", p+".spec.limit", "%s.spec.limit is required", p)
		case it.Spec.Interval == nil:
			return LeaseRequest{}, badRequest("missing_field", p+".spec.interval", "%s.spec.interval is required", p)
		case it.Used == nil:
			return LeaseRequest{}, badRequest("missing_field", p+".used", "%s.used is required (0 when nothing was drawn)", p)
		case it.Want == nil:
			return LeaseRequest{}, badRequest("missing_field", p+".want", "%s.want is required (0 closes the lease)", p)
		}
		kind := it.Spec.Window
		if kind == window.KindInvalid {
			kind = window.Calendar
		}
		r := counter.LeaseRequest{
			Key:  it.Key,
			Spec: window.Spec{Limit: *it.Spec.Limit, Interval: *it.Spec.Interval, Unit: it.Spec.TimeUnit, Kind: kind},
			ID:   it.ID, Used: *it.Used, Want: *it.Want, Min: it.Min, Seq: it.Seq,
		}
		out.Items[i] = LeaseItem{Req: r, Err: validateLeaseItem(p, r, it.TTLMs)}
		if out.Items[i].Err == nil {
			out.Items[i].Req.TTL = time.Duration(it.TTLMs) * time.Millisecond
		}
	}
	return out, nil
}

// validateLeaseItem names the first problem of one item, or returns nil.
func validateLeaseItem(p string, r counter.LeaseRequest, ttlMs int64) *ErrorBody {
	bad := func(code, param, format string, args ...any) *ErrorBody {
		return &ErrorBody{Type: "invalid_request_error", Code: code, Param: param, Message: fmt.Sprintf(format, args...)}
	}
	if err := r.Key.Validate(); err != nil {
		return bad("invalid_key", p+".key", "%s.key: %v", p, err)
	}
	if err := r.Spec.Validate(); err != nil {
		return bad("invalid_spec", p+".spec", "%s.spec: %v", p, err)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"used", r.Used}, {"want", r.Want}, {"min", r.Min}, {"seq", r.Seq}} {
		if f.v < 0 || f.v > window.MaxLimit {
			return bad("invalid_request", p+"."+f.name, "%s.%s %d out of range [0, 2^53]", p, f.name, f.v)
		}
	}
	if r.Min > r.Want {
		return bad("invalid_request", p+".min", "%s.min %d is above want %d", p, r.Min, r.Want)
	}
	if ttlMs < 0 || ttlMs > counter.MaxLeaseTTL.Milliseconds() {
		return bad("invalid_request", p+".ttl_ms", "%s.ttl_ms must be between 0 (default %d) and %d", p,
			counter.DefaultLeaseTTL.Milliseconds(), counter.MaxLeaseTTL.Milliseconds())
	}
	return nil
}

// LeaseResult is one lease on the wire.
type LeaseResult struct {
	// ID continues the lease in the next request; "" when it is closed.
	ID string `json:"id"`
	// Held is the budget the lease holds now.
	Held int64 `json:"held"`
	// Used is the counter's usage after the op, every lease included.
	Used int64 `json:"used"`
	// Limit is the quota's limit.
	Limit int64 `json:"limit"`
	// Remaining is limit − used, never below zero.
	Remaining int64 `json:"remaining"`
	// Reset is when the window's usage is forgotten, in Unix milliseconds.
	Reset int64 `json:"reset"`
	// ResetAfterMs is Reset relative to the server's clock.
	ResetAfterMs int64 `json:"reset_after_ms"`
	// ValidForMs is how long, from the answer, the lease may be drawn from;
	// rounded down, 0 when closed.
	ValidForMs int64 `json:"valid_for_ms"`
	// Lost reports that the id named no open lease of the current frame.
	Lost bool `json:"lost"`
}

// LeaseItemResult is a lease or the error of that item alone.
type LeaseItemResult struct {
	*LeaseResult
	// Error is set, and the lease absent, when the item failed.
	Error *ErrorBody `json:"error,omitempty"`
}

// LeaseResponse answers POST /v1/quota/lease.
type LeaseResponse struct {
	// Results holds one outcome per item, in order.
	Results []LeaseItemResult `json:"results"`
}

func (h *Handler) lease(ctx context.Context, body []byte) (any, *Error) {
	req, apiErr := DecodeLease(body)
	if apiErr != nil {
		return nil, apiErr
	}
	resp := LeaseResponse{Results: make([]LeaseItemResult, len(req.Items))}
	reqs := make([]counter.LeaseRequest, 0, len(req.Items))
	idx := make([]int, 0, len(req.Items))
	for i, it := range req.Items {
		if it.Err != nil {
			resp.Results[i].Error = it.Err
			h.metrics.add(epLease, outBadRequest, 1)
			continue
		}
		reqs = append(reqs, it.Req)
		idx = append(idx, i)
	}
	if len(reqs) == 0 {
		return resp, nil
	}
	ls, err := h.lim.Lease(ctx, reqs)
	if err != nil {
		return nil, engineError(err)
	}
	now := h.opts.Now()
	for j, l := range ls {
		i := idx[j]
		if l.Err != nil {
			h.metrics.add(epLease, outBadRequest, 1)
			body := engineError(l.Err).ErrorBody
			body.Param = fmt.Sprintf("items[%d]", i)
			if errors.Is(l.Err, counter.ErrInvalidLeaseID) {
				body.Code, body.Param = "invalid_lease_id", fmt.Sprintf("items[%d].id", i)
			}
			resp.Results[i].Error = &body
			continue
		}
		out := outOK
		if l.Lost {
			out = outLost
		}
		h.metrics.add(epLease, out, 1)
		r := &LeaseResult{ID: l.ID, Held: l.Held, Used: l.Used, Limit: l.Limit, Remaining: l.Remaining, Lost: l.Lost,
			Reset: window.Ms(l.Reset), ResetAfterMs: ceilMs(l.Reset.Sub(now))}
		if !l.ValidUntil.IsZero() {
			if d := l.ValidUntil.Sub(now); d > 0 {
				r.ValidForMs = int64(d / time.Millisecond)
			}
		}
		resp.Results[i].LeaseResult = r
	}
	return resp, nil
}
