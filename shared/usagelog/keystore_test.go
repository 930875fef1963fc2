//go:build !wasip1

// These tests feed the sender's output to the keystore's analytics store
// (bbolt does not build for wasip1, so they run natively only).
package usagelog

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/keystore/analytics"
	"github.com/tollgate/tollgate/keystore/store"
)

func decode(t *testing.T, body []byte) []analytics.Record {
	t.Helper()
	b, err := analytics.DecodeBatch(body)
	require.NoError(t, err)
	return b.Records
}

func TestRecordJSONIsWhatTheKeystoreReads(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("x", 3600))
	r := record(7, at)
	recs := decode(t, []byte(`{"records":[`+string(r.AppendJSON(nil))+`]}`))
	require.Len(t, recs, 1)
	got := recs[0]
	require.NoError(t, got.Validate(0, at, time.Minute))
	assert.Equal(t, analytics.Record{RequestID: "req-0007", Time: at.UTC(), App: "chat\"bot", Product: "chat", Developer: "ada@example.com",
		KeyID: "key_1", Model: "gemma-3-1b-it", PromptTokens: 10, CompletionTokens: 7, TotalTokens: 17, Cost: 0.25, Status: 200,
		Outcome: "ok", LatencyMS: 1}, got)
	minimal := Record{RequestID: "r", Time: at, Outcome: OutcomeAborted}
	assert.Equal(t, `{"request_id":"r","time":"2026-03-01T11:00:00.123456789Z","outcome":"aborted"}`, string(minimal.AppendJSON(nil)))
}

// TestSenderToKeystoreExactlyOnce drives a sender against a real analytics
// store whose answers get lost: every record is retried until acknowledged,
// and the store counts each once.
func TestSenderToKeystoreExactlyOnce(t *testing.T) {
	b, err := store.OpenBackend(context.Background(), store.BackendOptions{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	t0 := time.Now().UTC().Truncate(time.Second)
	st, err := analytics.Open(b, analytics.Config{Now: func() time.Time { return t0 }})
	require.NoError(t, err)

	h := &fakeHost{}
	s := New(settings(t, Config{MaxBatch: 64, FlushInterval: "10ms"}), h)
	var wantTokens int64
	for i := range 500 {
		r := record(i, t0)
		wantTokens += r.PromptTokens + r.CompletionTokens
		require.NoError(t, s.Report(r))
	}
	now := t0
	for step := 0; s.Pending() > 0; step++ {
		require.Less(t, step, 10000, "the sender never finished")
		now = now.Add(time.Minute)
		require.NoError(t, s.Tick(now))
		if h.pending == nil {
			continue
		}
		batch, err := analytics.DecodeBatch(h.posts[len(h.posts)-1])
		require.NoError(t, err)
		ack, err := st.Ingest(context.Background(), batch.Records)
		require.NoError(t, err)
		require.Zero(t, ack.Invalid, "%+v", ack.Errors)
		// Every third answer is lost on the way back, so the batch comes again.
		h.answer(t, step%3 == 0, 200)
	}
	res, err := st.Query(context.Background(), analytics.Query{From: t0.Add(-time.Minute), To: t0.Add(time.Minute), Step: analytics.Minute})
	require.NoError(t, err)
	assert.Equal(t, int64(500), res.Totals.Requests)
	assert.Equal(t, wantTokens, res.Totals.TotalTokens)
	assert.Equal(t, uint64(500), s.Stats().Sent)
	assert.Positive(t, s.Stats().Retries)
	assert.True(t, strings.HasPrefix(string(h.posts[0]), `{"records":[{"request_id":"req-0000"`))
}
