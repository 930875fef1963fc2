package meter

import (
	"errors"
	"time"
)

// RetryHost is what the settle queue's producers and retries need from the
// proxy, so that queueing and retrying run (and are tested) as plain Go.
type RetryHost interface {
	// Add increases a counter.
	Add(name string, n int64)
	// Warn and Error log.
	Warn(msg string)
	Error(msg string)
	// Now is the current time.
	Now() time.Time
	// Dispatch sends a keystore callout; done runs with the answer (failed:
	// none came back). An error means it was not sent.
	Dispatch(c Callout, done func(failed bool, status int, body []byte)) error
}

// Enqueue keeps a settle or release the keystore did not take, for a later
// RetryDue, counting it as queued (and an entry it evicted as dropped). It
// reports whether the entry was queued.
func (q *SettleQueue) Enqueue(h RetryHost, op string, c Callout) bool {
	evicted, err := q.Push(op, c, h.Now())
	if err != nil {
		h.Add(SettleQueueMetric(QueueDropped), 1)
		h.Error("queue " + op + " for retry: " + err.Error())
		return false
	}
	h.Add(SettleQueueMetric(QueueQueued), 1)
	if evicted {
		h.Add(SettleQueueMetric(QueueDropped), 1)
		h.Error("settle queue full: an older entry was dropped")
	}
	return true
}

// RetryDue claims up to limit due entries (each for claimFor) and sends
// them again. An answer, or "not found" (an earlier attempt was counted, or
// the counter released the reservation), delivers the entry; a failure
// that may pass puts it back with a backoff; a refusal drops it. It
// returns the number of live entries seen (0: the queue is empty).
func (q *SettleQueue) RetryDue(h RetryHost, claimFor time.Duration, limit int) int {
	now := h.Now()
	pend, live, err := q.Claim(now, claimFor, limit)
	if err != nil {
		h.Warn("settle queue: " + err.Error())
	}
	for _, e := range pend {
		id, op := e.ID, e.Op
		err := h.Dispatch(e.Callout, func(failed bool, status int, body []byte) {
			_, err := ParseAnswer(failed, status, body)
			now := h.Now()
			switch {
			case err == nil || errors.Is(err, ErrNotFound):
				h.Add(SettleQueueMetric(QueueDelivered), 1)
				err = q.Delivered(id, now)
			case Retryable(failed, status):
				h.Add(SettleQueueMetric(QueueRetried), 1)
				err = q.Retry(id, now)
			default:
				h.Add(SettleQueueMetric(QueueDropped), 1)
				h.Error("queued " + op + " refused by the keystore: " + err.Error())
				err = q.Delivered(id, now)
			}
			if err != nil {
				h.Warn("settle queue: " + err.Error())
			}
		})
		if err != nil {
			h.Add(SettleQueueMetric(QueueRetried), 1)
			if err := q.Retry(id, now); err != nil {
				h.Warn("settle queue: " + err.Error())
			}
		}
	}
	return live
}
