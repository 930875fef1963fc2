package analytics

import (
	"bytes"
	"context"
	"encoding/csv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func recordIDs(res RawResult) []string {
	ids := make([]string, 0, len(res.Records))
	for _, r := range res.Records {
		ids = append(ids, r.RequestID)
	}
	return ids
}

func TestContractRawRecords(t *testing.T) {
	contract(t, func(t *testing.T, clk *clock, open func(Config) *Store) {
		ctx := context.Background()

		off := open(Config{})
		assert.False(t, off.RawEnabled())
		_, err := off.Records(ctx, RawQuery{From: clk.Now().Add(-time.Hour), To: clk.Now()})
		require.ErrorIs(t, err, ErrRawOff, "off by default")

		s := open(Config{RawRetention: 2 * time.Hour})
		require.True(t, s.RawEnabled())
		now := clk.Now()
		old := now.Add(-50 * time.Minute)
		ack, err := s.Ingest(ctx, []Record{
			rec("r2", now.Add(-10*time.Minute), "alpha", "gemma", 20, 7, OutcomeOK, 200),
			rec("r1", old, "alpha", "gemma", 10, 5, OutcomeOK, 200),
			rec("r3", now, "beta", "llama", 3, 0, OutcomeAborted, 0),
			rec("r1", old, "alpha", "gemma", 10, 5, OutcomeOK, 200), // a retry: kept once
		})
		require.NoError(t, err)
		assert.Equal(t, Ack{Accepted: 3, Duplicates: 1}, ack)
		_, err = s.Ingest(ctx, []Record{rec("r2", now.Add(-10*time.Minute), "alpha", "gemma", 20, 7, OutcomeOK, 200)})
		require.NoError(t, err)

		all := RawQuery{From: now.Add(-time.Hour), To: now.Add(time.Second)}
		res, err := s.Records(ctx, all)
		require.NoError(t, err)
		assert.Equal(t, []string{"r1", "r2", "r3"}, recordIDs(res), "oldest first, each once")
		assert.False(t, res.Truncated)
		want := rec("r1", old, "alpha", "gemma", 10, 5, OutcomeOK, 200)
		want.TotalTokens = 15 // filled by validation
		got := res.Records[0]
		assert.True(t, want.Time.Equal(got.Time))
		got.Time = want.Time
		assert.Equal(t, want, got, "the record as sent")

		// The same filters and scope as the aggregates.
		for _, c := range []struct {
			q    RawQuery
			want []string
		}{
			{RawQuery{Apps: []string{"beta"}}, []string{"r3"}},
			{RawQuery{Models: []string{"gemma"}}, []string{"r1", "r2"}},
			{RawQuery{Developers: []string{"dev@alpha"}, Apps: []string{"beta"}}, []string{}},
			{RawQuery{Scoped: true, ScopeApps: []string{"alpha"}, Apps: []string{"alpha", "beta"}}, []string{"r1", "r2"}},
			{RawQuery{Scoped: true}, []string{}},
			{RawQuery{From: now.Add(-10 * time.Minute), To: now}, []string{"r2"}},
		} {
			q := c.q
			if q.From.IsZero() {
				q.From, q.To = all.From, all.To
			}
			res, err := s.Records(ctx, q)
			require.NoError(t, err)
			assert.Equal(t, c.want, recordIDs(res), "%+v", c.q)
		}
		res, err = s.Records(ctx, RawQuery{From: all.From, To: all.To, Limit: 2})
		require.NoError(t, err)
		assert.Equal(t, []string{"r1", "r2"}, recordIDs(res))
		assert.True(t, res.Truncated)
		for _, bad := range []RawQuery{{From: all.To, To: all.From}, {From: all.From, To: all.To, Limit: MaxRawLimit + 1}, {From: all.From, To: all.To, Limit: -1}} {
			_, err := s.Records(ctx, bad)
			require.ErrorIs(t, err, ErrQuery, "%+v", bad)
		}

		// Another replica (Redis) or a restart (bbolt) sees them too.
		res, err = open(Config{RawRetention: 2 * time.Hour}).Records(ctx, all)
		require.NoError(t, err)
		assert.Len(t, res.Records, 3)

		// Retention: 80 minutes later r1 (50 minutes old then) is past 2 h.
		clk.Add(80 * time.Minute)
		require.NoError(t, s.Prune(ctx))
		res, err = s.Records(ctx, RawQuery{From: now.Add(-3 * time.Hour), To: clk.Now()})
		require.NoError(t, err)
		assert.Equal(t, []string{"r2", "r3"}, recordIDs(res))
		agg := query(t, s, Query{From: now.Add(-time.Hour), To: now.Add(time.Minute), Step: Hour})
		assert.Equal(t, int64(3), agg.Totals.Requests, "aggregates keep their own retention")

		// Turning raw records off deletes the ones kept.
		require.NoError(t, off.Prune(ctx))
		res, err = open(Config{RawRetention: time.Hour}).Records(ctx, RawQuery{From: now.Add(-3 * time.Hour), To: clk.Now()})
		require.NoError(t, err)
		assert.Empty(t, res.Records)
	})
}

func TestWriteRecordsCSV(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	r := rec("r1", at, "=cmd|' /C calc'!A0", "gemma", 10, 5, OutcomeOK, 200)
	r.TotalTokens = 15
	var buf bytes.Buffer
	require.NoError(t, WriteRecordsCSV(&buf, RawResult{Records: []Record{r}}))
	rows, err := csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 2)
	assert.Equal(t, rawCSVHeader, rows[0])
	assert.Equal(t, []string{"r1", "2026-12-07T10:00:00Z", "'=cmd|' /C calc'!A0", "chat", "dev@=cmd|' /C calc'!A0", "key_=cmd|' /C calc'!A0",
		"gemma", "10", "5", "15", "0.000030", "200", "ok", "100"}, rows[1])
}
