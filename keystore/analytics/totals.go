package analytics

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"
)

// Resolution is the width of an aggregate bucket.
type Resolution string

// The three resolutions every record is added to.
const (
	Minute Resolution = "minute"
	Hour   Resolution = "hour"
	Day    Resolution = "day"
)

// Resolutions lists them from finest to coarsest.
var resolutions = [...]Resolution{Minute, Hour, Day}

// ParseResolution accepts minute, hour or day.
func ParseResolution(s string) (Resolution, error) {
	for _, r := range resolutions {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("step %q: want minute, hour or day", s)
}

// Width is the bucket length.
func (r Resolution) Width() time.Duration {
	switch r {
	case Minute:
		return time.Minute
	case Hour:
		return time.Hour
	}
	return 24 * time.Hour
}

// Start is the start of the UTC bucket holding t, in Unix seconds.
func (r Resolution) Start(t time.Time) int64 {
	w := int64(r.Width() / time.Second)
	s := t.Unix()
	return s - ((s%w)+w)%w
}

func (r Resolution) code() byte { return r[0] } // 'm', 'h', 'd'

// Dims are what aggregates are keyed by.
type Dims struct {
	App       string `json:"app,omitempty"`
	Product   string `json:"product,omitempty"`
	Developer string `json:"developer,omitempty"`
	Model     string `json:"model,omitempty"`
}

// dimSep separates dims in storage keys; Validate refuses control characters in names.
const dimSep = "\x1f"

func (d Dims) encode() string {
	return d.App + dimSep + d.Product + dimSep + d.Developer + dimSep + d.Model
}

func decodeDims(s string) (Dims, error) {
	p := strings.Split(s, dimSep)
	if len(p) != 4 {
		return Dims{}, fmt.Errorf("corrupt aggregate key %q", s)
	}
	return Dims{App: p[0], Product: p[1], Developer: p[2], Model: p[3]}, nil
}

// Totals are the sums kept per bucket and dims.
type Totals struct {
	Requests         int64 `json:"requests"`
	OK               int64 `json:"ok"`
	Refused          int64 `json:"refused"`
	Aborted          int64 `json:"aborted"`
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
	// CostMicros is the cost in millionths of the currency unit (exact sums).
	CostMicros   int64 `json:"cost_micros"`
	LatencyMSSum int64 `json:"latency_ms_sum"`
	Status2xx    int64 `json:"status_2xx"`
	Status3xx    int64 `json:"status_3xx"`
	Status4xx    int64 `json:"status_4xx"`
	Status5xx    int64 `json:"status_5xx"`
	// StatusNone counts requests that ended without a status (aborted before headers).
	StatusNone int64 `json:"status_none"`
}

// numFields is how many counters Totals holds (the storage encoding's length).
const numFields = 14

func (t *Totals) fields() [numFields]*int64 {
	return [numFields]*int64{&t.Requests, &t.OK, &t.Refused, &t.Aborted, &t.PromptTokens, &t.CompletionTokens,
		&t.TotalTokens, &t.CostMicros, &t.LatencyMSSum, &t.Status2xx, &t.Status3xx, &t.Status4xx, &t.Status5xx, &t.StatusNone}
}

// Add adds o to t.
func (t *Totals) Add(o Totals) {
	a, b := t.fields(), o.fields()
	for i := range a {
		*a[i] += *b[i]
	}
}

// IsZero reports whether nothing was counted.
func (t Totals) IsZero() bool { return t == Totals{} }

// Cost is CostMicros in currency units.
func (t Totals) Cost() float64 { return float64(t.CostMicros) / 1e6 }

// LatencyMSAvg is the mean latency, 0 without requests.
func (t Totals) LatencyMSAvg() float64 {
	if t.Requests == 0 {
		return 0
	}
	return float64(t.LatencyMSSum) / float64(t.Requests)
}

// totalsOf is what one validated record adds.
func totalsOf(r *Record) Totals {
	t := Totals{Requests: 1, PromptTokens: r.PromptTokens, CompletionTokens: r.CompletionTokens,
		TotalTokens: r.TotalTokens, CostMicros: int64(math.Round(r.Cost * 1e6)), LatencyMSSum: r.LatencyMS}
	switch r.Outcome {
	case OutcomeOK:
		t.OK = 1
	case OutcomeRefused:
		t.Refused = 1
	default:
		t.Aborted = 1
	}
	switch {
	case r.Status >= 500:
		t.Status5xx = 1
	case r.Status >= 400:
		t.Status4xx = 1
	case r.Status >= 300:
		t.Status3xx = 1
	case r.Status >= 200:
		t.Status2xx = 1
	default:
		t.StatusNone = 1
	}
	return t
}

func dimsOf(r *Record) Dims {
	return Dims{App: r.App, Product: r.Product, Developer: r.Developer, Model: r.Model}
}

// marshal encodes Totals as numFields big-endian int64s.
func (t *Totals) marshal() []byte {
	out := make([]byte, 0, 8*numFields)
	for _, f := range t.fields() {
		out = binary.BigEndian.AppendUint64(out, uint64(*f))
	}
	return out
}

func unmarshalTotals(b []byte) (Totals, error) {
	var t Totals
	if len(b) != 8*numFields {
		return t, fmt.Errorf("corrupt aggregate value of %d bytes", len(b))
	}
	for i, f := range t.fields() {
		*f = int64(binary.BigEndian.Uint64(b[8*i:]))
	}
	return t, nil
}
