package usagelog

// Events of a sender's records, for the filters' usage records metric
// (<filter>_usage_records_total.event.<event>): a record lost to a full
// backlog or a refused batch must show in the proxy's stats, not only in
// analytics that quietly count less.
const (
	EventQueued   = "queued"   // taken into the backlog
	EventSent     = "sent"     // acknowledged by the keystore
	EventRejected = "rejected" // in a batch the keystore refused as malformed: lost
	EventDropped  = "dropped"  // the oldest of a full backlog: lost
	EventRetried  = "retried"  // a batch sent again after a failure (batches, not records)
)

// Events lists the record events, so a filter can define its counters up front.
func Events() []string {
	return []string{EventQueued, EventSent, EventRejected, EventDropped, EventRetried}
}

// Export passes add what each counter grew by since the last Export (zero
// deltas too; the metrics kit skips them), so a filter's tick keeps its
// host counters equal to Stats.
func (s *Sender) Export(add func(event string, n uint64)) {
	cur, last := s.stats, s.exported
	add(EventQueued, cur.Queued-last.Queued)
	add(EventSent, cur.Sent-last.Sent)
	add(EventRejected, cur.Rejected-last.Rejected)
	add(EventDropped, cur.Dropped-last.Dropped)
	add(EventRetried, cur.Retries-last.Retries)
	s.exported = cur
}
