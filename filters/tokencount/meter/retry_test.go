package meter

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/table"
)

func TestSettleQueueRetryDue(t *testing.T) {
	tests := []struct {
		name    string
		refuse  error // Dispatch fails
		failed  bool
		status  int
		body    string
		event   string // the settle queue event counted
		stays   bool   // the entry is still queued
		errLogs int
	}{
		{name: "answered", status: 200, body: settled, event: QueueDelivered},
		{name: "not found: counted before", status: 200, body: `{"results":[{"error":{"code":"reservation_not_found","message":"gone"}}]}`, event: QueueDelivered},
		{name: "no answer", failed: true, event: QueueRetried, stays: true},
		{name: "5xx", status: 503, body: `{"error":{"message":"down"}}`, event: QueueRetried, stays: true},
		{name: "refused", status: 400, body: `{"error":{"message":"bad"}}`, event: QueueDropped, errLogs: 1},
		{name: "not sent", refuse: errors.New("no cluster"), event: QueueRetried, stays: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := NewSettleQueue(table.NewMemStore(), 64, time.Minute, 100*time.Millisecond)
			require.NoError(t, err)
			require.NoError(t, q.Init())
			h := newFakeStreamHost(nil)
			require.True(t, q.Enqueue(h, OpSettle, Settle("r1", 25)))
			assert.EqualValues(t, 1, h.counts[SettleQueueMetric(QueueQueued)])

			h.refuse = tt.refuse
			assert.Equal(t, 1, q.RetryDue(h, time.Second, 8))
			if tt.refuse == nil {
				require.Len(t, h.sent, 1)
				assert.Equal(t, Settle("r1", 25), h.sent[0])
				assert.Equal(t, 1, q.RetryDue(h, time.Second, 8), "a claimed entry is not sent twice")
				assert.Len(t, h.sent, 1)
				h.answer(t, tt.failed, tt.status, tt.body)
			}
			assert.EqualValues(t, 1, h.counts[SettleQueueMetric(tt.event)], "%v", h.counts)
			assert.Len(t, h.errs, tt.errLogs)
			h.now = h.now.Add(10 * time.Second) // past any backoff
			h.refuse = nil
			live := q.RetryDue(h, time.Second, 8)
			if tt.stays {
				assert.Equal(t, 1, live)
				assert.Len(t, h.pending, 1, "sent again after the backoff")
			} else {
				assert.Zero(t, live)
				assert.Empty(t, h.pending)
			}
		})
	}
}

func TestSettleQueueEnqueueRefused(t *testing.T) {
	q, err := NewSettleQueue(table.NewMemStore(), 8, time.Minute, time.Second)
	require.NoError(t, err)
	require.NoError(t, q.Init())
	h := newFakeStreamHost(nil)
	assert.False(t, q.Enqueue(h, OpConsume, Record(quota(10, 0), 5)), "a consume has no reservation to key it by")
	assert.EqualValues(t, 1, h.counts[SettleQueueMetric(QueueDropped)])
	assert.Len(t, h.errs, 1)
	for i := range 40 {
		q.Enqueue(h, OpSettle, Settle(string(rune('a'+i%26))+string(rune('A'+i/26)), 1))
	}
	assert.EqualValues(t, 40, h.counts[SettleQueueMetric(QueueQueued)])
	assert.Greater(t, h.counts[SettleQueueMetric(QueueDropped)], int64(1), "a full queue evicts, counted")
}
