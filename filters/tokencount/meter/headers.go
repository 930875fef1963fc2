package meter

import (
	"strconv"
	"time"

	"github.com/tollgate/tollgate/shared/apierror"
)

// RateLimitHeaders are the token headers for a counter state: the limit,
// what remains (open reservations included, so a streamed response shows
// its own reservation and a held JSON response its settled usage) and the
// time to the window's reset as a Go duration string ("59.5s", "1m0s").
// Nothing when headers are disabled.
func (p *Policy) RateLimitHeaders(st State) [][2]string {
	if p.Headers.Limit == "" {
		return nil
	}
	return [][2]string{
		{p.Headers.Limit, strconv.FormatInt(st.Limit, 10)},
		{p.Headers.Remaining, strconv.FormatInt(min(max(st.Remaining, 0), st.Limit), 10)},
		{p.Headers.Reset, ResetString(st.ResetAfter)},
	}
}

// ResetString formats a reset delay as OpenAI does: a Go duration string,
// rounded to the millisecond.
func ResetString(d time.Duration) string {
	return max(d, 0).Round(time.Millisecond).String()
}

// Released is the state after a reservation of amount was given back,
// for the headers of a response that released it without waiting.
func Released(st State, amount int64) State {
	st.Remaining = min(st.Remaining+max(amount, 0), st.Limit)
	st.Used = max(st.Used-max(amount, 0), 0)
	return st
}

// RetryAfterSeconds is the Retry-After value: whole seconds, rounded up,
// at least 1.
func RetryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}

// Refusal is the 429 for a denied reservation, with its headers: the rate
// limit headers and Retry-After (the time until the reservation would fit,
// or the window's reset when it never can).
func (p *Policy) Refusal(pl *Plan, st State) (*apierror.Error, [][2]string) {
	q := pl.Quota
	e := apierror.New(429, CodeQuotaExceeded,
		"token quota exceeded: this request needs "+strconv.FormatInt(pl.Amount, 10)+" "+unitName(q.Metric)+
			" (prompt estimate plus max output), "+strconv.FormatInt(st.Remaining, 10)+" of "+
			strconv.FormatInt(st.Limit, 10)+" remain in this "+windowName(q)+"; retry later or lower max_tokens")
	e.Apigee = "policies.ratelimit.QuotaViolation"
	retry := st.RetryAfter
	if retry <= 0 {
		retry = st.ResetAfter
	}
	h := append(p.RateLimitHeaders(st), [2]string{"retry-after", RetryAfterSeconds(retry)})
	return e, h
}

// KeystoreUnavailable is the 503 of fail-closed mode.
func KeystoreUnavailable() *apierror.Error {
	return apierror.New(503, CodeKeystoreError, "the token quota service is unavailable; retry shortly")
}
