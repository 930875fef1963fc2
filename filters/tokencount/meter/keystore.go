package meter

import (
	"errors"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/jsonenc"
	"github.com/tollgate/tollgate/shared/reqview"
	"github.com/tollgate/tollgate/window"
)

// Counter engine paths (docs/counter.md).
const (
	PathReserve = "/v1/quota/reserve"
	PathSettle  = "/v1/quota/settle"
	PathRelease = "/v1/quota/release"
	PathConsume = "/v1/quota/consume"
)

// ErrKeystore marks every failed or unreadable keystore answer.
var ErrKeystore = errors.New("keystore error")

// ErrNotFound is a settle or release of a reservation the counter no longer
// knows (already used, or expired and released by the counter itself).
var ErrNotFound = errors.New("reservation not found")

// State is a counter's state as the engine reports it after an operation.
type State struct {
	// Allowed is the decision (reserve), or used ≤ limit (settle, release).
	Allowed bool
	// Limit, Used and Remaining are in the quota's unit; Used includes open
	// reservations.
	Limit, Used, Remaining int64
	// ResetAfter is the time until the window resets (server clock).
	ResetAfter time.Duration
	// RetryAfter is the time until a denied reservation would fit.
	RetryAfter time.Duration
	// ID is the reservation id (reserve, when allowed).
	ID string
}

// Callout is one keystore request: its path and JSON body.
type Callout struct {
	Path string
	Body []byte
	// ID is the reservation a settle or release is about ("" otherwise),
	// the key of its entry in the SettleQueue.
	ID string
}

// CalloutHeaders are the callout's request headers.
func (p *Policy) CalloutHeaders(c Callout) [][2]string {
	return p.AppendAuth([][2]string{
		{":method", "POST"},
		{":path", c.Path},
		{":authority", p.Authority},
		{"content-type", "application/json"},
	})
}

// The bodies are appended by hand: encoding/json's reflection costs several
// microseconds per call in a Go Wasm module, on the request's critical path.

// Reserve builds the reservation of amount units against q.
func (p *Policy) Reserve(q *Quota, amount int64) Callout {
	b := make([]byte, 0, 256)
	b = append(b, `{"ttl_ms":`...)
	b = strconv.AppendInt(b, p.ReservationTTL.Milliseconds(), 10)
	b = append(b, `,"items":[`...)
	b = appendItem(b, q, min(max(amount, 0), window.MaxLimit), false)
	return Callout{Path: PathReserve, Body: append(b, "]}"...)}
}

// Settle replaces a reservation by the actual amount.
func Settle(id string, actual int64) Callout {
	b := make([]byte, 0, 160)
	b = append(b, `{"items":[{"id":`...)
	b = jsonenc.AppendString(b, id)
	b = append(b, `,"actual":`...)
	b = strconv.AppendInt(b, min(max(actual, 0), window.MaxLimit), 10)
	return Callout{Path: PathSettle, Body: append(b, "}]}"...), ID: id}
}

// Release returns a whole reservation.
func Release(id string) Callout {
	b := make([]byte, 0, 140)
	b = append(b, `{"items":[{"id":`...)
	b = jsonenc.AppendString(b, id)
	return Callout{Path: PathRelease, Body: append(b, "}]}"...), ID: id}
}

// Record counts usage that happened without a reservation (fail-open
// mode), even above the limit, so later requests see it.
func Record(q *Quota, n int64) Callout {
	b := make([]byte, 0, 256)
	b = append(b, `{"items":[`...)
	b = appendItem(b, q, min(max(n, 0), window.MaxLimit), true)
	return Callout{Path: PathConsume, Body: append(b, "]}"...)}
}

// appendItem writes one {key, spec, n[, force]} item.
func appendItem(b []byte, q *Quota, n int64, force bool) []byte {
	b = append(b, '{')
	b = appendCounter(b, q)
	b = append(b, `,"n":`...)
	b = strconv.AppendInt(b, n, 10)
	if force {
		b = append(b, `,"force":true`...)
	}
	return append(b, '}')
}

// LeaseItem names q's counter for shared/lease: its item's "key" and
// "spec" members.
func LeaseItem(q *Quota) string { return string(appendCounter(make([]byte, 0, 192), q)) }

