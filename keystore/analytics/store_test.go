package analytics

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/keystore/store"
)

// clock is an adjustable test clock. It starts at the real time (truncated to
// the hour, plus 30 minutes) because Redis expiries follow the real clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock {
	return &clock{now: time.Now().UTC().Truncate(time.Hour).Add(30 * time.Minute)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// contract runs fn against each engine: open returns a Store on fresh
// storage, and reopen a second Store on the same storage (a restart for
// bbolt, another keystore replica for Redis).
func contract(t *testing.T, fn func(t *testing.T, clk *clock, open func(Config) *Store)) {
	t.Helper()
	t.Run("bolt", func(t *testing.T) {
		b, err := store.OpenBackend(context.Background(), store.BackendOptions{DataDir: t.TempDir()})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		clk := newClock()
		fn(t, clk, func(cfg Config) *Store {
			t.Helper()
			cfg.Now = clk.Now
			s, err := Open(b, cfg)
			require.NoError(t, err)
			return s
		})
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		clk := newClock()
		fn(t, clk, func(cfg Config) *Store {
			t.Helper()
			b, err := store.OpenBackend(context.Background(), store.BackendOptions{RedisURL: srv.URL(), RedisPrefix: "test:"})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, b.Close()) })
			cfg.Now = clk.Now
			s, err := Open(b, cfg)
			require.NoError(t, err)
			return s
		})
	})
}

func rec(id string, at time.Time, app, model string, prompt, completion int64, outcome string, status int) Record {
	return Record{RequestID: id, Time: at, App: app, Product: "chat", Developer: "dev@" + app, KeyID: "key_" + app,
		Model: model, PromptTokens: prompt, CompletionTokens: completion, Cost: float64(prompt+completion) * 1e-6 * 2,
		Status: status, Outcome: outcome, LatencyMS: 100}
}

func query(t *testing.T, s *Store, q Query) Result {
	t.Helper()
	res, err := s.Query(context.Background(), q)
	require.NoError(t, err)
	return res
}

func TestContractAggregates(t *testing.T) {
	contract(t, func(t *testing.T, clk *clock, open func(Config) *Store) {
		ctx := context.Background()
		s := open(Config{})
		now := clk.Now()
		t0 := now.Add(-20 * time.Minute) // same hour, another minute than now
		ack, err := s.Ingest(ctx, []Record{
			rec("r1", t0, "alpha", "gemma", 10, 5, OutcomeOK, 200),
			rec("r2", t0.Add(30*time.Second), "alpha", "gemma", 20, 7, OutcomeOK, 200),
			rec("r3", now, "alpha", "llama", 3, 0, OutcomeAborted, 0),
			rec("r4", now, "beta", "gemma", 0, 0, OutcomeRefused, 429),
		})
		require.NoError(t, err)
		assert.Equal(t, Ack{Accepted: 4}, ack)

		q := Query{From: now.Add(-time.Hour), To: now.Add(time.Minute), Step: Minute, GroupBy: []string{DimApp, DimModel}}
		res := query(t, s, q)
		assert.Equal(t, int64(4), res.Totals.Requests)
		assert.Equal(t, int64(45), res.Totals.TotalTokens)
		assert.Equal(t, int64(33), res.Totals.PromptTokens)
		assert.Equal(t, int64(1), res.Totals.Aborted)
		assert.Equal(t, int64(1), res.Totals.Refused)
		assert.Equal(t, int64(1), res.Totals.Status4xx)
		assert.Equal(t, int64(1), res.Totals.StatusNone)
		assert.Equal(t, int64(90), res.Totals.CostMicros)
		require.Len(t, res.Series, 3)
		first := res.Series[0]
		assert.Equal(t, Dims{App: "alpha", Model: "gemma"}, first.Group)
		assert.Equal(t, int64(42), first.Totals.TotalTokens)
		require.Len(t, first.Points, 1, "both records fall in one minute")
		assert.Equal(t, time.Unix(Minute.Start(t0), 0).UTC(), first.Points[0].Start)

		for _, step := range []Resolution{Hour, Day} {
			r := query(t, s, Query{From: now.Add(-time.Hour), To: now.Add(time.Minute), Step: step})
			assert.Equal(t, res.Totals, r.Totals, "step %s", step)
			require.Len(t, r.Series, 1)
		}

		f := query(t, s, Query{From: now.Add(-time.Hour), To: now.Add(time.Minute), Models: []string{"gemma"}, GroupBy: []string{DimDeveloper}})
		assert.Equal(t, int64(3), f.Totals.Requests)
		require.Len(t, f.Series, 2)
		assert.Equal(t, "dev@alpha", f.Series[0].Group.Developer)

		scoped := query(t, s, Query{From: now.Add(-time.Hour), To: now.Add(time.Minute), Apps: []string{"beta"}, Scoped: true, ScopeApps: []string{"alpha"}})
		assert.Zero(t, scoped.Totals.Requests, "a scoped query never sees apps outside its scope")
		scoped = query(t, s, Query{From: now.Add(-time.Hour), To: now.Add(time.Minute), Scoped: true, ScopeApps: []string{"alpha"}})
		assert.Equal(t, int64(3), scoped.Totals.Requests)

		// The other handle (restart or replica) sees the same aggregates.
		assert.Equal(t, res.Totals, query(t, open(Config{}), q).Totals)
	})
}

