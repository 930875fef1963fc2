package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Defaults for Config fields left zero.
const (
	// DefaultDedupeWindow is how long a request id is remembered. A record
	// older than this (by its time) is acknowledged but not counted, so a
	// retry can never be counted twice; a sender that cannot reach the
	// keystore for longer than this loses those records.
	DefaultDedupeWindow = time.Hour
	// DefaultMaxSkew is how far in the future a record's time may be.
	DefaultMaxSkew = 5 * time.Minute
	// DefaultMinuteRetention keeps per-minute aggregates two days.
	DefaultMinuteRetention = 48 * time.Hour
	// DefaultHourRetention keeps per-hour aggregates 90 days.
	DefaultHourRetention = 90 * 24 * time.Hour
	// DefaultDayRetention keeps per-day aggregates about 13 months.
	DefaultDayRetention = 400 * 24 * time.Hour
	// MaxQueryBuckets bounds the buckets one query may span.
	MaxQueryBuckets = 10000
	// maxFieldErrors bounds the per-record errors an Ack lists.
	maxFieldErrors = 10
)

// Config tunes a Store.
type Config struct {
	// DedupeWindow bounds how long request ids are remembered (and how late a record may arrive).
	DedupeWindow time.Duration
	// MaxSkew is how far in the future a record's time may lie.
	MaxSkew time.Duration
	// MinuteRetention, HourRetention and DayRetention are how long each resolution is kept.
	MinuteRetention, HourRetention, DayRetention time.Duration
	// RawRetention, when positive, also keeps every counted record as sent
	// (after validation) for this long, for export; 0 keeps none and deletes
	// any an earlier run kept.
	RawRetention time.Duration
	// Now is the clock (tests pin it).
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.DedupeWindow <= 0 {
		c.DedupeWindow = DefaultDedupeWindow
	}
	if c.MaxSkew <= 0 {
		c.MaxSkew = DefaultMaxSkew
	}
	if c.MinuteRetention <= 0 {
		c.MinuteRetention = DefaultMinuteRetention
	}
	if c.HourRetention <= 0 {
		c.HourRetention = DefaultHourRetention
	}
	if c.DayRetention <= 0 {
		c.DayRetention = DefaultDayRetention
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) retention(r Resolution) time.Duration {
	switch r {
	case Minute:
		return c.MinuteRetention
	case Hour:
		return c.HourRetention
	}
	return c.DayRetention
}

// item is one validated record as the engines apply it.
type item struct {
	rid       string
	seenUntil int64 // Unix ms until which the request id is remembered
	dims      string
	totals    Totals
	starts    [len(resolutions)]int64 // bucket starts (Unix s), per resolution
	expires   [len(resolutions)]int64 // when each bucket may be dropped (Unix s)
	raw       []byte                  // the record as JSON when raw records are kept, else nil
	rawAt     int64                   // the record's time (Unix ms)
	rawUntil  int64                   // when the raw record may be dropped (Unix ms)
}

// engine is a storage backend for aggregates and request ids.
type engine interface {
	// ingest applies items in order, skipping any whose request id is
	// remembered (including one earlier in the same call), atomically per item
	// at least; it returns how many were counted.
	ingest(ctx context.Context, items []item) (int, error)
	// scan calls fn for every aggregate of resolution res with from ≤ start < to.
	scan(ctx context.Context, res Resolution, from, to int64, fn func(start int64, d Dims, t Totals) error) error
	// prune drops request ids remembered until before nowMS, buckets that
	// started before the cutoffs and raw records older than rawCutoffMS.
	prune(ctx context.Context, nowMS int64, cutoffs map[Resolution]int64, rawCutoffMS int64) error
	// raw calls fn with every raw record (JSON) whose time is in [fromMS,
	// toMS), oldest first, until fn returns false.
	raw(ctx context.Context, fromMS, toMS int64, fn func(rec []byte) (bool, error)) error
}

// Store ingests records and answers queries; safe for concurrent use.
type Store struct {
	cfg Config
	eng engine
}

// Ack is the answer to an ingest call.
type Ack struct {
	// Accepted records were counted now.
	Accepted int `json:"accepted"`
	// Duplicates were counted before (same request id) and are ignored.
	Duplicates int `json:"duplicates"`
	// Expired records are older than the dedupe window: acknowledged, not counted.
	Expired int `json:"expired"`
	// Invalid records failed validation: acknowledged, not counted.
	Invalid int `json:"invalid"`
	// Errors describe the first invalid records.
	Errors []FieldError `json:"errors,omitempty"`
}

// Ingest validates and counts a batch. Every record is acknowledged in one
// of the Ack's classes; the error is only for storage failures (the sender
// then retries the whole batch, which dedupe makes safe).
func (s *Store) Ingest(ctx context.Context, recs []Record) (Ack, error) {
	now := s.cfg.Now()
	var ack Ack
	items := make([]item, 0, len(recs))
	for i := range recs {
		r := &recs[i]
		if err := r.Validate(i, now, s.cfg.MaxSkew); err != nil {
			ack.Invalid++
			var fe *FieldError
			if errors.As(err, &fe) && len(ack.Errors) < maxFieldErrors {
				ack.Errors = append(ack.Errors, *fe)
			}
			continue
		}
		if r.Time.Before(now.Add(-s.cfg.DedupeWindow)) {
			ack.Expired++
			continue
		}
		// Remember the id for a window past both now and the record's own
		// time, so any later copy (which must be younger than the window to
		// be counted) finds it.
		seen := now
		if r.Time.After(seen) {
			seen = r.Time
		}
		it := item{rid: r.RequestID, seenUntil: seen.Add(s.cfg.DedupeWindow).UnixMilli(), dims: dimsOf(r).encode(), totals: totalsOf(r)}
		for k, res := range resolutions {
			it.starts[k] = res.Start(r.Time)
			it.expires[k] = it.starts[k] + int64((res.Width()+s.cfg.retention(res))/time.Second)
		}
		if s.RawEnabled() {
			raw, err := json.Marshal(r)
			if err != nil {
				return Ack{}, fmt.Errorf("encode raw usage record: %w", err)
			}
			it.raw, it.rawAt, it.rawUntil = raw, r.Time.UnixMilli(), r.Time.Add(s.cfg.RawRetention).UnixMilli()
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		return ack, nil
	}
	n, err := s.eng.ingest(ctx, items)
	if err != nil {
		return Ack{}, fmt.Errorf("ingest usage: %w", err)
	}
	ack.Accepted = n
	ack.Duplicates = len(items) - n
	return ack, nil
}

// Prune drops request ids past the dedupe window and aggregates past their
// retention. Call it periodically (Run does).
func (s *Store) Prune(ctx context.Context) error {
	now := s.cfg.Now()
	cut := map[Resolution]int64{}
	for _, res := range resolutions {
		cut[res] = res.Start(now.Add(-s.cfg.retention(res)))
	}
	if err := s.eng.prune(ctx, now.UnixMilli(), cut, s.rawCutoff(now)); err != nil {
		return fmt.Errorf("prune usage: %w", err)
	}
	return nil
}

// Run prunes every interval until ctx ends; errors go to onErr.
func (s *Store) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Prune(ctx); err != nil && ctx.Err() == nil && onErr != nil {
				onErr(err)
			}
		}
	}
}

