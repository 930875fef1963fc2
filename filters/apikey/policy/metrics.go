package policy

// Metric names. Labels are encoded in the name as ".<label>.<value>" after a
// fixed stem, so Envoy's bootstrap stats_config.stats_tags (StatsTags) can
// turn them into Prometheus labels:
//
//	tollgate_apikey_requests_total.outcome.<allowed|missing|invalid|forbidden|keystore_error|bad_request>
//	tollgate_apikey_cache_lookups_total.result.<hit|miss>
//	tollgate_apikey_callouts_total.result.<ok|error>
//	tollgate_apikey_coalesced_total
//	tollgate_apikey_cache_errors_total
const (
	MetricRequests    = "tollgate_apikey_requests_total"
	MetricCache       = "tollgate_apikey_cache_lookups_total"
	MetricCallouts    = "tollgate_apikey_callouts_total"
	MetricCoalesced   = "tollgate_apikey_coalesced_total"
	MetricCacheErrors = "tollgate_apikey_cache_errors_total"
)

// RequestsMetric names the counter of requests with an outcome.
func RequestsMetric(o Outcome) string { return MetricRequests + ".outcome." + o.String() }

// CacheMetric names the counter of cache lookups with a result ("hit" or "miss").
func CacheMetric(result string) string { return MetricCache + ".result." + result }

// CalloutsMetric names the counter of keystore callouts with a result ("ok" or "error").
func CalloutsMetric(result string) string { return MetricCallouts + ".result." + result }

// StatsTag is one entry of Envoy's bootstrap stats_config.stats_tags: the
// regex's first group is cut from the stat name, the second is the label value.
type StatsTag struct {
	// Name is the Prometheus label name.
	Name string
	// Regex is the RE2 expression Envoy matches against the full stat name.
	Regex string
}

// StatsTags returns the stats_tags that turn the metric names into labels.
// Envoy prefixes Wasm metrics with "wasmcustom." internally and drops the
// prefix in /stats/prometheus, which then shows
//
//	tollgate_apikey_requests_total{outcome="allowed"}
//	tollgate_apikey_cache_lookups_total{result="hit"}
//	tollgate_apikey_callouts_total{result="ok"}
func StatsTags() []StatsTag {
	const stem = `^wasmcustom\.tollgate_apikey_`
	return []StatsTag{
		{Name: "outcome", Regex: stem + `requests_total(\.outcome\.([^.]+))$`},
		{Name: "result", Regex: stem + `(?:cache_lookups|callouts)_total(\.result\.([^.]+))$`},
	}
}