func TestContractIdempotent(t *testing.T) {
	contract(t, func(t *testing.T, clk *clock, open func(Config) *Store) {
		ctx := context.Background()
		s := open(Config{})
		now := clk.Now()
		batch := []Record{rec("a", now, "app", "m", 1, 1, OutcomeOK, 200), rec("b", now, "app", "m", 2, 2, OutcomeOK, 200), rec("a", now, "app", "m", 1, 1, OutcomeOK, 200)}
		ack, err := s.Ingest(ctx, batch)
		require.NoError(t, err)
		assert.Equal(t, Ack{Accepted: 2, Duplicates: 1}, ack)
		ack, err = open(Config{}).Ingest(ctx, batch[:2])
		require.NoError(t, err)
		assert.Equal(t, Ack{Duplicates: 2}, ack, "a resend, even to another handle, is not counted")

		// Concurrent resends from several goroutines count each record once.
		var wg sync.WaitGroup
		other := open(Config{})
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				target := s
				if g%2 == 1 {
					target = other
				}
				recs := make([]Record, 50)
				for i := range recs {
					recs[i] = rec(fmt.Sprintf("c%d", i), now, "app", "m", 1, 0, OutcomeOK, 200)
				}
				_, err := target.Ingest(ctx, recs)
				assert.NoError(t, err)
			}()
		}
		wg.Wait()
		res := query(t, s, Query{From: now.Add(-time.Minute), To: now.Add(time.Minute), Step: Minute})
		assert.Equal(t, int64(52), res.Totals.Requests)
		assert.Equal(t, int64(56), res.Totals.TotalTokens)
	})
}

func TestContractLateInvalidAndRetention(t *testing.T) {
	contract(t, func(t *testing.T, clk *clock, open func(Config) *Store) {
		ctx := context.Background()
		s := open(Config{DedupeWindow: time.Hour, MinuteRetention: 10 * time.Minute})
		now := clk.Now()
		bad := rec("bad", now, "app", "m", -1, 0, OutcomeOK, 200)
		future := rec("future", now.Add(time.Hour), "app", "m", 1, 0, OutcomeOK, 200)
		ack, err := s.Ingest(ctx, []Record{
			rec("late", now.Add(-2*time.Hour), "app", "m", 1, 0, OutcomeOK, 200),
			bad, future,
			rec("old", now.Add(-50*time.Minute), "app", "m", 5, 0, OutcomeOK, 200),
		})
		require.NoError(t, err)
		assert.Equal(t, 1, ack.Accepted)
		assert.Equal(t, 1, ack.Expired, "older than the dedupe window: acknowledged, never counted")
		assert.Equal(t, 2, ack.Invalid)
		require.Len(t, ack.Errors, 2)
		assert.Equal(t, FieldError{Index: 1, Param: "prompt_tokens", Msg: "prompt_tokens must be between 0 and 2^40"}, ack.Errors[0])
		assert.Equal(t, "time", ack.Errors[1].Param)

		require.NoError(t, s.Prune(ctx))
		win := Query{From: now.Add(-time.Hour), To: now.Add(time.Minute)}
		win.Step = Minute
		assert.Zero(t, query(t, s, win).Totals.Requests, "minute buckets past their retention are gone")
		win.Step = Hour
		assert.Equal(t, int64(5), query(t, s, win).Totals.TotalTokens, "hour buckets are kept longer")

		// Past the dedupe window the id is forgotten, and so is any copy (too old).
		clk.Add(2 * time.Hour)
		require.NoError(t, s.Prune(ctx))
		ack, err = s.Ingest(ctx, []Record{rec("old", now.Add(-50*time.Minute), "app", "m", 5, 0, OutcomeOK, 200)})
		require.NoError(t, err)
		assert.Equal(t, Ack{Expired: 1}, ack)
	})
}

func TestQueryValidate(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 30, 15, 0, time.UTC)
	tests := []struct {
		name    string
		q       Query
		wantErr string
		from    time.Time
		to      time.Time
	}{
		{name: "rounds out to the step", q: Query{From: base, To: base.Add(time.Minute), Step: Hour},
			from: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), to: time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC)},
		{name: "default step hour", q: Query{From: base, To: base.Add(2 * time.Hour)},
			from: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), to: time.Date(2026, 3, 1, 15, 0, 0, 0, time.UTC)},
		{name: "empty range", q: Query{From: base, To: base, Step: Minute}, wantErr: "from must be before to"},
		{name: "bad step", q: Query{From: base, To: base.Add(time.Hour), Step: "week"}, wantErr: "want minute, hour or day"},
		{name: "bad group", q: Query{From: base, To: base.Add(time.Hour), GroupBy: []string{"key"}}, wantErr: "group_by \"key\""},
		{name: "twice", q: Query{From: base, To: base.Add(time.Hour), GroupBy: []string{"app", "app"}}, wantErr: "given twice"},
		{name: "too many buckets", q: Query{From: base, To: base.Add(30 * 24 * time.Hour), Step: Minute}, wantErr: "at most 10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.q.Validate()
			if tt.wantErr != "" {
				require.ErrorIs(t, err, ErrQuery)
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.from, tt.q.From)
			assert.Equal(t, tt.to, tt.q.To)
		})
	}
}
