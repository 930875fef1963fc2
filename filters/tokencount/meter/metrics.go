package meter

import (
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
)

// Metric names. Labels are encoded in the name as ".<label>.<value>" pairs
// after a fixed stem, so Envoy's bootstrap stats_config.stats_tags
// (StatsTags) turn them into Prometheus labels:
//
//	tollgate_tokencount_prompt_tokens_total.model.<m>.app.<a>
//	tollgate_tokencount_completion_tokens_total.model.<m>.app.<a>
//	tollgate_tokencount_cached_tokens_total.model.<m>.app.<a>
//	tollgate_tokencount_reasoning_tokens_total.model.<m>.app.<a>
//	tollgate_tokencount_requests_total.model.<m>.app.<a>.outcome.<outcome>
//	tollgate_tokencount_reservations_refused_total.model.<m>.app.<a>
//	tollgate_tokencount_estimate_error_percent.model.<m>   (histogram)
//	tollgate_tokencount_keystore_errors_total.op.<reserve|settle|release|consume>
//	tollgate_tokencount_usage_violations_total.model.<m>.reason.<violation>
//	tollgate_tokencount_settle_queue_total.event.<queued|delivered|retried|dropped>
//	tollgate_tokencount_lease_total.result.<taken|fallback>
//	tollgate_tokencount_usage_records_total.event.<queued|sent|rejected|dropped|retried>
const (
	MetricPromptTokens     = "tollgate_tokencount_prompt_tokens_total"
	MetricCompletionTokens = "tollgate_tokencount_completion_tokens_total"
	MetricCachedTokens     = "tollgate_tokencount_cached_tokens_total"
	MetricReasoningTokens  = "tollgate_tokencount_reasoning_tokens_total"
	MetricRequests         = "tollgate_tokencount_requests_total"
	MetricRefused          = "tollgate_tokencount_reservations_refused_total"
	MetricEstimateError    = "tollgate_tokencount_estimate_error_percent"
	MetricKeystoreErrors   = "tollgate_tokencount_keystore_errors_total"
	MetricViolations       = "tollgate_tokencount_usage_violations_total"
	MetricSettleQueue      = "tollgate_tokencount_settle_queue_total"
	MetricLease            = "tollgate_tokencount_lease_total"
	MetricUsageRecords     = "tollgate_tokencount_usage_records_total"
)

// Lease results, for the lease metric: a reservation taken from a budget
// lease, or one the lease could not cover (reserved at the keystore).
const (
	LeaseTaken    = "taken"
	LeaseFallback = "fallback"
)

// LeaseResults lists the lease results.
func LeaseResults() []string { return []string{LeaseTaken, LeaseFallback} }

// LeaseMetric names the lease counter of a result; the known results' names
// are constants (one is counted on every leased request).
func LeaseMetric(result string) string {
	switch result {
	case LeaseTaken:
		return MetricLease + ".result." + LeaseTaken
	case LeaseFallback:
		return MetricLease + ".result." + LeaseFallback
	}
	return MetricLease + ".result." + result
}

// Settle queue events, for the settle queue metric.
const (
	QueueQueued    = "queued"    // a failed settle, release or record was queued
	QueueDelivered = "delivered" // a queued one reached the keystore
	QueueRetried   = "retried"   // a retry failed; it stays queued
	QueueDropped   = "dropped"   // it was lost: the queue was full, or it expired
)

// QueueEvents lists the settle queue events.
func QueueEvents() []string { return []string{QueueQueued, QueueDelivered, QueueRetried, QueueDropped} }

// UsageRecordsMetric names the usage records counter of a usagelog event.
func UsageRecordsMetric(event string) string { return MetricUsageRecords + ".event." + event }

// SettleQueueMetric names the settle queue counter of an event.
func SettleQueueMetric(event string) string { return MetricSettleQueue + ".event." + event }

// ViolationsMetric names the usage violations counter of a model and reason.
func ViolationsMetric(model string, v Violation) string {
	return MetricViolations + ".model." + model + ".reason." + string(v)
}