// appendCounter writes the "key" and "spec" members of q's item.
func appendCounter(b []byte, q *Quota) []byte {
	b = append(b, `"key":{"app":`...)
	b = jsonenc.AppendString(b, q.Key.App)
	if q.Key.Product != "" {
		b = append(b, `,"product":`...)
		b = jsonenc.AppendString(b, q.Key.Product)
	}
	if q.Key.Operation != "" {
		b = append(b, `,"operation":`...)
		b = jsonenc.AppendString(b, q.Key.Operation)
	}
	b = append(b, `,"kind":`...)
	b = jsonenc.AppendString(b, q.Key.Kind)
	b = append(b, `},"spec":{"limit":`...)
	b = strconv.AppendInt(b, q.Spec.Limit, 10)
	b = append(b, `,"interval":`...)
	b = strconv.AppendInt(b, int64(q.Spec.Interval), 10)
	b = append(b, `,"timeUnit":`...)
	b = jsonenc.AppendString(b, q.Spec.Unit.String())
	b = append(b, `,"window":`...)
	b = jsonenc.AppendString(b, q.Spec.Kind.String())
	return append(b, '}')
}

// ParseAnswer reads the keystore's answer to any of the four callouts:
// the first item's state. failed is true when the host got no response at
// all (timeout, connection failure). A denial is a State with Allowed
// false, not an error; a per-item reservation_not_found is ErrNotFound.
func ParseAnswer(failed bool, status int, body []byte) (State, error) {
	if failed {
		return State{}, config.Wrap("", ErrKeystore, ": no response")
	}
	doc, perr := reqview.Parse(body, reqview.Limits{MaxBytes: len(body) + 1, MaxDepth: 16})
	if status != 200 {
		msg := ""
		if perr == nil {
			msg = doc.Root().Get("error").Get("message").Str()
		}
		if msg == "" {
			msg = "no error message"
		}
		return State{}, config.Wrap("", ErrKeystore, ": status "+strconv.Itoa(status)+": "+config.Clip(msg, 200))
	}
	if perr != nil {
		return State{}, config.Wrap("", ErrKeystore, ": the answer is not JSON")
	}
	r := doc.Root().Get("results").Index(0)
	if r.Kind() != reqview.Object {
		return State{}, config.Wrap("", ErrKeystore, ": the answer has no results")
	}
	if e := r.Get("error"); e.Exists() {
		code := e.Get("code").Str()
		if code == "reservation_not_found" {
			return State{}, ErrNotFound
		}
		return State{}, config.Wrap("", ErrKeystore, ": "+code+": "+config.Clip(e.Get("message").Str(), 200))
	}
	allowed, ok := r.Get("allowed").Bool()
	limit := r.Get("limit")
	if !ok || limit.Kind() != reqview.Number {
		return State{}, config.Wrap("", ErrKeystore, ": the answer lacks allowed or limit")
	}
	ms := func(v reqview.Value) time.Duration {
		return time.Duration(min(max(intOf(v), 0), int64(100*365*24*time.Hour/time.Millisecond))) * time.Millisecond
	}
	return State{
		Allowed:    allowed,
		Limit:      max(intOf(limit), 0),
		Used:       max(intOf(r.Get("used")), 0),
		Remaining:  max(intOf(r.Get("remaining")), 0),
		ResetAfter: ms(r.Get("reset_after_ms")),
		RetryAfter: ms(r.Get("retry_after_ms")),
		ID:         r.Get("id").Str(),
	}, nil
}

// intOf reads a number as an int64, truncating a fraction and saturating
// at the int64 range (0 for anything else), as the answer's counts need.
func intOf(v reqview.Value) int64 {
	if n, ok := v.Int(); ok {
		return n
	}
	f, ok := v.Num()
	switch {
	case !ok || f != f:
		return 0
	case f >= 1<<63:
		return 1<<63 - 1
	case f <= -(1 << 63):
		return -1 << 63
	}
	return int64(f)
}

// ParseReserve reads the answer to a reservation: an allowed answer must
// carry the reservation id.
func ParseReserve(failed bool, status int, body []byte) (State, error) {
	st, err := ParseAnswer(failed, status, body)
	if err == nil && st.Allowed && st.ID == "" {
		return State{}, config.Wrap("", ErrKeystore, ": an allowed reservation without an id")
	}
	return st, err
}