// Dimension names for GroupBy and filters.
const (
	DimApp       = "app"
	DimProduct   = "product"
	DimDeveloper = "developer"
	DimModel     = "model"
)

// Dimensions lists the dimension names in their canonical order.
var dimensions = [...]string{DimApp, DimProduct, DimDeveloper, DimModel}

// ErrQuery marks an invalid query (the caller answers 400).
var ErrQuery = errors.New("invalid usage query")

// Query selects aggregates.
type Query struct {
	// From and To bound the time range [From, To); From is rounded down and To up to Step.
	From, To time.Time
	// Step is the bucket width of the series.
	Step Resolution
	// GroupBy names the dimensions series are split by (none: one series).
	GroupBy []string
	// Apps, Products, Developers and Models keep only matching aggregates (empty: all).
	Apps, Products, Developers, Models []string
	// Scoped restricts the result to ScopeApps (a developer's own apps) whatever the filters say.
	Scoped    bool
	ScopeApps []string
}

// Point is one bucket of a series.
type Point struct {
	Start time.Time `json:"start"`
	Totals
}

// MarshalJSON writes the bucket start next to its counters (Totals has its
// own MarshalJSON, which would otherwise be promoted and drop Start).
func (p Point) MarshalJSON() ([]byte, error) {
	raw, err := p.Totals.MarshalJSON()
	if err != nil {
		return nil, err
	}
	start, err := json.Marshal(p.Start)
	if err != nil {
		return nil, err
	}
	out := append([]byte(`{"start":`), start...)
	out = append(out, ',')
	return append(out, raw[1:]...), nil
}

// Series is the usage of one group.
type Series struct {
	Group  Dims    `json:"group"`
	Totals Totals  `json:"totals"`
	Points []Point `json:"points"`
}

// Result answers a Query. Buckets without usage are left out of Points.
type Result struct {
	From    time.Time  `json:"from"`
	To      time.Time  `json:"to"`
	Step    Resolution `json:"step"`
	GroupBy []string   `json:"group_by"`
	Totals  Totals     `json:"totals"`
	Series  []Series   `json:"series"`
}