// Outcome is how a metered request ended, for the requests metric.
type Outcome string

// Request outcomes.
const (
	OutcomeSettled   Outcome = "settled"   // usage settled against a reservation
	OutcomeReleased  Outcome = "released"  // an error answer or abort released the reservation
	OutcomeAborted   Outcome = "aborted"   // cut short; the streamed part was charged
	OutcomeRefused   Outcome = "refused"   // 429 before the upstream
	OutcomeRejected  Outcome = "rejected"  // 4xx for a bad request body
	OutcomeUnmetered Outcome = "unmetered" // no quota applies: counted for metrics only
	OutcomeFailOpen  Outcome = "fail_open" // the keystore failed and the request went on
	OutcomeFailed    Outcome = "failed"    // the keystore failed and the request got 503
)

// Outcomes lists every outcome (to define the counters up front).
func Outcomes() []Outcome {
	return []Outcome{OutcomeSettled, OutcomeReleased, OutcomeAborted, OutcomeRefused, OutcomeRejected,
		OutcomeUnmetered, OutcomeFailOpen, OutcomeFailed}
}

// Keystore operations, for the keystore errors metric.
const (
	OpReserve = "reserve"
	OpSettle  = "settle"
	OpRelease = "release"
	OpConsume = "consume"
)

// Ops lists every keystore operation.
func Ops() []string { return []string{OpReserve, OpSettle, OpRelease, OpConsume} }

// Labels is one (model, app) label pair, already made safe.
type Labels struct{ Model, App string }

func (l Labels) suffix() string { return ".model." + l.Model + ".app." + l.App }

// TokenMetrics names the four token counters of a label pair, in the order
// prompt, completion, cached, reasoning.
func TokenMetrics(l Labels) [4]string {
	s := l.suffix()
	return [4]string{MetricPromptTokens + s, MetricCompletionTokens + s, MetricCachedTokens + s, MetricReasoningTokens + s}
}

// TokenValues are the counts TokenMetrics' counters add.
func TokenValues(u usage.Usage) [4]int64 {
	return [4]int64{u.PromptTokens, u.CompletionTokens, u.CachedTokens, u.ReasoningTokens}
}

// RequestsMetric names the requests counter of a label pair and outcome.
func RequestsMetric(l Labels, o Outcome) string {
	return MetricRequests + l.suffix() + ".outcome." + string(o)
}

// RefusedMetric names the refused-reservations counter of a label pair.
func RefusedMetric(l Labels) string { return MetricRefused + l.suffix() }

// EstimateErrorMetric names the estimate error histogram of a model.
func EstimateErrorMetric(model string) string { return MetricEstimateError + ".model." + model }

// KeystoreErrorsMetric names the keystore errors counter of an operation.
func KeystoreErrorsMetric(op string) string { return MetricKeystoreErrors + ".op." + op }

// EstimateErrorPercent is |estimate − actual| / actual in percent, for the
// prompt estimate against the upstream's count (ok false when there is no
// upstream count to compare with).
func EstimateErrorPercent(estimate int64, actual usage.Usage, src Source) (uint64, bool) {
	if src != SourceUpstream || actual.PromptTokens <= 0 {
		return 0, false
	}
	d := estimate - actual.PromptTokens
	if d < 0 {
		d = -d
	}
	return uint64((d*100 + actual.PromptTokens/2) / actual.PromptTokens), true
}

