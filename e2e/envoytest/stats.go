package envoytest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sample is one line of the Prometheus text format: a metric name, its labels
// and its value.
type Sample struct {
	// Name is the metric name, e.g. envoy_cluster_upstream_rq_total.
	Name string
	// Labels are the label pairs in braces.
	Labels map[string]string
	// Value is the sample value.
	Value float64
}

// ParsePrometheus parses Prometheus text exposition (what Envoy's
// /stats/prometheus serves). Comments and blank lines are skipped; a malformed
// line is an error naming its line number.
func ParsePrometheus(text string) ([]Sample, error) {
	var out []Sample
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parsePromLine(line)
		if err != nil {
			return nil, fmt.Errorf("prometheus line %d: %w", i+1, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func isNameChar(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':':
		return true
	case c >= '0' && c <= '9':
		return !first
	}
	return false
}

func parsePromLine(line string) (Sample, error) {
	i := 0
	for i < len(line) && isNameChar(line[i], i == 0) {
		i++
	}
	if i == 0 {
		return Sample{}, fmt.Errorf("no metric name in %q", line)
	}
	s := Sample{Name: line[:i], Labels: map[string]string{}}
	rest := line[i:]
	if strings.HasPrefix(rest, "{") {
		var err error
		rest, err = parseLabels(rest[1:], s.Labels)
		if err != nil {
			return Sample{}, fmt.Errorf("%s: %w", s.Name, err)
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 || len(fields) > 2 {
		return Sample{}, fmt.Errorf("%s: want a value and an optional timestamp, got %q", s.Name, rest)
	}
	v, err := parsePromValue(fields[0])
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w", s.Name, err)
	}
	s.Value = v
	return s, nil
}

func parsePromValue(f string) (float64, error) {
	switch f {
	case "+Inf", "Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(f, 64)
	if err != nil {
		return 0, fmt.Errorf("value %q: %w", f, err)
	}
	return v, nil
}

// parseLabels reads `name="value",...}` into labels and returns what follows
// the closing brace.
func parseLabels(s string, labels map[string]string) (string, error) {
	for {
		s = strings.TrimLeft(s, " ")
		if strings.HasPrefix(s, "}") {
			return s[1:], nil
		}
		j := 0
		for j < len(s) && isNameChar(s[j], j == 0) {
			j++
		}
		if j == 0 {
			return "", fmt.Errorf("bad label name at %q", s)
		}
		name := s[:j]
		s = s[j:]
		if !strings.HasPrefix(s, `="`) {
			return "", fmt.Errorf("label %s: want =\"", name)
		}
		s = s[2:]
		var val strings.Builder
		closed := false
		for k := 0; k < len(s); k++ {
			c := s[k]
			if c == '\\' && k+1 < len(s) {
				k++
				switch s[k] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[k])
				}
				continue
			}
			if c == '"' {
				s = s[k+1:]
				closed = true
				break
			}
			val.WriteByte(c)
		}
		if !closed {
			return "", fmt.Errorf("label %s: unterminated value", name)
		}
		labels[name] = val.String()
		s = strings.TrimLeft(s, " ")
		switch {
		case strings.HasPrefix(s, ","):
			s = s[1:]
		case strings.HasPrefix(s, "}"):
		default:
			return "", fmt.Errorf("label %s: want , or } after the value", name)
		}
	}
}

// ParseStats parses Envoy's plain /stats output ("name: value" per line) into
// counters and gauges; histogram lines (whose value is not an integer) are
// skipped.
func ParseStats(text string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for i, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		name, val, ok := strings.Cut(line, ": ")
		if !ok || name == "" {
			return nil, fmt.Errorf("stats line %d: no \"name: value\" in %q", i+1, line)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(val), 10, 64)
		if err != nil {
			continue // a histogram summary such as "P0(nan,0) P25(...)"
		}
		out[name] = v
	}
	return out, nil
}

// PromMetrics fetches and parses /stats/prometheus.
func (e *Envoy) PromMetrics() ([]Sample, error) {
	body, err := e.AdminGet("/stats/prometheus")
	if err != nil {
		return nil, err
	}
	return ParsePrometheus(body)
}

// FindSamples returns the samples named name whose labels include every pair
// in labels.
func FindSamples(samples []Sample, name string, labels map[string]string) []Sample {
	var out []Sample
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		match := true
		for k, v := range labels {
			if got, ok := s.Labels[k]; !ok || got != v {
				match = false
				break
			}
		}
		if match {
			out = append(out, s)
		}
	}
	return out
}

