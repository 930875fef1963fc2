package ledger

import (
	"encoding/binary"
	"time"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/table"
	"github.com/tollgate/tollgate/window"
)

// Spikes keeps spike-arrest states (a theoretical arrival time per id) in a
// table.Table: one smoothed rate per Envoy, shared by its workers.
type Spikes struct {
	t *table.Table
	// OnEvict, when set, is called when a live record had to be evicted.
	OnEvict func()
}

// NewSpikes returns spike-arrest states stored in t.
func NewSpikes(t *table.Table) *Spikes { return &Spikes{t: t} }

// Admit decides one request for id against rate with window.SpikeArrest and
// stores the new arrival time when admitted. retryAfter is set when denied.
func (s *Spikes) Admit(id string, rate window.Rate, burst int64, now time.Time) (allowed bool, retryAfter time.Duration, err error) {
	nowMs := now.UnixMilli()
	ev, err := s.t.Update("s|"+id, nowMs, func(old []byte, _ int64) ([]byte, int64, bool) {
		var tat time.Time
		if len(old) == 8 {
			tat = time.Unix(0, int64(binary.LittleEndian.Uint64(old)))
		}
		var next time.Time
		allowed, next, retryAfter = window.SpikeArrest(rate, tat, now, burst)
		if !allowed {
			return nil, 0, false
		}
		// Once now passes tat the state equals a fresh one, so it may go.
		return binary.LittleEndian.AppendUint64(nil, uint64(next.UnixNano())), ceilMs(next), true
	})
	if ev && s.OnEvict != nil {
		s.OnEvict()
	}
	if err != nil {
		return false, 0, config.Wrap("ledger: spike arrest: ", err, "")
	}
	return allowed, retryAfter, nil
}

// ceilMs is t in Unix milliseconds, rounded up.
func ceilMs(t time.Time) int64 {
	ns := t.UnixNano()
	ms := ns / 1e6
	if ns%1e6 > 0 {
		ms++
	}
	return ms
}
