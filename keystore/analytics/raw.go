package analytics

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"
)

// Limits of raw-record queries.
const (
	// DefaultRawLimit is how many records a query returns when it names no limit.
	DefaultRawLimit = 1000
	// MaxRawLimit is the most records one query returns.
	MaxRawLimit = 10000
)

// ErrRawOff answers raw-record queries on a store that keeps no raw records.
var ErrRawOff = errors.New("raw usage records are not kept (--usage-raw-retention is 0)")

// RawEnabled reports whether raw records are kept (Config.RawRetention > 0).
func (s *Store) RawEnabled() bool { return s.cfg.RawRetention > 0 }

// RawQuery selects raw records by time and by the same filters as Query.
type RawQuery struct {
	// From and To bound the records' times: From ≤ time < To.
	From, To time.Time
	// Apps, Products, Developers and Models keep only matching records (empty: all).
	Apps, Products, Developers, Models []string
	// Scoped restricts the result to ScopeApps (a developer's own apps) whatever the filters say.
	Scoped    bool
	ScopeApps []string
	// Limit is the most records returned (0: DefaultRawLimit; at most MaxRawLimit).
	Limit int
}

// RawResult answers a RawQuery, oldest record first.
type RawResult struct {
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Records []Record  `json:"records"`
	// Truncated is set when more records matched than Limit.
	Truncated bool `json:"truncated"`
}

// Records returns the raw records q selects; ErrRawOff when none are kept,
// ErrQuery for an invalid q.
func (s *Store) Records(ctx context.Context, q RawQuery) (RawResult, error) {
	if !s.RawEnabled() {
		return RawResult{}, ErrRawOff
	}
	if q.Limit == 0 {
		q.Limit = DefaultRawLimit
	}
	if q.Limit < 0 || q.Limit > MaxRawLimit {
		return RawResult{}, fmt.Errorf("%w: limit must be 1 to %d", ErrQuery, MaxRawLimit)
	}
	if q.From.IsZero() || q.To.IsZero() || !q.From.Before(q.To) {
		return RawResult{}, fmt.Errorf("%w: from must be before to", ErrQuery)
	}
	res := RawResult{From: q.From.UTC(), To: q.To.UTC(), Records: []Record{}}
	err := s.eng.raw(ctx, q.From.UnixMilli(), q.To.UnixMilli(), func(raw []byte) (bool, error) {
		var r Record
		if err := json.Unmarshal(raw, &r); err != nil {
			return false, fmt.Errorf("corrupt raw usage record: %w", err)
		}
		if q.Scoped && !slices.Contains(q.ScopeApps, r.App) {
			return true, nil
		}
		if !matches(q.Apps, r.App) || !matches(q.Products, r.Product) || !matches(q.Developers, r.Developer) || !matches(q.Models, r.Model) {
			return true, nil
		}
		if len(res.Records) == q.Limit {
			res.Truncated = true
			return false, nil
		}
		res.Records = append(res.Records, r)
		return true, nil
	})
	if err != nil {
		return RawResult{}, fmt.Errorf("read raw usage records: %w", err)
	}
	return res, nil
}

// rawCutoff is the record time (Unix ms) below which raw records are
// dropped: past the retention, or all of them when raw records are off
// (turning the flag off deletes what an earlier run kept).
func (s *Store) rawCutoff(now time.Time) int64 {
	if !s.RawEnabled() {
		return math.MaxInt64
	}
	return now.Add(-s.cfg.RawRetention).UnixMilli()
}

// rawCSVHeader names the columns of WriteRecordsCSV.
var rawCSVHeader = []string{"request_id", "time", "app", "product", "developer", "key_id", "model",
	"prompt_tokens", "completion_tokens", "total_tokens", "cost", "status", "outcome", "latency_ms"}

// WriteRecordsCSV writes one row per raw record.
func WriteRecordsCSV(w io.Writer, res RawResult) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(rawCSVHeader); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, r := range res.Records {
		row := []string{csvSafe(r.RequestID), r.Time.UTC().Format(time.RFC3339Nano), csvSafe(r.App), csvSafe(r.Product),
			csvSafe(r.Developer), csvSafe(r.KeyID), csvSafe(r.Model), i64(r.PromptTokens), i64(r.CompletionTokens),
			i64(r.TotalTokens), strconv.FormatFloat(r.Cost, 'f', 6, 64), strconv.Itoa(r.Status), r.Outcome, i64(r.LatencyMS)}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}
