package usagelog

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeHost is a callout whose answers the test gives.
type fakeHost struct {
	posts   [][]byte
	pending func(failed bool, status int)
	postErr error
}

func (h *fakeHost) Post(body []byte, done func(bool, int)) error {
	if h.postErr != nil {
		return h.postErr
	}
	h.posts = append(h.posts, body)
	h.pending = done
	return nil
}

// answer completes the pending callout.
func (h *fakeHost) answer(t *testing.T, failed bool, status int) {
	t.Helper()
	require.NotNil(t, h.pending, "no callout in flight")
	done := h.pending
	h.pending = nil
	done(failed, status)
}

// batchIDs returns the request ids of a posted batch, in order.
func batchIDs(t *testing.T, body []byte) []string {
	t.Helper()
	var b struct {
		Records []struct {
			RequestID string `json:"request_id"`
		} `json:"records"`
	}
	require.NoError(t, json.Unmarshal(body, &b))
	ids := make([]string, len(b.Records))
	for i, r := range b.Records {
		ids[i] = r.RequestID
	}
	return ids
}

func settings(t *testing.T, c Config) Settings {
	t.Helper()
	c.Enabled = true
	s, err := c.Compile()
	require.NoError(t, err)
	return s
}

func record(i int, at time.Time) *Record {
	return &Record{RequestID: fmt.Sprintf("req-%04d", i), Time: at, App: "chat\"bot", Product: "chat", Developer: "ada@example.com",
		KeyID: "key_1", Model: "gemma-3-1b-it", PromptTokens: 10, CompletionTokens: int64(i), Cost: 0.25, Status: 200,
		Outcome: OutcomeOK, Latency: 1500 * time.Microsecond}
}

func TestSenderBatchesAndRetries(t *testing.T) {
	h := &fakeHost{}
	s := New(settings(t, Config{MaxBatch: 200, FlushInterval: "1s"}), h)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 450 {
		require.NoError(t, s.Report(record(i, t0)))
	}
	assert.Empty(t, h.posts, "reporting never calls out")

	require.NoError(t, s.Tick(t0))
	require.Len(t, h.posts, 1)
	first := batchIDs(t, h.posts[0])
	require.Len(t, first, 200)
	assert.Equal(t, "req-0000", first[0])
	require.NoError(t, s.Tick(t0.Add(2*time.Second)))
	assert.Len(t, h.posts, 1, "one batch in flight per VM")

	h.answer(t, true, 0) // timeout: keep the batch, back off
	require.NoError(t, s.Tick(t0.Add(500*time.Millisecond)))
	assert.Len(t, h.posts, 1, "no retry before the backoff")
	require.NoError(t, s.Tick(t0.Add(1100*time.Millisecond)))
	require.Len(t, h.posts, 2)
	assert.Equal(t, h.posts[0], h.posts[1], "the same batch is retried")
	h.answer(t, false, 503)
	require.NoError(t, s.Tick(t0.Add(2*time.Second)))
	assert.Len(t, h.posts, 2, "backoff doubles to 2s after the second failure")
	require.NoError(t, s.Tick(t0.Add(3200*time.Millisecond)))
	require.Len(t, h.posts, 3)
	h.answer(t, false, 200)

	require.Len(t, h.posts, 4, "a full batch waiting follows the acknowledgement at once")
	second := batchIDs(t, h.posts[3])
	assert.Equal(t, "req-0200", second[0])
	h.answer(t, false, 400) // malformed for the keystore: dropped, never retried
	require.NoError(t, s.Tick(t0.Add(3300*time.Millisecond)))
	assert.Len(t, h.posts, 4, "the flush interval spaces partial batches")
	require.NoError(t, s.Tick(t0.Add(4300*time.Millisecond)))
	require.Len(t, h.posts, 5)
	assert.Len(t, batchIDs(t, h.posts[4]), 50)
	h.answer(t, false, 200)

	assert.Equal(t, Stats{Queued: 450, Sent: 250, Rejected: 200, Retries: 2}, s.Stats())
	assert.Zero(t, s.Pending())
}

