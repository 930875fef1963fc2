package route

import "strings"

// Metric names. Labels are encoded in the name as ".<label>.<value>" pairs
// after a fixed stem, so Envoy's bootstrap stats_config.stats_tags can turn
// them into Prometheus labels (see docs/modelroute.md for the regexes):
//
//	tollgate_modelroute_requests_total.model.<model>.target.<target>
//	tollgate_modelroute_rewrites_total.model.<model>.direction.<request|response>
//	tollgate_modelroute_rejections_total.reason.<code>
const (
	MetricRequests   = "tollgate_modelroute_requests_total"
	MetricRewrites   = "tollgate_modelroute_rewrites_total"
	MetricRejections = "tollgate_modelroute_rejections_total"
)

// OtherModel is the model label of unknown models passed through, so that
// client-chosen names never create new metrics.
const OtherModel = "_other"

// RequestsMetric names the counter of requests routed for a public model to a target.
func RequestsMetric(model, target string) string {
	return MetricRequests + ".model." + LabelValue(model) + ".target." + LabelValue(target)
}

// RewritesMetric names the counter of model rewrites in one direction ("request" or "response").
func RewritesMetric(model, direction string) string {
	return MetricRewrites + ".model." + LabelValue(model) + ".direction." + LabelValue(direction)
}

// RejectionsMetric names the counter of requests answered with an error code.
func RejectionsMetric(code string) string {
	return MetricRejections + ".reason." + LabelValue(code)
}

// LabelValue makes s safe as one dot-separated segment of an Envoy stat
// name: anything but letters, digits, '-' and '_' becomes '_' (model names
// like "google/gemma-3.1" carry '/' and '.'), and an empty value becomes "_".
func LabelValue(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// StatsTag is one entry of Envoy's bootstrap stats_config.stats_tags: the
// regex's first group is cut from the stat name, the second is the label value.
type StatsTag struct {
	// Name is the Prometheus label name.
	Name string
	// Regex is the RE2 expression Envoy matches against the full stat name.
	Regex string
}

// StatsTags returns the stats_tags that turn the filter's metric names into
// Prometheus labels. Envoy prefixes Wasm metrics with "wasmcustom." internally
// and drops that prefix in /stats/prometheus, so the output reads
//
//	tollgate_modelroute_requests_total{model="…",target="…"}
//	tollgate_modelroute_rewrites_total{model="…",direction="request|response"}
//	tollgate_modelroute_rejections_total{reason="…"}
func StatsTags() []StatsTag {
	const stem = `^wasmcustom\.tollgate_modelroute_`
	return []StatsTag{
		{Name: "model", Regex: stem + `(?:requests|rewrites)_total(\.model\.([^.]+))`},
		{Name: "target", Regex: stem + `requests_total\.model\.[^.]+(\.target\.([^.]+))$`},
		{Name: "direction", Regex: stem + `rewrites_total\.model\.[^.]+(\.direction\.([^.]+))$`},
		{Name: "reason", Regex: stem + `rejections_total(\.reason\.([^.]+))$`},
	}
}
