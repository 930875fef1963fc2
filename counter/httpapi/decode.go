package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/window"
)

// ConsumeRequest is the body of POST /v1/quota/consume.
type ConsumeRequest struct {
	// Atomic counts nothing unless every item fits.
	Atomic bool
	// Items are the validated requests.
	Items []counter.Request
}

// ReserveRequest is the body of POST /v1/quota/reserve.
type ReserveRequest struct {
	// Items are the validated requests, reserved all or none.
	Items []counter.Request
	// TTLMs is how long unsettled reservations live; 0 means the default.
	TTLMs int64
}

// SettleItem settles one reservation.
type SettleItem struct {
	// ID is the reservation id returned by reserve.
	ID string `json:"id"`
	// Actual is the usage that really happened; required.
	Actual *int64 `json:"actual"`
}

// SettleRequest is the body of POST /v1/quota/settle.
type SettleRequest struct {
	// Items are the reservations to settle.
	Items []SettleItem `json:"items"`
}

// ReleaseItem releases one reservation.
type ReleaseItem struct {
	// ID is the reservation id returned by reserve.
	ID string `json:"id"`
}

// ReleaseRequest is the body of POST /v1/quota/release.
type ReleaseRequest struct {
	// Items are the reservations to release.
	Items []ReleaseItem `json:"items"`
}

// wireSpec is a spec on the wire; limit and interval are required.
type wireSpec struct {
	Limit    *int64      `json:"limit"`
	Interval *int        `json:"interval"`
	TimeUnit window.Unit `json:"timeUnit"`
	Window   window.Kind `json:"window"`
}

// wireItem is one consume or reserve item on the wire; n is required so
// that a forgotten field never turns a charge into a free query.
type wireItem struct {
	Key   counter.Key `json:"key"`
	Spec  *wireSpec   `json:"spec"`
	N     *int64      `json:"n"`
	Force bool        `json:"force"`
}

type wireConsume struct {
	Atomic bool       `json:"atomic"`
	Items  []wireItem `json:"items"`
}

type wireReserve struct {
	Items []wireItem `json:"items"`
	TTLMs int64      `json:"ttl_ms"`
}

// DecodeConsume parses and validates a consume body.
func DecodeConsume(body []byte) (ConsumeRequest, *Error) {
	var w wireConsume
	if err := decodeStrict(body, &w); err != nil {
		return ConsumeRequest{}, err
	}
	items, err := convertItems(w.Items)
	if err != nil {
		return ConsumeRequest{}, err
	}
	return ConsumeRequest{Atomic: w.Atomic, Items: items}, nil
}

// DecodeReserve parses and validates a reserve body.
func DecodeReserve(body []byte) (ReserveRequest, *Error) {
	var w wireReserve
	if err := decodeStrict(body, &w); err != nil {
		return ReserveRequest{}, err
	}
	items, err := convertItems(w.Items)
	if err != nil {
		return ReserveRequest{}, err
	}
	for i, it := range items {
		if it.Force {
			return ReserveRequest{}, badRequest("invalid_request", fmt.Sprintf("items[%d].force", i), "force is not allowed on a reservation")
		}
	}
	if w.TTLMs < 0 || w.TTLMs > counter.MaxReservationTTL.Milliseconds() {
		return ReserveRequest{}, badRequest("invalid_request", "ttl_ms", "ttl_ms must be between 0 (default %d) and %d",
			counter.DefaultReservationTTL.Milliseconds(), counter.MaxReservationTTL.Milliseconds())
	}
	return ReserveRequest{Items: items, TTLMs: w.TTLMs}, nil
}

