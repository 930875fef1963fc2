package policy

// Outcome is what the filter did with a request, for the requests metric.
type Outcome int

// The outcomes.
const (
	// Allowed: counted and passed on.
	Allowed Outcome = iota
	// Denied: over quota, answered 429.
	Denied
	// SpikeDenied: faster than the spike-arrest rate, answered 429.
	SpikeDenied
	// Unlimited: the matched rule limits nothing for this request.
	Unlimited
	// NoKey: no key source yielded a key; passed on uncounted.
	NoKey
	// FailedOpen: the keystore (or shared data) failed; passed on uncounted.
	FailedOpen
	// FailedClosed: the keystore (or shared data) failed; answered 503.
	FailedClosed
	// Invalid: malformed identity quota; answered 500.
	Invalid
)

// Outcomes lists every outcome, for defining metrics up front.
var Outcomes = []Outcome{Allowed, Denied, SpikeDenied, Unlimited, NoKey, FailedOpen, FailedClosed, Invalid}

var outcomeNames = [...]string{"allowed", "denied", "spike_denied", "unlimited", "no_key", "failed_open", "failed_closed", "invalid"}

// String is the metric label value.
func (o Outcome) String() string {
	if o < 0 || int(o) >= len(outcomeNames) {
		return "unknown"
	}
	return outcomeNames[o]
}

// Metric names. Labels are encoded in the name as ".<label>.<value>", so
// Envoy's stats_tags (StatsTags) turn them into Prometheus labels:
//
//	tollgate_quota_requests_total.mode.<strict|local|async>.outcome.<outcome>
//	tollgate_quota_keystore_errors_total.op.<consume|sync>
//	tollgate_quota_syncs_total.result.<ok|error>   one per sync callout
//	tollgate_quota_sync_items_total                 counters pushed or pulled
//	tollgate_quota_evictions_total                  live records dropped from a full table
//	tollgate_quota_ledger_errors_total              shared-data failures
//	tollgate_quota_usage_records_total.event.<queued|sent|rejected|dropped|retried>
const (
	MetricRequests       = "tollgate_quota_requests_total"
	MetricKeystoreErrors = "tollgate_quota_keystore_errors_total"
	MetricSyncs          = "tollgate_quota_syncs_total"
	MetricSyncItems      = "tollgate_quota_sync_items_total"
	MetricEvictions      = "tollgate_quota_evictions_total"
	MetricLedgerErrors   = "tollgate_quota_ledger_errors_total"
	MetricUsageRecords   = "tollgate_quota_usage_records_total"
)

// RequestsMetric names the requests counter of a mode and outcome.
func RequestsMetric(m Mode, o Outcome) string {
	return MetricRequests + ".mode." + m.String() + ".outcome." + o.String()
}

// KeystoreErrorsMetric names the keystore error counter of an operation ("consume" or "sync").
func KeystoreErrorsMetric(op string) string { return MetricKeystoreErrors + ".op." + op }

// UsageRecordsMetric names the usage records counter of a usagelog event.
func UsageRecordsMetric(event string) string { return MetricUsageRecords + ".event." + event }

// SyncsMetric names the sync callout counter of a result ("ok" or "error").
func SyncsMetric(result string) string { return MetricSyncs + ".result." + result }

// StatsTag is one entry of Envoy's bootstrap stats_config.stats_tags.
type StatsTag struct {
	// Name is the Prometheus label name.
	Name string
	// Regex is the RE2 expression Envoy matches against the full stat name;
	// its first group is cut from the name, its second is the label value.
	Regex string
}

// StatsTags returns the stats_tags that turn the metric names into labels.
func StatsTags() []StatsTag {
	const stem = `^wasmcustom\.tollgate_quota_`
	return []StatsTag{
		{Name: "mode", Regex: stem + `requests_total(\.mode\.([^.]+))\.outcome\.[^.]+$`},
		{Name: "outcome", Regex: stem + `requests_total\.mode\.[^.]+(\.outcome\.([^.]+))$`},
		{Name: "op", Regex: stem + `keystore_errors_total(\.op\.([^.]+))$`},
		{Name: "result", Regex: stem + `syncs_total(\.result\.([^.]+))$`},
		{Name: "event", Regex: stem + `usage_records_total(\.event\.([^.]+))$`},
	}
}