// MarshalJSON adds the derived cost and mean latency next to the counters.
func (t Totals) MarshalJSON() ([]byte, error) {
	type plain Totals
	return json.Marshal(struct {
		plain
		Cost         float64 `json:"cost"`
		LatencyMSAvg float64 `json:"latency_ms_avg"`
	}{plain(t), t.Cost(), t.LatencyMSAvg()})
}

// Validate checks and normalises q (group names, range, bucket count).
func (q *Query) Validate() error {
	if q.Step == "" {
		q.Step = Hour
	}
	if _, err := ParseResolution(string(q.Step)); err != nil {
		return fmt.Errorf("%w: %w", ErrQuery, err)
	}
	seen := map[string]bool{}
	for _, g := range q.GroupBy {
		if !slices.Contains(dimensions[:], g) {
			return fmt.Errorf("%w: group_by %q: want app, product, developer or model", ErrQuery, g)
		}
		if seen[g] {
			return fmt.Errorf("%w: group_by %q given twice", ErrQuery, g)
		}
		seen[g] = true
	}
	if q.From.IsZero() || q.To.IsZero() || !q.From.Before(q.To) {
		return fmt.Errorf("%w: from must be before to", ErrQuery)
	}
	w := int64(q.Step.Width() / time.Second)
	from := q.Step.Start(q.From)
	to := q.Step.Start(q.To)
	if to < q.To.Unix() || q.To.Nanosecond() != 0 && to == q.To.Unix() {
		to += w
	}
	if (to-from)/w > MaxQueryBuckets {
		return fmt.Errorf("%w: the range spans %d %s buckets, at most %d", ErrQuery, (to-from)/w, q.Step, MaxQueryBuckets)
	}
	q.From, q.To = time.Unix(from, 0).UTC(), time.Unix(to, 0).UTC()
	return nil
}

func matches(list []string, v string) bool { return len(list) == 0 || slices.Contains(list, v) }

// Query answers q; an ErrQuery error means q is invalid.
func (s *Store) Query(ctx context.Context, q Query) (Result, error) {
	if err := q.Validate(); err != nil {
		return Result{}, err
	}
	res := Result{From: q.From, To: q.To, Step: q.Step, GroupBy: q.GroupBy, Series: []Series{}}
	if res.GroupBy == nil {
		res.GroupBy = []string{}
	}
	type acc struct {
		s      Series
		points map[int64]*Totals
	}
	groups := map[Dims]*acc{}
	err := s.eng.scan(ctx, q.Step, q.From.Unix(), q.To.Unix(), func(start int64, d Dims, t Totals) error {
		if q.Scoped && !slices.Contains(q.ScopeApps, d.App) {
			return nil
		}
		if !matches(q.Apps, d.App) || !matches(q.Products, d.Product) || !matches(q.Developers, d.Developer) || !matches(q.Models, d.Model) {
			return nil
		}
		var g Dims
		for _, name := range q.GroupBy {
			switch name {
			case DimApp:
				g.App = d.App
			case DimProduct:
				g.Product = d.Product
			case DimDeveloper:
				g.Developer = d.Developer
			case DimModel:
				g.Model = d.Model
			}
		}
		a := groups[g]
		if a == nil {
			a = &acc{s: Series{Group: g}, points: map[int64]*Totals{}}
			groups[g] = a
		}
		p := a.points[start]
		if p == nil {
			p = &Totals{}
			a.points[start] = p
		}
		p.Add(t)
		a.s.Totals.Add(t)
		res.Totals.Add(t)
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("query usage: %w", err)
	}
	for _, a := range groups {
		starts := make([]int64, 0, len(a.points))
		for st := range a.points {
			starts = append(starts, st)
		}
		slices.Sort(starts)
		a.s.Points = make([]Point, 0, len(starts))
		for _, st := range starts {
			a.s.Points = append(a.s.Points, Point{Start: time.Unix(st, 0).UTC(), Totals: *a.points[st]})
		}
		res.Series = append(res.Series, a.s)
	}
	sort.Slice(res.Series, func(i, j int) bool {
		a, b := res.Series[i], res.Series[j]
		if a.Totals.TotalTokens != b.Totals.TotalTokens {
			return a.Totals.TotalTokens > b.Totals.TotalTokens
		}
		if a.Totals.Requests != b.Totals.Requests {
			return a.Totals.Requests > b.Totals.Requests
		}
		return strings.Compare(a.Group.encode(), b.Group.encode()) < 0
	})
	return res, nil
}
