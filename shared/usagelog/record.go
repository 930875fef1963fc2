// Package usagelog is how filters report usage records to the keystore's
// analytics (POST /v1/usage, see keystore/analytics): a stream's OnDone
// appends its record to its VM's bounded backlog (no host call, never a
// callout on the request path), and each VM's tick posts the backlog in
// batches, one batch in flight per VM, retrying the same batch with backoff
// until the keystore acknowledges it. The keystore
// counts each request id once, so a retry after a lost answer is harmless.
package usagelog

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/shared/jsonenc"
)

// Outcomes a record may report (the keystore refuses others).
const (
	OutcomeOK      = "ok"
	OutcomeRefused = "refused"
	OutcomeAborted = "aborted"
)

// Record is one finished request, as the analytics store expects it.
type Record struct {
	// RequestID is the stream's x-request-id: the keystore's idempotency key.
	RequestID string
	// Time is when the request ended.
	Time time.Time
	// App, Product, Developer and KeyID are the identity apikey resolved.
	App, Product, Developer, KeyID string
	// Model is the public model the client asked for.
	Model string
	// PromptTokens, CompletionTokens and TotalTokens are the usage (total 0: prompt + completion).
	PromptTokens, CompletionTokens, TotalTokens int64
	// Cost is in the gateway's currency unit.
	Cost float64
	// Status is the HTTP status the client got (0: none).
	Status int
	// Outcome is OutcomeOK, OutcomeRefused or OutcomeAborted.
	Outcome string
	// Latency is from the request's start to its end.
	Latency time.Duration
}

// AppendJSON appends r as one JSON object of the ingest format.
func (r *Record) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	b = jsonenc.AppendField(b, "request_id")
	b = jsonenc.AppendString(b, r.RequestID)
	b = jsonenc.AppendField(b, "time")
	b = append(b, '"')
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	for _, f := range [...]struct{ name, v string }{{"app", r.App}, {"product", r.Product}, {"developer", r.Developer}, {"key_id", r.KeyID}, {"model", r.Model}} {
		if f.v != "" {
			b = jsonenc.AppendField(b, f.name)
			b = jsonenc.AppendString(b, f.v)
		}
	}
	for _, f := range [...]struct {
		name string
		v    int64
	}{{"prompt_tokens", r.PromptTokens}, {"completion_tokens", r.CompletionTokens}, {"total_tokens", r.TotalTokens},
		{"status", int64(r.Status)}, {"latency_ms", r.Latency.Milliseconds()}} {
		if f.v != 0 {
			b = jsonenc.AppendField(b, f.name)
			b = jsonenc.AppendInt(b, f.v)
		}
	}
	if r.Cost != 0 {
		b = jsonenc.AppendField(b, "cost")
		b = jsonenc.AppendFloat(b, r.Cost)
	}
	b = jsonenc.AppendField(b, "outcome")
	b = jsonenc.AppendString(b, r.Outcome)
	return append(b, '}')
}

// RequestID returns the stream's x-request-id when it is one the keystore
// accepts, or else a fresh random id (the record is still counted once: it
// is sent, and retried, under that one id).
func RequestID(header string, now time.Time) string {
	if header != "" && len(header) <= 128 && !strings.ContainsFunc(header, func(c rune) bool { return c <= 0x20 || c >= 0x7f }) {
		return header
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "tg-" + strconv.FormatInt(now.UnixMilli(), 36) + "-" + hex.EncodeToString(b[:])
}