// LabelValue makes s safe as one dot-separated segment of an Envoy stat
// name: anything but letters, digits, '-' and '_' becomes '_', an empty
// value becomes "_", and values are cut at 64 bytes.
func LabelValue(s string) string {
	if s == "" {
		return "_"
	}
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// Other is the label of values beyond a label set's bound.
const Other = "_other"

// LabelSet bounds the distinct values of one label, so that client-chosen
// model names cannot create unbounded metrics: a fixed set when given,
// else the first max distinct values; everything else is Other.
type LabelSet struct {
	fixed map[string]bool
	seen  map[string]string
	max   int
}

// NewLabelSet returns a set of at most max first-come values, or exactly
// the fixed values when fixed is non-empty.
func NewLabelSet(fixed map[string]bool, max int) *LabelSet {
	return &LabelSet{fixed: fixed, seen: map[string]string{}, max: max}
}

// Label returns the label value of v.
func (s *LabelSet) Label(v string) string {
	if l, ok := s.seen[v]; ok {
		return l
	}
	if len(s.fixed) > 0 {
		if !s.fixed[v] {
			return Other
		}
	} else if len(s.seen) >= s.max {
		return Other
	}
	l := LabelValue(v)
	s.seen[v] = l
	return l
}

// StatsTag is one entry of Envoy's bootstrap stats_config.stats_tags: the
// regex's first group is cut from the stat name, the second is the label value.
type StatsTag struct {
	// Name is the Prometheus label name.
	Name string
	// Regex is the RE2 expression Envoy matches against the full stat name.
	Regex string
}

// StatsTags returns the stats_tags that turn the metric names into
// Prometheus labels. Envoy prefixes Wasm metrics with "wasmcustom."
// internally and drops it in /stats/prometheus, which then shows
//
//	tollgate_tokencount_prompt_tokens_total{model="…",app="…"}
//	tollgate_tokencount_requests_total{model="…",app="…",outcome="settled"}
//	tollgate_tokencount_estimate_error_percent_bucket{model="…",le="…"}
//	tollgate_tokencount_keystore_errors_total{op="settle"}
func StatsTags() []StatsTag {
	const stem = `^wasmcustom\.tollgate_tokencount_`
	return []StatsTag{
		{Name: "model", Regex: stem + `[a-z_]+?(\.model\.([^.]+))`},
		{Name: "app", Regex: stem + `[a-z_]+?\.model\.[^.]+(\.app\.([^.]+))`},
		{Name: "outcome", Regex: stem + `requests_total\.model\.[^.]+\.app\.[^.]+(\.outcome\.([^.]+))$`},
		{Name: "op", Regex: stem + `keystore_errors_total(\.op\.([^.]+))$`},
		{Name: "reason", Regex: stem + `usage_violations_total\.model\.[^.]+(\.reason\.([^.]+))$`},
		{Name: "event", Regex: stem + `(?:settle_queue|usage_records)_total(\.event\.([^.]+))$`},
		{Name: "result", Regex: stem + `lease_total(\.result\.([^.]+))$`},
	}
}

// Filter state keys (proxy_set_property; Envoy stores them as
// "wasm.<key>", read in access logs as %FILTER_STATE(wasm.<key>:PLAIN)%).
const (
	StatePromptTokens     = "tollgate.tokens.prompt"
	StateCompletionTokens = "tollgate.tokens.completion"
	StateTotalTokens      = "tollgate.tokens.total"
	StateCachedTokens     = "tollgate.tokens.cached"
	StateReasoningTokens  = "tollgate.tokens.reasoning"
	StateReserved         = "tollgate.tokens.reserved"
	StateCharged          = "tollgate.tokens.charged"
	StateSource           = "tollgate.tokens.source"
	StateModel            = "tollgate.tokens.model"
)

// FilterState lists the filter state entries of a settled request.
func FilterState(pl *Plan, u usage.Usage, src Source, charged int64) [][2]string {
	f := func(v int64) string { return strconv.FormatInt(v, 10) }
	return [][2]string{
		{StatePromptTokens, f(u.PromptTokens)},
		{StateCompletionTokens, f(u.CompletionTokens)},
		{StateTotalTokens, f(u.TotalTokens)},
		{StateCachedTokens, f(u.CachedTokens)},
		{StateReasoningTokens, f(u.ReasoningTokens)},
		{StateReserved, f(pl.Amount)},
		{StateCharged, f(charged)},
		{StateSource, src.String()},
		{StateModel, pl.Model},
	}
}
