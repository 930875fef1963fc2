package pick

import (
	"encoding/base64"
	"strings"
)

// Metric stems: per-endpoint metrics are "<stem>.<kind>.endpoint.<ep>",
// decisions "<stem>.decisions.<reason>", score parts "<stem>.score.<part>".
const metricStem = "tollgate_picker"

// EndpointMetric names a per-endpoint metric; the address's dots, colons
// and brackets become underscores so that it stays one stat-name segment.
func EndpointMetric(kind, addr string) string {
	return metricStem + "." + kind + ".endpoint." + strings.NewReplacer(".", "_", ":", "_", "[", "", "]", "").Replace(addr)
}

// DecisionMetric counts refusals and fail-open picks by reason.
func DecisionMetric(reason string) string { return metricStem + ".decisions." + reason }

// ScoreMetric is the histogram of a picked endpoint's score part (×100).
func ScoreMetric(part string) string { return metricStem + ".score." + part }

// ScoreParts names the histogrammed parts, with the total.
var ScoreParts = []string{"queue", "kv_cache", "prefix", "lora", "total"}

// StatsTag is one Envoy stats_tags entry (tag name and extraction regex).
type StatsTag struct {
	Name  string
	Regex string
}

// StatsTags turn the picker's metric names into Prometheus labels
// (endpoint, reason, part) when added to the bootstrap's stats_config.
func StatsTags() []StatsTag {
	const stem = `^wasmcustom\.tollgate_picker\.`
	return []StatsTag{
		{Name: "endpoint", Regex: stem + `[a-z_]+(\.endpoint\.([^.]+))$`},
		{Name: "reason", Regex: stem + `decisions(\.([a-z_]+))$`},
		{Name: "part", Regex: stem + `score(\.([a-z_]+))$`},
	}
}

// Saturation is an endpoint's saturation from its last scrape alone
// (the poller's gauge); Pick also counts requests sent since.
func (p *Policy) Saturation(m Metrics) float64 {
	if !m.Complete() {
		return 1
	}
	return max(m.Waiting/p.SatQueue, m.KVUsage/p.SatKV)
}

// SessionHeader carries the session token (llm-d's session-affinity
// scorer reads the same header): the response names the endpoint that
// served, the next request of the session brings it back.
const SessionHeader = "x-session-token"

// SessionToken is the token for an endpoint: its address, base64url.
func SessionToken(addr string) string { return base64.RawURLEncoding.EncodeToString([]byte(addr)) }

// SessionEndpoint reads a token back; "" for anything that is not one.
func SessionEndpoint(token string) string {
	if len(token) == 0 || len(token) > 128 {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return ""
	}
	return string(raw)
}
