package meter

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tidwall/gjson"

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

type wireKey = Key

type wireSpec struct {
	Limit    int64  `json:"limit"`
	Interval int    `json:"interval"`
	TimeUnit string `json:"timeUnit"`
	Window   string `json:"window"`
}

type wireItem struct {
	Key   wireKey  `json:"key"`
	Spec  wireSpec `json:"spec"`
	N     int64    `json:"n"`
	Force bool     `json:"force,omitempty"`
}

func specOf(s window.Spec) wireSpec {
	return wireSpec{Limit: s.Limit, Interval: s.Interval, TimeUnit: s.Unit.String(), Window: s.Kind.String()}
}

// Callout is one keystore request: its path and JSON body.
type Callout struct {
	Path string
	Body []byte
}

// CalloutHeaders are the callout's request headers.
func (p *Policy) CalloutHeaders(c Callout) [][2]string {
	return [][2]string{
		{":method", "POST"},
		{":path", c.Path},
		{":authority", p.Authority},
		{"content-type", "application/json"},
	}
}

// Reserve builds the reservation of amount units against q.
func (p *Policy) Reserve(q *Quota, amount int64) Callout {
	return Callout{Path: PathReserve, Body: mustJSON(struct {
		TTLMs int64      `json:"ttl_ms"`
		Items []wireItem `json:"items"`
	}{p.ReservationTTL.Milliseconds(), []wireItem{{Key: q.Key, Spec: specOf(q.Spec), N: max(amount, 0)}}})}
}

// Settle replaces a reservation by the actual amount.
func Settle(id string, actual int64) Callout {
	type item struct {
		ID     string `json:"id"`
		Actual int64  `json:"actual"`
	}
	return Callout{Path: PathSettle, Body: mustJSON(struct {
		Items []item `json:"items"`
	}{[]item{{id, min(max(actual, 0), window.MaxLimit)}}})}
}

// Release returns a whole reservation.
func Release(id string) Callout {
	type item struct {
		ID string `json:"id"`
	}
	return Callout{Path: PathRelease, Body: mustJSON(struct {
		Items []item `json:"items"`
	}{[]item{{id}}})}
}

// Record counts usage that happened without a reservation (fail-open
// mode), even above the limit, so later requests see it.
func Record(q *Quota, n int64) Callout {
	return Callout{Path: PathConsume, Body: mustJSON(struct {
		Items []wireItem `json:"items"`
	}{[]wireItem{{Key: q.Key, Spec: specOf(q.Spec), N: min(max(n, 0), window.MaxLimit), Force: true}}})}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of strings and numbers always marshal
	}
	return b
}

// ParseAnswer reads the keystore's answer to any of the four callouts:
// the first item's state. failed is true when the host got no response at
// all (timeout, connection failure). A denial is a State with Allowed
// false, not an error; a per-item reservation_not_found is ErrNotFound.
func ParseAnswer(failed bool, status int, body []byte) (State, error) {
	if failed {
		return State{}, fmt.Errorf("%w: no response", ErrKeystore)
	}
	if status != 200 {
		msg := gjson.GetBytes(body, "error.message").Str
		if msg == "" {
			msg = "no error message"
		}
		return State{}, fmt.Errorf("%w: status %d: %.200s", ErrKeystore, status, msg)
	}
	if !gjson.ValidBytes(body) {
		return State{}, fmt.Errorf("%w: the answer is not JSON", ErrKeystore)
	}
	r := gjson.GetBytes(body, "results.0")
	if !r.IsObject() {
		return State{}, fmt.Errorf("%w: the answer has no results", ErrKeystore)
	}
	if e := r.Get("error"); e.Exists() {
		code := e.Get("code").Str
		if code == "reservation_not_found" {
			return State{}, ErrNotFound
		}
		return State{}, fmt.Errorf("%w: %s: %.200s", ErrKeystore, code, e.Get("message").Str)
	}
	allowed := r.Get("allowed")
	limit := r.Get("limit")
	if (allowed.Type != gjson.True && allowed.Type != gjson.False) || limit.Type != gjson.Number {
		return State{}, fmt.Errorf("%w: the answer lacks allowed or limit", ErrKeystore)
	}
	ms := func(key string) time.Duration {
		v := r.Get(key).Int()
		return time.Duration(min(max(v, 0), int64(100*365*24*time.Hour/time.Millisecond))) * time.Millisecond
	}
	st := State{
		Allowed:    allowed.Bool(),
		Limit:      max(limit.Int(), 0),
		Used:       max(r.Get("used").Int(), 0),
		Remaining:  max(r.Get("remaining").Int(), 0),
		ResetAfter: ms("reset_after_ms"),
		RetryAfter: ms("retry_after_ms"),
		ID:         r.Get("id").Str,
	}
	return st, nil
}

// ParseReserve reads the answer to a reservation: an allowed answer must
// carry the reservation id.
func ParseReserve(failed bool, status int, body []byte) (State, error) {
	st, err := ParseAnswer(failed, status, body)
	if err == nil && st.Allowed && st.ID == "" {
		return State{}, fmt.Errorf("%w: an allowed reservation without an id", ErrKeystore)
	}
	return st, err
}