// PromMetric returns the value of the Prometheus sample named name whose labels
// include every pair in labels (the sum when several match), and whether any
// matched. Wasm metrics appear under their own name, without Envoy's
// wasmcustom prefix; failing to read the admin interface fails the test.
func (e *Envoy) PromMetric(name string, labels map[string]string) (float64, bool) {
	samples, err := e.PromMetrics()
	if err != nil {
		e.t.Errorf("envoytest: %v", err)
		return 0, false
	}
	found := FindSamples(samples, name, labels)
	if len(found) == 0 {
		return 0, false
	}
	sum := 0.0
	for _, s := range found {
		sum += s.Value
	}
	return sum, true
}

// WaitPromMetric polls /stats/prometheus until the metric exists and cond
// accepts its value, and returns that value; it fails the test after timeout.
func (e *Envoy) WaitPromMetric(t testing.TB, name string, labels map[string]string, timeout time.Duration, cond func(float64) bool) float64 {
	t.Helper()
	var v float64
	Eventually(t, timeout, func() bool {
		got, ok := e.PromMetric(name, labels)
		v = got
		return ok && cond(got)
	}, "prometheus metric %s%v never satisfied the condition (last value %v)", name, labels, &v)
	return v
}

// statsDoc is Envoy's /stats?format=json.
type statsDoc struct {
	Stats []json.RawMessage `json:"stats"`
}

// Stats returns every counter and gauge from /stats?format=json, by name.
func (e *Envoy) Stats() (map[string]uint64, error) {
	return e.statsJSON("")
}

func (e *Envoy) statsJSON(filter string) (map[string]uint64, error) {
	path := "/stats?format=json"
	if filter != "" {
		path += "&filter=" + url.QueryEscape(filter)
	}
	body, err := e.AdminGet(path)
	if err != nil {
		return nil, err
	}
	return decodeStatsJSON([]byte(body))
}

func decodeStatsJSON(body []byte) (map[string]uint64, error) {
	var doc statsDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decode /stats json: %w", err)
	}
	out := map[string]uint64{}
	for _, raw := range doc.Stats {
		var s struct {
			Name  *string     `json:"name"`
			Value json.Number `json:"value"`
		}
		if err := json.Unmarshal(raw, &s); err != nil || s.Name == nil {
			continue // the histograms object
		}
		v, err := strconv.ParseUint(s.Value.String(), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("stat %s: value %q: %w", *s.Name, s.Value, err)
		}
		out[*s.Name] = v
	}
	return out, nil
}

// StatsValue returns the counter or gauge named exactly name (Envoy's dotted
// name, e.g. "http.ingress.downstream_rq_total") and whether it exists;
// failing to read the admin interface fails the test.
func (e *Envoy) StatsValue(name string) (uint64, bool) {
	m, err := e.statsJSON("^" + regexp.QuoteMeta(name) + "$")
	if err != nil {
		e.t.Errorf("envoytest: %v", err)
		return 0, false
	}
	v, ok := m[name]
	return v, ok
}

// StatsMatching returns the counters and gauges whose names match the RE2
// expression re.
func (e *Envoy) StatsMatching(re string) (map[string]uint64, error) {
	if _, err := regexp.Compile(re); err != nil {
		return nil, fmt.Errorf("stats filter: %w", err)
	}
	return e.statsJSON(re)
}

// WorkerStat returns the per-worker listener stat, e.g.
// WorkerStat(1, "downstream_cx_total") reads
// listener.tollgate.worker_1.downstream_cx_total.
func (e *Envoy) WorkerStat(worker int, stat string) (uint64, error) {
	name := fmt.Sprintf("listener.%s.worker_%d.%s", ListenerStatPrefix, worker, stat)
	m, err := e.statsJSON("^" + regexp.QuoteMeta(name) + "$")
	if err != nil {
		return 0, err
	}
	v, ok := m[name]
	if !ok {
		return 0, errors.New("envoytest: no stat " + name)
	}
	return v, nil
}
