package keystore

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/keystore/analytics"
)

// Collector writes extra metrics in Prometheus text format into /metrics, so
// components mounted on the same server (quota counters) expose theirs too.
type Collector interface {
	WriteMetrics(w io.Writer) error
}

// numBuckets is the number of finite latency histogram bounds.
const numBuckets = 10

// latencyBuckets returns the verify latency histogram bounds in seconds.
func latencyBuckets() [numBuckets]float64 {
	return [numBuckets]float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25}
}

type httpKey struct{ server, route, code string }

// metrics is the keystore's hand-written Prometheus registry.
type metrics struct {
	mu        sync.Mutex
	http      map[httpKey]uint64
	verify    map[string]uint64
	buckets   [numBuckets]float64
	latCounts [numBuckets + 1]uint64
	latSum    float64
	latTotal  uint64
	backend   string
	started   time.Time
	// usageRecs counts ingested usage records by class (accepted, duplicate, expired, invalid).
	usageRecs [4]uint64
}

func newMetrics(backend string, now time.Time) *metrics {
	return &metrics{http: map[httpKey]uint64{}, verify: map[string]uint64{}, buckets: latencyBuckets(), backend: backend, started: now}
}

func (m *metrics) request(server, route string, code int) {
	k := httpKey{server, route, strconv.Itoa(code)}
	m.mu.Lock()
	m.http[k]++
	m.mu.Unlock()
}

func (m *metrics) verified(outcome string, d time.Duration) {
	s := d.Seconds()
	i := sort.SearchFloat64s(m.buckets[:], s)
	m.mu.Lock()
	m.verify[outcome]++
	m.latCounts[i]++
	m.latSum += s
	m.latTotal++
	m.mu.Unlock()
}

// usage counts one ingest acknowledgement.
func (m *metrics) usage(a analytics.Ack) {
	m.mu.Lock()
	m.usageRecs[0] += uint64(a.Accepted)
	m.usageRecs[1] += uint64(a.Duplicates)
	m.usageRecs[2] += uint64(a.Expired)
	m.usageRecs[3] += uint64(a.Invalid)
	m.mu.Unlock()
}

// escapeLabel escapes a label value per the Prometheus text format.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(s)
}

func formatFloat(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func (m *metrics) write(w io.Writer, now time.Time) error {
	m.mu.Lock()
	httpKeys := make([]httpKey, 0, len(m.http))
	for k := range m.http {
		httpKeys = append(httpKeys, k)
	}
	sort.Slice(httpKeys, func(i, j int) bool {
		a, b := httpKeys[i], httpKeys[j]
		if a.server != b.server {
			return a.server < b.server
		}
		if a.route != b.route {
			return a.route < b.route
		}
		return a.code < b.code
	})
	outcomes := make([]string, 0, len(m.verify))
	for k := range m.verify {
		outcomes = append(outcomes, k)
	}
	sort.Strings(outcomes)

	var b strings.Builder
	b.WriteString("# HELP tollgate_keystore_info Keystore build and storage backend.\n# TYPE tollgate_keystore_info gauge\n")
	fmt.Fprintf(&b, "tollgate_keystore_info{backend=\"%s\"} 1\n", escapeLabel(m.backend))
	b.WriteString("# HELP tollgate_keystore_uptime_seconds Seconds since the keystore started.\n# TYPE tollgate_keystore_uptime_seconds gauge\n")
	fmt.Fprintf(&b, "tollgate_keystore_uptime_seconds %s\n", formatFloat(now.Sub(m.started).Seconds()))
	b.WriteString("# HELP tollgate_keystore_http_requests_total HTTP requests by server, route and status code.\n# TYPE tollgate_keystore_http_requests_total counter\n")
	for _, k := range httpKeys {
		fmt.Fprintf(&b, "tollgate_keystore_http_requests_total{server=\"%s\",route=\"%s\",code=\"%s\"} %d\n",
			escapeLabel(k.server), escapeLabel(k.route), escapeLabel(k.code), m.http[k])
	}
	b.WriteString("# HELP tollgate_keystore_verify_total Key verifications by outcome (valid or the denial reason).\n# TYPE tollgate_keystore_verify_total counter\n")
	for _, o := range outcomes {
		fmt.Fprintf(&b, "tollgate_keystore_verify_total{outcome=\"%s\"} %d\n", escapeLabel(o), m.verify[o])
	}
	b.WriteString("# HELP tollgate_keystore_verify_duration_seconds Time to answer /v1/verify, body decoding included.\n# TYPE tollgate_keystore_verify_duration_seconds histogram\n")
	var cum uint64
	for i, le := range m.buckets {
		cum += m.latCounts[i]
		fmt.Fprintf(&b, "tollgate_keystore_verify_duration_seconds_bucket{le=\"%s\"} %d\n", formatFloat(le), cum)
	}
	cum += m.latCounts[numBuckets]
	fmt.Fprintf(&b, "tollgate_keystore_verify_duration_seconds_bucket{le=\"+Inf\"} %d\n", cum)
	fmt.Fprintf(&b, "tollgate_keystore_verify_duration_seconds_sum %s\n", formatFloat(m.latSum))
	fmt.Fprintf(&b, "tollgate_keystore_verify_duration_seconds_count %d\n", m.latTotal)
	b.WriteString("# HELP tollgate_keystore_usage_records_total Usage records received on /v1/usage by result.\n# TYPE tollgate_keystore_usage_records_total counter\n")
	for i, result := range [...]string{"accepted", "duplicate", "expired", "invalid"} {
		fmt.Fprintf(&b, "tollgate_keystore_usage_records_total{result=\"%s\"} %d\n", result, m.usageRecs[i])
	}
	m.mu.Unlock()
	_, err := io.WriteString(w, b.String())
	return err
}
