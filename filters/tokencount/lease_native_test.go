//go:build !wasip1

package tokencount

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/shared/lease"
)

// TestNativeLeases runs two workers of one Envoy on hosttest in front of the
// real counter engine's lease endpoint: the first request reserves at the
// keystore (no lease yet), the tick opens a lease, and later requests on
// either worker make no callout at all; every token is counted exactly once
// when the idle lease is returned.
func TestNativeLeases(t *testing.T) {
	ks := newKeystore(t)
	cfg := staticConfig(100000, `, "strict": {"enabled": true}, "lease": {"enabled": true, "ttl": "1s", "renew": "10ms", "idle": "50ms"}`)
	a := nativeGateway(t, cfg, ks, 200)
	b := a.NewWorker(t)
	assert.Equal(t, 10*time.Millisecond, a.TickPeriod())

	res := a.Do(chat(chatJSON+`}`, blue))
	require.Equal(t, 200, res.Status, string(res.Body))
	assert.Equal(t, 1, ks.count(meter.PathReserve), "no lease yet: reserved at the keystore")
	a.Tick()
	b.Tick()
	assert.Equal(t, 1, ks.count(lease.Path), "one lease callout, from the leader alone")

	for i := range 10 {
		w := a
		if i%2 == 1 {
			w = b
		}
		res := w.Do(chat(chatJSON+`}`, blue))
		require.Equal(t, 200, res.Status, string(res.Body))
		assert.NotEmpty(t, res.Header("x-ratelimit-remaining-tokens"))
	}
	assert.Equal(t, 1, ks.count(meter.PathReserve), "leased requests make no reserve callout")
	assert.Equal(t, 1, ks.count(meter.PathSettle), "nor a settle")
	assert.EqualValues(t, 10, a.Counter(meter.LeaseMetric(meter.LeaseTaken)))

	// Idle, the lease goes back: the keystore then counts exactly the
	// tokens used, 71 per request.
	deadline := time.Now().Add(5 * time.Second)
	for ks.used(t, teamKey("blue"), hourly(100000)) != 11*71 && time.Now().Before(deadline) {
		a.Tick()
		b.Tick()
		time.Sleep(10 * time.Millisecond) // the lease's idle time is wall-clock time
	}
	assert.EqualValues(t, 11*71, ks.used(t, teamKey("blue"), hourly(100000)))
	calls := ks.count(lease.Path)
	assert.Less(t, calls, 1000, "one callout per tick at most")
}
