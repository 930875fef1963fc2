package policy

import (
	"strconv"
	"time"

	"github.com/tollgate/tollgate/shared/apierror"
)

// Response header names OpenAI clients know.
const (
	HeaderLimit      = "x-ratelimit-limit-requests"
	HeaderRemaining  = "x-ratelimit-remaining-requests"
	HeaderReset      = "x-ratelimit-reset-requests"
	HeaderRetryAfter = "retry-after"
)

// State is one quota counter's state after a decision.
type State struct {
	Allowed    bool
	Limit      int64
	Remaining  int64
	Reset      time.Time     // when the counted usage is entirely forgotten
	RetryAfter time.Duration // denied: until the request would fit
}

// Binding picks the state a response reports among a request's counters:
// when denied, the denied counter that frees up last; when allowed, the one
// with the least remaining (the earliest reset on a tie).
func Binding(states []State) State {
	var best State
	found := false
	for _, s := range states {
		if !s.Allowed {
			if !found || best.Allowed || s.RetryAfter > best.RetryAfter {
				best, found = s, true
			}
			continue
		}
		if !found || best.Allowed && (s.Remaining < best.Remaining || s.Remaining == best.Remaining && s.Reset.Before(best.Reset)) {
			best, found = s, true
		}
	}
	return best
}

// FormatReset renders a time until reset as OpenAI does: a Go duration
// string rounded up to the millisecond ("6m0s", "1s", "12ms"); "0s" when
// already past.
func FormatReset(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return ((d + time.Millisecond - 1) / time.Millisecond * time.Millisecond).String()
}

// RetryAfterSeconds renders Retry-After: whole seconds, rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}

// RateHeaders are the x-ratelimit-* headers for a counter state at now.
func RateHeaders(s State, now time.Time) [][2]string {
	return [][2]string{
		{HeaderLimit, strconv.FormatInt(s.Limit, 10)},
		{HeaderRemaining, strconv.FormatInt(max(s.Remaining, 0), 10)},
		{HeaderReset, FormatReset(s.Reset.Sub(now))},
	}
}

// OverQuota is the 429 for a request over quota: the error and its headers
// (x-ratelimit-*, Retry-After).
func OverQuota(s State, now time.Time) (*apierror.Error, [][2]string) {
	e := &apierror.Error{Status: 429, Type: "rate_limit_error", Code: "rate_limit_exceeded",
		Apigee:  "policies.ratelimit.QuotaViolation",
		Message: "Request quota exceeded: limit " + strconv.FormatInt(s.Limit, 10) + " requests. Retry after " + FormatReset(s.RetryAfter) + "."}
	h := append(RateHeaders(s, now), [2]string{HeaderRetryAfter, RetryAfterSeconds(s.RetryAfter)})
	return e, h
}

// SpikeArrested is the 429 for a request arriving faster than the smoothed
// rate. It carries Retry-After and x-ratelimit-reset-requests (when the next
// request is admitted), not a limit: spike arrest has no window to count in.
func SpikeArrested(sp *Spike, retry time.Duration) (*apierror.Error, [][2]string) {
	e := &apierror.Error{Status: 429, Type: "rate_limit_error", Code: "spike_arrest_violation",
		Apigee:  "policies.ratelimit.SpikeArrestViolation",
		Message: "Rate limit " + sp.Rate.String() + " exceeded: at most one request every " + sp.Rate.Interval().String() + ". Retry after " + FormatReset(retry) + "."}
	return e, [][2]string{{HeaderReset, FormatReset(retry)}, {HeaderRetryAfter, RetryAfterSeconds(retry)}}
}

// Unavailable is the 503 of fail-closed mode when the keystore cannot be
// reached.
func Unavailable() (*apierror.Error, [][2]string) {
	e := apierror.New(503, "quota_unavailable", "The quota service is unavailable; retry shortly.")
	return e, [][2]string{{HeaderRetryAfter, "1"}}
}
