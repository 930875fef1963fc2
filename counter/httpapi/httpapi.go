// Package httpapi is the data-plane HTTP/JSON face of the counter engine:
// consume, reserve, settle, release and lease, each batched, for the quota
// and tokencount filters. The contract is documented in docs/counter.md.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/window"
)

// Paths served by the handler.
const (
	PathConsume = "/v1/quota/consume"
	PathReserve = "/v1/quota/reserve"
	PathSettle  = "/v1/quota/settle"
	PathRelease = "/v1/quota/release"
)

// Options configures the handler.
type Options struct {
	// MaxBodyBytes bounds a request body; default 256 KiB.
	MaxBodyBytes int64
	// BackendTimeout bounds each engine call; default 2 s.
	BackendTimeout time.Duration
	// Logger receives backend failures; default slog.Default().
	Logger *slog.Logger
	// Now is the clock used for reset_after_ms; default time.Now.
	Now func() time.Time
}

// Handler serves the data-plane endpoints listed by Paths.
type Handler struct {
	lim     counter.Limiter
	opts    Options
	metrics metrics
}

// New returns a handler over the limiter (normally a *counter.Engine).
func New(lim counter.Limiter, opts Options) *Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 256 << 10
	}
	if opts.BackendTimeout <= 0 {
		opts.BackendTimeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{lim: lim, opts: opts}
}

// Paths lists the endpoints the handler serves, so that a service can mount
// each one under its own route and count calls per endpoint.
func Paths() []string {
	return []string{PathConsume, PathReserve, PathSettle, PathRelease, PathLease}
}

// Register mounts the endpoints on mux, for services that serve more paths.
func (h *Handler) Register(mux *http.ServeMux) {
	for _, p := range Paths() {
		mux.Handle(p, h)
	}
}

