package limiter

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter/countertest"
	"github.com/tollgate/tollgate/filters/quota/policy"
	"github.com/tollgate/tollgate/shared/lease"
	"github.com/tollgate/tollgate/shared/table"
	"github.com/tollgate/tollgate/window"
)

// leaseHost posts a worker's lease callouts to the keystore's handler,
// answered when the worker flushes.
type leaseHost struct{ h *host }

func (l leaseHost) Now() time.Time { return l.h.clock.Now() }

func (l leaseHost) Dispatch(body []byte, done func(bool, int, []byte)) error {
	h := l.h
	h.ks.mu.Lock()
	h.ks.calls++
	h.ks.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.queue = append(h.queue, func() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, lease.Path, strings.NewReader(string(body)))
		h.ks.handler.ServeHTTP(rec, req)
		b, _ := io.ReadAll(rec.Body)
		done(false, rec.Code, b)
	})
	return nil
}

// leasedEnvoy is one Envoy of two workers whose strict rules admit from leases.
type leasedEnvoy struct {
	hosts   []*host
	workers []*Limiter
	leases  []*lease.Leases
}

func newLeasedEnvoy(t *testing.T, pol *policy.Policy, clock *countertest.Clock, ks *keystore) *leasedEnvoy {
	t.Helper()
	store := table.NewMemStore()
	e := &leasedEnvoy{}
	for range 2 {
		h := newHost(clock, ks)
		l := newLimiter(t, pol, store, h)
		ls, err := lease.New(store, leaseHost{h}, "tollgate.quota.lease.test", pol.Lease, time.Second)
		require.NoError(t, err)
		require.NoError(t, ls.Init())
		l.UseLeases(ls)
		e.hosts, e.workers, e.leases = append(e.hosts, h), append(e.workers, l), append(e.leases, ls)
	}
	return e
}

func (e *leasedEnvoy) tick(t *testing.T) {
	for i, ls := range e.leases {
		_, err := ls.Tick()
		require.NoError(t, err)
		e.hosts[i].flush()
	}
}

// TestStrictLeases: two Envoys of two workers admit a strict 100/minute
// quota from leases: never more than 100 in all, far fewer keystore calls
// than requests, and once the leases are idle and returned every unit is
// admitted: exactly 100, all counted by the keystore.
func TestStrictLeases(t *testing.T) {
	clock := countertest.NewClock(t0.Add(time.Second))
	ks := newKeystore(t, clock)
	pol := parse(t, `{"key_sources": [{"header": "x-user"}], "quotas": [{"limit": 100, "timeUnit": "minute"}],
		"lease": {"enabled": true, "idle": "2s"}}`)
	require.True(t, pol.Lease.Enabled)
	envs := []*leasedEnvoy{newLeasedEnvoy(t, pol, clock, ks), newLeasedEnvoy(t, pol, clock, ks)}
	spec := window.Spec{Limit: 100, Interval: 1, Unit: window.Minute, Kind: window.Calendar}
	admitted, requests := 0, 0
	send := func(n int) {
		for _, e := range envs {
			for i, w := range e.workers {
				for range n {
					requests++
					v := check(t, w, e.hosts[i], req("/v1/chat", "u"))
					if v.Pass {
						admitted++
						require.NotNil(t, v.Rate)
						assert.EqualValues(t, 100, v.Rate.Limit)
					} else {
						require.Equal(t, 429, v.Err.Status)
					}
				}
			}
		}
	}
	for range 10 { // 8 requests per round, a tick each 250ms
		send(2)
		clock.Advance(250 * time.Millisecond)
		for _, e := range envs {
			e.tick(t)
		}
		require.LessOrEqual(t, admitted, 100)
	}
	assert.Less(t, ks.calls, requests/2, "leases: far fewer keystore calls than requests")
	t.Logf("%d of %d requests admitted with %d keystore calls", admitted, requests, ks.calls)
	// Exhaust the rest, then let the leases go idle: what they held comes
	// back and is admitted, never more.
	for range 40 {
		send(3)
		clock.Advance(500 * time.Millisecond)
		for _, e := range envs {
			e.tick(t)
		}
		require.LessOrEqual(t, admitted, 100)
	}
	assert.Equal(t, 100, admitted, "every unit admitted once the leases came back")
	assert.EqualValues(t, 100, ks.used(t, userKey, spec), "every admitted request counted once")
}

// TestStrictLeasesAllOrNone: a request limited by two counters is admitted
// from the leases of both or from neither; a counter's lease that is short
// gives back what the other lease gave, and the keystore decides both at
// once. Both counters end at exactly the admitted requests.
func TestStrictLeasesAllOrNone(t *testing.T) {
	clock := countertest.NewClock(t0.Add(time.Second))
	ks := newKeystore(t, clock)
	pol := parse(t, `{"key_sources": [{"header": "x-user"}],
		"quotas": [{"limit": 1000, "timeUnit": "minute"}, {"limit": 30, "timeUnit": "hour"}],
		"lease": {"enabled": true, "idle": "2s"}}`)
	e := newLeasedEnvoy(t, pol, clock, ks)
	admitted := 0
	for range 30 {
		for i, w := range e.workers {
			for range 2 {
				if v := check(t, w, e.hosts[i], req("/v1/chat", "u")); v.Pass {
					admitted++
				}
			}
		}
		clock.Advance(250 * time.Millisecond)
		e.tick(t)
	}
	assert.Equal(t, 30, admitted, "the hourly 30 bind, exactly")
	clock.Advance(5 * time.Second) // idle: the leases go back
	e.tick(t)
	e.tick(t)
	minute := window.Spec{Limit: 1000, Interval: 1, Unit: window.Minute, Kind: window.Calendar}
	hour := window.Spec{Limit: 30, Interval: 1, Unit: window.Hour, Kind: window.Calendar}
	assert.EqualValues(t, admitted, ks.used(t, userKey, minute), "the minute counter counted every admitted request once")
	assert.EqualValues(t, admitted, ks.used(t, userKey, hour), "and the hour counter")
}
