package meter

import (
	"errors"
	"strconv"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
)

// AccountHost is what the end of a metered stream needs from the proxy, so
// that the accounting runs (and is tested) as plain Go.
type AccountHost interface {
	// Add increases a counter (n <= 0 is a no-op); Record adds a histogram observation.
	Add(name string, n int64)
	Record(name string, v uint64)
	// Warn logs a warning.
	Warn(msg string)
	// SetFilterState exposes values to the access log of the current stream.
	SetFilterState(pairs [][2]string)
	// Dispatch sends a keystore callout; done runs with the answer (failed:
	// none came back).
	Dispatch(c Callout, done func(failed bool, status int, body []byte)) error
	// Enqueue keeps a settle or release the keystore did not take, for the
	// tick to retry.
	Enqueue(op string, c Callout)
}

// Charging is one stream's end: what it used and what it holds.
type Charging struct {
	Plan   *Plan
	Labels Labels
	Usage  usage.Usage
	// Response explains a SourceBound usage (what the upstream reported).
	Response *Response
	// Ended is set once the stream is gone: there is no access log entry to add to.
	Ended bool
	// Ending is what the stream holds; Source and Charged are filled in here.
	Ending Ending
}

// Charge is the common end of every metered stream: token metrics, the
// prompt estimate's error, a usage that broke the request's bound, the
// access-log filter state, then the settle/release decision, counted. It
// returns the settlement whose callout is still to be sent (Op "" when none).
func Charge(h AccountHost, c Charging) Settlement {
	pl, u, l, src := c.Plan, c.Usage, c.Labels, c.Ending.Source
	vals := TokenValues(u)
	for i, name := range TokenMetrics(l) {
		h.Add(name, vals[i])
	}
	if pct, ok := EstimateErrorPercent(pl.PromptEstimate, u, src); ok {
		h.Record(EstimateErrorMetric(l.Model), pct)
	}
	if src == SourceBound && c.Response != nil {
		r, v := c.Response.Reported(), c.Response.Violation()
		h.Add(ViolationsMetric(l.Model, v), 1)
		h.Warn("upstream usage broke the request's bound (" + string(v) + "): reported prompt " + strconv.FormatInt(r.PromptTokens, 10) + ", completion " + strconv.FormatInt(r.CompletionTokens, 10) + ", total " + strconv.FormatInt(r.TotalTokens, 10) + " (invalid " + strconv.FormatBool(r.Invalid) + "); charged the bound, prompt " + strconv.FormatInt(u.PromptTokens, 10) + ", completion " + strconv.FormatInt(u.CompletionTokens, 10))
	}
	charged := pl.Charge(u)
	if !c.Ended {
		h.SetFilterState(FilterState(pl, u, src, charged))
	}
	e := c.Ending
	e.Charged = charged
	d := e.Decide()
	if d.Outcome != "" {
		h.Add(RequestsMetric(l, d.Outcome), 1)
	}
	return d
}

// Send sends a settlement's callout; then, if set, runs with the keystore's
// answer. A callout the keystore did not take is counted and logged, and a
// settle or release (they carry a reservation id, and repeating them is
// idempotent) is queued for retry when the failure may pass. It reports
// whether then will run.
func Send(h AccountHost, d Settlement, then func(err error, st State)) bool {
	if d.Op == "" {
		return false
	}
	op, c := d.Op, d.Callout
	err := h.Dispatch(c, func(failed bool, status int, body []byte) {
		st, err := ParseAnswer(failed, status, body)
		if err != nil && !errors.Is(err, ErrNotFound) {
			h.Add(KeystoreErrorsMetric(op), 1)
			h.Warn(op + ": " + err.Error())
			if c.ID != "" && Retryable(failed, status) {
				h.Enqueue(op, c)
			}
		}
		if then != nil {
			then(err, st)
		}
	})
	if err != nil {
		h.Add(KeystoreErrorsMetric(op), 1)
		h.Warn(op + ": " + err.Error())
		if c.ID != "" {
			h.Enqueue(op, c)
		}
		return false
	}
	return then != nil
}