// DecodeSettle parses and validates a settle body.
func DecodeSettle(body []byte) (SettleRequest, *Error) {
	var r SettleRequest
	if err := decodeStrict(body, &r); err != nil {
		return SettleRequest{}, err
	}
	if err := checkCount(len(r.Items)); err != nil {
		return SettleRequest{}, err
	}
	for i, it := range r.Items {
		if it.ID == "" {
			return SettleRequest{}, badRequest("missing_field", fmt.Sprintf("items[%d].id", i), "items[%d].id is required", i)
		}
		if it.Actual == nil {
			return SettleRequest{}, badRequest("missing_field", fmt.Sprintf("items[%d].actual", i), "items[%d].actual is required", i)
		}
		if *it.Actual < 0 || *it.Actual > window.MaxLimit {
			return SettleRequest{}, badRequest("invalid_request", fmt.Sprintf("items[%d].actual", i), "items[%d].actual %d out of range [0, 2^53]", i, *it.Actual)
		}
	}
	return r, nil
}

// DecodeRelease parses and validates a release body.
func DecodeRelease(body []byte) (ReleaseRequest, *Error) {
	var r ReleaseRequest
	if err := decodeStrict(body, &r); err != nil {
		return ReleaseRequest{}, err
	}
	if err := checkCount(len(r.Items)); err != nil {
		return ReleaseRequest{}, err
	}
	for i, it := range r.Items {
		if it.ID == "" {
			return ReleaseRequest{}, badRequest("missing_field", fmt.Sprintf("items[%d].id", i), "items[%d].id is required", i)
		}
	}
	return r, nil
}

func checkCount(n int) *Error {
	if n < 1 || n > counter.MaxBatch {
		return badRequest("invalid_request", "items", "items must hold 1 to %d entries, got %d", counter.MaxBatch, n)
	}
	return nil
}

func convertItems(in []wireItem) ([]counter.Request, *Error) {
	if err := checkCount(len(in)); err != nil {
		return nil, err
	}
	out := make([]counter.Request, len(in))
	for i, it := range in {
		p := fmt.Sprintf("items[%d]", i)
		if it.Spec == nil {
			return nil, badRequest("missing_field", p+".spec", "%s.spec is required", p)
		}
		if it.Spec.Limit == nil {
			return nil, badRequest("missing_field", p+".spec.limit", "%s.spec.limit is required", p)
		}
		if it.Spec.Interval == nil {
			return nil, badRequest("missing_field", p+".spec.interval", "%s.spec.interval is required", p)
		}
		if it.N == nil {
			return nil, badRequest("missing_field", p+".n", "%s.n is required (0 only queries)", p)
		}
		kind := it.Spec.Window
		if kind == window.KindInvalid {
			kind = window.Calendar
		}
		r := counter.Request{
			Key:   it.Key,
			Spec:  window.Spec{Limit: *it.Spec.Limit, Interval: *it.Spec.Interval, Unit: it.Spec.TimeUnit, Kind: kind},
			N:     *it.N,
			Force: it.Force,
		}
		if err := r.Key.Validate(); err != nil {
			return nil, badRequest("invalid_key", p+".key", "%s.key: %v", p, err)
		}
		if err := r.Spec.Validate(); err != nil {
			return nil, badRequest("invalid_spec", p+".spec", "%s.spec: %v", p, err)
		}
		if err := r.Validate(); err != nil {
			return nil, badRequest("invalid_request", p+".n", "%s: %v", p, err)
		}
		out[i] = r
	}
	return out, nil
}

// decodeStrict decodes exactly one JSON object, refusing unknown fields and
// trailing data, and names the problem in the error.
func decodeStrict(body []byte, v any) *Error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("invalid_json", "", "unexpected data after the JSON object")
	}
	return nil
}

func decodeError(err error) *Error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return badRequest("invalid_json", "", "request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("invalid_json", "", "request body is truncated JSON")
	case errors.As(err, &syn):
		return badRequest("invalid_json", "", "malformed JSON at byte %d: %s", syn.Offset, trimJSONPrefix(syn.Error()))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return badRequest("invalid_type", field, "%s must be %s, got JSON %s", field, typ.Type.String(), typ.Value)
	case errors.Is(err, window.ErrInvalidSpec):
		return badRequest("invalid_spec", "", "%v", err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequest("unknown_field", name, "unknown field %q", name)
	}
	return badRequest("invalid_json", "", "%s", trimJSONPrefix(err.Error()))
}
