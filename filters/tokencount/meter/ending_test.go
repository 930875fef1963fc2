package meter

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestEndingDecide(t *testing.T) {
	q := &Quota{}
	const id = "res-1"
	tests := []struct {
		name string
		in   Ending
		want Settlement
	}{
		{"no quota: unmetered, no callout", Ending{Source: SourceUpstream, Charged: 71}, Settlement{Outcome: OutcomeUnmetered}},
		{"failed open with usage: consume it", Ending{Quota: q, FailOpen: true, Source: SourceUpstream, Charged: 71},
			Settlement{Outcome: OutcomeFailOpen, Op: OpConsume, Callout: Record(q, 71)}},
		{"failed open, nothing seen", Ending{Quota: q, FailOpen: true}, Settlement{Outcome: OutcomeFailOpen}},
		{"nothing open: nothing to do", Ending{Quota: q, Source: SourceUpstream, Charged: 71}, Settlement{}},
		{"nothing seen: release", Ending{Quota: q, Open: true, ReservationID: id},
			Settlement{Outcome: OutcomeReleased, Op: OpRelease, Callout: Release(id)}},
		{"aborted, on_abort release", Ending{Quota: q, Open: true, ReservationID: id, Source: SourceEstimated, Aborted: true, ReleaseOnAbort: true, Charged: 30},
			Settlement{Outcome: OutcomeReleased, Op: OpRelease, Callout: Release(id)}},
		{"aborted: settle what was streamed", Ending{Quota: q, Open: true, ReservationID: id, Source: SourceEstimated, Aborted: true, Charged: 30},
			Settlement{Outcome: OutcomeAborted, Op: OpSettle, Callout: Settle(id, 30)}},
		{"answered: settle the usage", Ending{Quota: q, Open: true, ReservationID: id, Source: SourceUpstream, Charged: 71},
			Settlement{Outcome: OutcomeSettled, Op: OpSettle, Callout: Settle(id, 71)}},
		{"unreadable answer: settle the reservation", Ending{Quota: q, Open: true, ReservationID: id, Source: SourceReservation, Charged: 300},
			Settlement{Outcome: OutcomeSettled, Op: OpSettle, Callout: Settle(id, 300)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.in.Decide())
		})
	}
}
