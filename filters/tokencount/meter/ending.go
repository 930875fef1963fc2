package meter

// Ending is what a metered stream holds when it ends, the input of the one
// decision every stream end goes through (a finished answer, an upstream
// error, a client abort, an abandoned request).
type Ending struct {
	// Quota is the token quota that applied; nil when none did.
	Quota *Quota
	// FailOpen is set when the reservation failed and the request went on.
	FailOpen bool
	// Open is set while a reservation awaits its settle or release.
	Open bool
	// ReservationID names the open reservation.
	ReservationID string
	// Source is where the usage came from; SourceNone when nothing was seen.
	Source Source
	// Aborted is set when the stream was cut short.
	Aborted bool
	// ReleaseOnAbort is the on_abort: release setting.
	ReleaseOnAbort bool
	// Charged is the usage priced under the quota.
	Charged int64
}

// Settlement is the decision: the outcome to count and the keystore callout
// that closes the books.
type Settlement struct {
	// Outcome is counted in the requests metric; "" counts nothing.
	Outcome Outcome
	// Op is the callout's operation (OpSettle, OpRelease, OpConsume); ""
	// sends nothing.
	Op      string
	Callout Callout
}

// Decide is the settle/release table:
//
//	no quota                         → unmetered, no callout
//	failed open, usage seen          → fail_open, consume what was used
//	failed open, nothing seen        → fail_open, no callout
//	no open reservation              → nothing (already settled or refused)
//	nothing seen, or aborted+release → released, release the reservation
//	aborted                          → aborted, settle what was streamed
//	otherwise                        → settled, settle the usage
func (e Ending) Decide() Settlement {
	switch {
	case e.Quota == nil:
		return Settlement{Outcome: OutcomeUnmetered}
	case e.FailOpen:
		if e.Source == SourceNone {
			return Settlement{Outcome: OutcomeFailOpen}
		}
		return Settlement{Outcome: OutcomeFailOpen, Op: OpConsume, Callout: Record(e.Quota, e.Charged)}
	case !e.Open:
		return Settlement{}
	case e.Source == SourceNone || (e.Aborted && e.ReleaseOnAbort):
		return Settlement{Outcome: OutcomeReleased, Op: OpRelease, Callout: Release(e.ReservationID)}
	case e.Aborted:
		return Settlement{Outcome: OutcomeAborted, Op: OpSettle, Callout: Settle(e.ReservationID, e.Charged)}
	}
	return Settlement{Outcome: OutcomeSettled, Op: OpSettle, Callout: Settle(e.ReservationID, e.Charged)}
}