// TestSenderKeepsUpWithLoad: a worker reporting far more than MaxBatch
// records per FlushInterval (2,000 between ticks) sends them all, one full
// batch per acknowledgement, instead of filling its backlog (in the VM's
// heap) and dropping the oldest.
func TestSenderKeepsUpWithLoad(t *testing.T) {
	h := &fakeHost{}
	s := New(settings(t, Config{MaxBatch: 200, FlushInterval: "1s"}), h)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sent := 0
	for tick := range 20 { // 5 s of ticks every 250 ms
		for i := range 2000 {
			require.NoError(t, s.Report(record(tick*2000+i, t0)))
		}
		require.NoError(t, s.Tick(t0.Add(time.Duration(tick)*250*time.Millisecond)))
		for h.pending != nil {
			sent += len(batchIDs(t, h.posts[len(h.posts)-1]))
			h.answer(t, false, 200)
		}
		assert.Less(t, s.Pending(), 200, "tick %d: only a partial batch waits", tick)
	}
	st := s.Stats()
	assert.Zero(t, st.Dropped)
	assert.EqualValues(t, st.Sent, sent)
	assert.EqualValues(t, 40000, st.Sent+uint64(s.Pending()))
}

func TestSenderBacklogIsBounded(t *testing.T) {
	h := &fakeHost{}
	s := New(settings(t, Config{MaxBatch: 100, MaxBacklog: 300}), h)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 1000 {
		require.NoError(t, s.Report(record(i, t0)))
	}
	assert.Equal(t, 300, s.Pending())
	assert.Equal(t, uint64(700), s.Stats().Dropped)
	require.NoError(t, s.Tick(t0))
	first := batchIDs(t, h.posts[0])
	assert.Equal(t, "req-0700", first[0], "the oldest records are dropped")

	h.postErr = errors.New("no cluster")
	h.answer(t, true, 0)
	assert.Error(t, s.Tick(t0.Add(time.Hour)))
	assert.Equal(t, 300, s.Pending(), "a failed dispatch keeps the batch")
}

func TestSenderDisabled(t *testing.T) {
	h := &fakeHost{}
	s := New(Settings{}, h)
	assert.ErrorIs(t, s.Report(record(1, time.Now())), ErrDisabled)
	require.NoError(t, s.Tick(time.Now()))
	assert.Empty(t, h.posts)
}

func TestConfigCompile(t *testing.T) {
	tests := []struct {
		name    string
		c       Config
		wantErr string
		want    Settings
	}{
		{name: "defaults", c: Config{Enabled: true}, want: Settings{Enabled: true, Path: "/v1/usage", FlushInterval: time.Second, MaxBatch: 200, MaxBacklog: 10000}},
		{name: "custom", c: Config{Path: "/u", FlushInterval: "250ms", MaxBatch: 1000, MaxBacklog: 1000},
			want: Settings{Path: "/u", FlushInterval: 250 * time.Millisecond, MaxBatch: 1000, MaxBacklog: 1000}},
		{name: "relative path", c: Config{Path: "v1/usage"}, wantErr: "must start with '/'"},
		{name: "query in path", c: Config{Path: "/v1/usage?x"}, wantErr: "cannot"},
		{name: "interval", c: Config{FlushInterval: "1ns"}, wantErr: "flush_interval"},
		{name: "batch", c: Config{MaxBatch: 1001}, wantErr: "max_batch"},
		{name: "backlog below batch", c: Config{MaxBatch: 100, MaxBacklog: 50}, wantErr: "max_backlog"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.Compile()
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestSenderExportsDeltas: each Export adds only what changed since the
// last one, so host counters summed over ticks equal Stats.
func TestSenderExportsDeltas(t *testing.T) {
	h := &fakeHost{}
	s := New(settings(t, Config{MaxBatch: 100, MaxBacklog: 300}), h)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	got := map[string]uint64{}
	export := func() {
		s.Export(func(ev string, n uint64) { got[ev] += n })
	}
	for i := range 400 {
		require.NoError(t, s.Report(record(i, t0)))
	}
	export()
	assert.Equal(t, map[string]uint64{EventQueued: 400, EventDropped: 100, EventSent: 0, EventRejected: 0, EventRetried: 0}, got)
	require.NoError(t, s.Tick(t0))
	h.answer(t, true, 0) // lost answer: retried
	require.NoError(t, s.Tick(t0.Add(time.Hour)))
	h.answer(t, false, 200) // acknowledged; the next full batch goes at once
	h.answer(t, false, 400) // refused as malformed
	export()
	export()
	assert.Equal(t, map[string]uint64{EventQueued: 400, EventDropped: 100, EventSent: 100, EventRejected: 100, EventRetried: 1}, got)
	st := s.Stats()
	assert.Equal(t, got, map[string]uint64{EventQueued: st.Queued, EventDropped: st.Dropped, EventSent: st.Sent, EventRejected: st.Rejected, EventRetried: st.Retries})
	assert.Len(t, Events(), len(got))
}
