// Package analytics turns the usage records that filters send when a request
// ends into time-bucketed aggregates (per minute, hour and day, keyed by app,
// product, developer and model) kept in the keystore's storage, and answers
// time-series and total queries over them. By default raw records are not
// stored: every record adds to three aggregates and is then forgotten, except
// for its request id, which is remembered for the dedupe window so that a
// record sent twice is counted once. Config.RawRetention also keeps each
// counted record, for export, for that long.
package analytics

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Outcomes a record may report.
const (
	// OutcomeOK is a request the upstream answered (any status).
	OutcomeOK = "ok"
	// OutcomeRefused is a request the gateway refused (quota, key, policy).
	OutcomeRefused = "refused"
	// OutcomeAborted is a request the client or upstream abandoned mid-way.
	OutcomeAborted = "aborted"
)

// Limits on a batch and its records; larger values are refused.
const (
	// MaxBatchRecords caps the records of one ingest call.
	MaxBatchRecords = 1000
	// MaxBatchBytes caps an ingest body.
	MaxBatchBytes = 1 << 20
	// MaxRequestIDLen caps request ids (Envoy's are 36-byte UUIDs).
	MaxRequestIDLen = 128
	// MaxDimLen caps app, product, developer, key id and model names.
	MaxDimLen = 256
	// MaxTokens caps any token count of one record.
	MaxTokens = 1 << 40
	// MaxCost caps the cost of one record (in the gateway's currency).
	MaxCost = 1e9
	// MaxLatencyMS caps a record's latency (one day).
	MaxLatencyMS = 24 * 3600 * 1000
)

// Record is what a filter reports about one finished request.
type Record struct {
	// RequestID identifies the request (x-request-id); it makes ingestion idempotent.
	RequestID string `json:"request_id"`
	// Time is when the request ended.
	Time time.Time `json:"time"`
	// App, Product, Developer and KeyID are the caller's identity as apikey resolved it.
	App       string `json:"app,omitempty"`
	Product   string `json:"product,omitempty"`
	Developer string `json:"developer,omitempty"`
	KeyID     string `json:"key_id,omitempty"`
	// Model is the public model name the client asked for.
	Model string `json:"model,omitempty"`
	// Token counts as the upstream reported (or the meter estimated) them.
	PromptTokens     int64 `json:"prompt_tokens,omitempty"`
	CompletionTokens int64 `json:"completion_tokens,omitempty"`
	// TotalTokens defaults to prompt + completion when zero.
	TotalTokens int64 `json:"total_tokens,omitempty"`
	// Cost is what the request cost, in the gateway's currency unit; stored with 1e-6 precision.
	Cost float64 `json:"cost,omitempty"`
	// Status is the HTTP status the client got (0: none, e.g. aborted before headers).
	Status int `json:"status,omitempty"`
	// Outcome is ok, refused or aborted.
	Outcome string `json:"outcome"`
	// LatencyMS is the time from request start to its end.
	LatencyMS int64 `json:"latency_ms,omitempty"`
}

// Batch is the body of an ingest call.
type Batch struct {
	Records []Record `json:"records"`
}

// FieldError says which field of which record is invalid.
type FieldError struct {
	Index int    `json:"index"`
	Param string `json:"param"`
	Msg   string `json:"message"`
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("records[%d].%s: %s", e.Index, e.Param, e.Msg)
}

// ErrBatch marks structural problems of a whole batch (the caller answers 400).
var ErrBatch = errors.New("invalid usage batch")

// DecodeBatch parses an ingest body strictly (unknown fields, trailing data
// and more than MaxBatchRecords records are refused). Per-record validation
// is Validate's job, so that one bad record does not hold back the others.
func DecodeBatch(body []byte) (Batch, error) {
	var b Batch
	if len(body) > MaxBatchBytes {
		return b, fmt.Errorf("%w: body exceeds %d bytes", ErrBatch, MaxBatchBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return b, fmt.Errorf("%w: empty body; send {\"records\": [...]}", ErrBatch)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return Batch{}, fmt.Errorf("%w: %w", ErrBatch, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Batch{}, fmt.Errorf("%w: data after the JSON object", ErrBatch)
	}
	if b.Records == nil {
		return Batch{}, fmt.Errorf("%w: missing \"records\"", ErrBatch)
	}
	if len(b.Records) > MaxBatchRecords {
		return Batch{}, fmt.Errorf("%w: %d records, at most %d per batch", ErrBatch, len(b.Records), MaxBatchRecords)
	}
	return b, nil
}

func validName(s string) bool {
	if len(s) > MaxDimLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// Validate checks one record at index i against the clock, fills defaults
// (TotalTokens) and returns a *FieldError for the first problem. Records
// more than maxSkew in the future are refused.
func (r *Record) Validate(i int, now time.Time, maxSkew time.Duration) error {
	bad := func(param, msg string) error { return &FieldError{Index: i, Param: param, Msg: msg} }
	switch {
	case r.RequestID == "" || len(r.RequestID) > MaxRequestIDLen:
		return bad("request_id", fmt.Sprintf("request_id must be 1 to %d bytes", MaxRequestIDLen))
	case strings.ContainsFunc(r.RequestID, func(c rune) bool { return c <= 0x20 || c >= 0x7f }):
		return bad("request_id", "request_id must be printable ASCII without spaces")
	case r.Time.IsZero():
		return bad("time", "time is required (RFC 3339)")
	case r.Time.After(now.Add(maxSkew)):
		return bad("time", fmt.Sprintf("time is more than %s in the future", maxSkew))
	case !validName(r.App):
		return bad("app", "app must be valid UTF-8 without control characters, at most 256 bytes")
	case !validName(r.Product):
		return bad("product", "product must be valid UTF-8 without control characters, at most 256 bytes")
	case !validName(r.Developer):
		return bad("developer", "developer must be valid UTF-8 without control characters, at most 256 bytes")
	case !validName(r.KeyID):
		return bad("key_id", "key_id must be valid UTF-8 without control characters, at most 256 bytes")
	case !validName(r.Model):
		return bad("model", "model must be valid UTF-8 without control characters, at most 256 bytes")
	case r.PromptTokens < 0 || r.PromptTokens > MaxTokens:
		return bad("prompt_tokens", "prompt_tokens must be between 0 and 2^40")
	case r.CompletionTokens < 0 || r.CompletionTokens > MaxTokens:
		return bad("completion_tokens", "completion_tokens must be between 0 and 2^40")
	case r.TotalTokens < 0 || r.TotalTokens > 2*MaxTokens:
		return bad("total_tokens", "total_tokens must be between 0 and 2^41")
	case math.IsNaN(r.Cost) || r.Cost < 0 || r.Cost > MaxCost:
		return bad("cost", "cost must be between 0 and 1e9")
	case r.Status != 0 && (r.Status < 100 || r.Status > 599):
		return bad("status", "status must be an HTTP status (100-599) or 0")
	case r.Outcome != OutcomeOK && r.Outcome != OutcomeRefused && r.Outcome != OutcomeAborted:
		return bad("outcome", "outcome must be ok, refused or aborted")
	case r.LatencyMS < 0 || r.LatencyMS > MaxLatencyMS:
		return bad("latency_ms", "latency_ms must be between 0 and 86400000")
	}
	if r.TotalTokens == 0 {
		r.TotalTokens = r.PromptTokens + r.CompletionTokens
	}
	return nil
}