// ServeHTTP routes a request to its endpoint.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var serve func(context.Context, []byte) (any, *Error)
	var ep endpoint
	switch r.URL.Path {
	case PathConsume:
		serve, ep = h.consume, epConsume
	case PathReserve:
		serve, ep = h.reserve, epReserve
	case PathSettle:
		serve, ep = h.settle, epSettle
	case PathRelease:
		serve, ep = h.release, epRelease
	case PathLease:
		serve, ep = h.lease, epLease
	default:
		writeError(w, &Error{Status: http.StatusNotFound, ErrorBody: ErrorBody{Type: "invalid_request_error", Code: "not_found",
			Message: fmt.Sprintf("no endpoint %s", r.URL.Path)}})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, &Error{Status: http.StatusMethodNotAllowed, ErrorBody: ErrorBody{Type: "invalid_request_error", Code: "method_not_allowed",
			Message: fmt.Sprintf("%s needs POST, got %s", r.URL.Path, r.Method)}})
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			writeError(w, &Error{Status: http.StatusUnsupportedMediaType, ErrorBody: ErrorBody{Type: "invalid_request_error", Code: "unsupported_media_type",
				Message: fmt.Sprintf("content type %q is not application/json", ct)}})
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, &Error{Status: http.StatusRequestEntityTooLarge, ErrorBody: ErrorBody{Type: "invalid_request_error", Code: "request_too_large",
				Message: fmt.Sprintf("request body exceeds %d bytes", h.opts.MaxBodyBytes)}})
			return
		}
		writeError(w, &Error{Status: http.StatusBadRequest, ErrorBody: ErrorBody{Type: "invalid_request_error", Code: "invalid_body",
			Message: fmt.Sprintf("reading request body: %v", err)}})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.BackendTimeout)
	defer cancel()
	resp, apiErr := serve(ctx, body)
	if apiErr != nil {
		if apiErr.Status >= 500 {
			h.metrics.add(ep, outBackendError, 1)
			h.opts.Logger.Error("quota backend failed", "path", r.URL.Path, "err", apiErr.cause)
		} else {
			h.metrics.add(ep, outBadRequest, 1)
		}
		writeError(w, apiErr)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// Result is one decision on the wire.
type Result struct {
	// Allowed reports whether the usage fitted and was counted.
	Allowed bool `json:"allowed"`
	// Limit is the quota's limit.
	Limit int64 `json:"limit"`
	// Used is the usage counted in the window after this decision.
	Used int64 `json:"used"`
	// Remaining is limit − used, never below zero.
	Remaining int64 `json:"remaining"`
	// Reset is when the window's usage is forgotten, in Unix milliseconds.
	Reset int64 `json:"reset"`
	// ResetAfterMs is Reset relative to the server's clock, immune to skew.
	ResetAfterMs int64 `json:"reset_after_ms"`
	// RetryAfterMs is, when denied, how long until the request would fit.
	RetryAfterMs int64 `json:"retry_after_ms"`
}

func (h *Handler) result(d counter.Decision) Result {
	return Result{Allowed: d.Allowed, Limit: d.Limit, Used: d.Used, Remaining: d.Remaining,
		Reset: window.Ms(d.Reset), ResetAfterMs: ceilMs(d.Reset.Sub(h.opts.Now())), RetryAfterMs: ceilMs(d.RetryAfter)}
}

// ceilMs rounds a duration up to whole milliseconds, never below zero.
func ceilMs(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// ConsumeResponse answers POST /v1/quota/consume.
type ConsumeResponse struct {
	// Allowed is true when every item was allowed.
	Allowed bool `json:"allowed"`
	// Results holds one decision per item, in order.
	Results []Result `json:"results"`
}

func (h *Handler) consume(ctx context.Context, body []byte) (any, *Error) {
	req, apiErr := DecodeConsume(body)
	if apiErr != nil {
		return nil, apiErr
	}
	ds, err := h.lim.ConsumeBatch(ctx, req.Items, req.Atomic)
	if err != nil {
		return nil, engineError(err)
	}
	resp := ConsumeResponse{Allowed: true, Results: make([]Result, len(ds))}
	for i, d := range ds {
		resp.Results[i] = h.result(d)
		resp.Allowed = resp.Allowed && d.Allowed
		h.metrics.add(epConsume, decisionOutcome(d.Allowed), 1)
	}
	return resp, nil
}

// ReservationResult is one reservation on the wire.
type ReservationResult struct {
	Result
	// ID settles or releases the reservation; empty when denied.
	ID string `json:"id,omitempty"`
	// Expires is when an unsettled reservation is released, in Unix ms.
	Expires int64 `json:"expires,omitempty"`
}

// ReserveResponse answers POST /v1/quota/reserve.
type ReserveResponse struct {
	// Allowed is true when every item was reserved (all or none are).
	Allowed bool `json:"allowed"`
	// Results holds one reservation per item, in order.
	Results []ReservationResult `json:"results"`
}

func (h *Handler) reserve(ctx context.Context, body []byte) (any, *Error) {
	req, apiErr := DecodeReserve(body)
	if apiErr != nil {
		return nil, apiErr
	}
	rs, err := h.lim.ReserveBatch(ctx, req.Items, time.Duration(req.TTLMs)*time.Millisecond)
	if err != nil {
		return nil, engineError(err)
	}
	resp := ReserveResponse{Allowed: true, Results: make([]ReservationResult, len(rs))}
	for i, r := range rs {
		resp.Results[i] = ReservationResult{Result: h.result(r.Decision), ID: r.ID}
		if r.ID != "" {
			resp.Results[i].Expires = window.Ms(r.Expires)
		}
		resp.Allowed = resp.Allowed && r.Allowed
		h.metrics.add(epReserve, decisionOutcome(r.Allowed), 1)
	}
	return resp, nil
}

// AdjustResult is the outcome of settling or releasing one reservation:
// either the counter's state afterwards or an error for that item.
type AdjustResult struct {
	*Result
	// Error is set, and Result absent, when the item failed.
	Error *ErrorBody `json:"error,omitempty"`
}

// AdjustResponse answers POST /v1/quota/settle and /v1/quota/release.
type AdjustResponse struct {
	// Results holds one outcome per item, in order.
	Results []AdjustResult `json:"results"`
}

func (h *Handler) settle(ctx context.Context, body []byte) (any, *Error) {
	req, apiErr := DecodeSettle(body)
	if apiErr != nil {
		return nil, apiErr
	}
	return h.adjust(epSettle, len(req.Items), func(i int) (counter.Decision, error) {
		return h.lim.Settle(ctx, req.Items[i].ID, *req.Items[i].Actual)
	})
}

func (h *Handler) release(ctx context.Context, body []byte) (any, *Error) {
	req, apiErr := DecodeRelease(body)
	if apiErr != nil {
		return nil, apiErr
	}
	return h.adjust(epRelease, len(req.Items), func(i int) (counter.Decision, error) {
		return h.lim.Release(ctx, req.Items[i].ID)
	})
}

func (h *Handler) adjust(ep endpoint, n int, one func(int) (counter.Decision, error)) (any, *Error) {
	resp := AdjustResponse{Results: make([]AdjustResult, n)}
	for i := 0; i < n; i++ {
		d, err := one(i)
		switch {
		case err == nil:
			r := h.result(d)
			resp.Results[i].Result = &r
			h.metrics.add(ep, outOK, 1)
		case errors.Is(err, counter.ErrReservationNotFound):
			h.metrics.add(ep, outNotFound, 1)
			resp.Results[i].Error = &ErrorBody{Type: "invalid_request_error", Code: "reservation_not_found",
				Message: "reservation is unknown, already settled or released, or expired", Param: fmt.Sprintf("items[%d].id", i)}
		default:
			apiErr := engineError(err)
			if apiErr.Status >= 500 {
				return nil, apiErr
			}
			h.metrics.add(ep, outBadRequest, 1)
			body := apiErr.ErrorBody
			body.Code, body.Param = "invalid_reservation_id", fmt.Sprintf("items[%d].id", i)
			resp.Results[i].Error = &body
		}
	}
	return resp, nil
}

func decisionOutcome(allowed bool) outcome {
	if allowed {
		return outAllowed
	}
	return outDenied
}

// engineError maps engine errors to API errors: validation to 400, the rest
// (backend unavailable, timeouts) to 503.
func engineError(err error) *Error {
	code := ""
	switch {
	case errors.Is(err, counter.ErrInvalidKey):
		code = "invalid_key"
	case errors.Is(err, window.ErrInvalidSpec):
		code = "invalid_spec"
	case errors.Is(err, counter.ErrInvalidRequest):
		code = "invalid_request"
	}
	if code != "" {
		return &Error{Status: http.StatusBadRequest, ErrorBody: ErrorBody{Type: "invalid_request_error", Code: code, Message: err.Error()}}
	}
	return &Error{Status: http.StatusServiceUnavailable, cause: err,
		ErrorBody: ErrorBody{Type: "server_error", Code: "backend_unavailable", Message: "quota backend unavailable"}}
}

// ErrorBody is the OpenAI-style error object.
type ErrorBody struct {
	// Message says what is wrong, for people.
	Message string `json:"message"`
	// Type is the error family: invalid_request_error or server_error.
	Type string `json:"type"`
	// Code is a stable machine-readable code.
	Code string `json:"code"`
	// Param names the offending field when known.
	Param string `json:"param,omitempty"`
}

// Error is an API error with its HTTP status.
type Error struct {
	ErrorBody
	// Status is the HTTP status code.
	Status int
	cause  error
}

// Error implements error.
func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"message":"encoding response failed","type":"server_error","code":"internal_error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, e *Error) {
	writeJSON(w, e.Status, struct {
		Error ErrorBody `json:"error"`
	}{e.ErrorBody})
}

// badRequest builds a 400 invalid_request_error.
func badRequest(code, param, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, ErrorBody: ErrorBody{Type: "invalid_request_error", Code: code,
		Param: param, Message: fmt.Sprintf(format, args...)}}
}

// trimJSONPrefix drops Go's "json: " prefix from decoder messages.
func trimJSONPrefix(s string) string { return strings.TrimPrefix(s, "json: ") }
