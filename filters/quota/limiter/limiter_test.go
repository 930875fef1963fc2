package limiter

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/countertest"
	"github.com/tollgate/tollgate/counter/httpapi"
	"github.com/tollgate/tollgate/counter/memstore"
	"github.com/tollgate/tollgate/filters/quota/policy"
	"github.com/tollgate/tollgate/shared/table"
	"github.com/tollgate/tollgate/window"
)

// keystore is the counter engine's real HTTP handler over a memory backend,
// on a manual clock; down makes it unreachable.
type keystore struct {
	eng     *counter.Engine
	handler http.Handler
	mu      sync.Mutex
	mode    string // "" ok, "failed" no answer, "503", "dispatch" refuse the call
	calls   int
}

func newKeystore(t testing.TB, clock *countertest.Clock) *keystore {
	t.Helper()
	ms, err := memstore.Open(memstore.Options{Clock: clock.Now})
	require.NoError(t, err)
	eng := counter.New(ms, counter.WithClock(clock.Now))
	t.Cleanup(func() { _ = eng.Close() })
	return &keystore{eng: eng, handler: httpapi.New(eng, httpapi.Options{Now: clock.Now})}
}

func (k *keystore) setMode(m string) {
	k.mu.Lock()
	k.mode = m
	k.mu.Unlock()
}

// used reads a counter without counting.
func (k *keystore) used(t *testing.T, key counter.Key, spec window.Spec) int64 {
	t.Helper()
	d, err := k.eng.Consume(context.Background(), key, spec, 0)
	require.NoError(t, err)
	return d.Used
}

// host is one worker's view of the proxy: the shared clock, the keystore,
// a queue of callout answers delivered by flush, metrics and warnings.
type host struct {
	clock   *countertest.Clock
	ks      *keystore
	mu      sync.Mutex
	queue   []func()
	metrics map[string]uint64
	warns   []string
}

func newHost(clock *countertest.Clock, ks *keystore) *host {
	return &host{clock: clock, ks: ks, metrics: map[string]uint64{}}
}

func (h *host) Now() time.Time { return h.clock.Now() }

func (h *host) Call(body []byte, done func(int, []byte, bool)) error {
	h.ks.mu.Lock()
	mode := h.ks.mode
	h.ks.calls++
	h.ks.mu.Unlock()
	if mode == "dispatch" {
		return errors.New("unknown cluster")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.queue = append(h.queue, func() {
		switch mode {
		case "failed":
			done(0, nil, true)
			return
		case "503":
			done(503, []byte(`{"error":{"message":"down","type":"server_error","code":"backend_unavailable"}}`), false)
			return
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/v1/quota/consume", strings.NewReader(string(body)))
		h.ks.handler.ServeHTTP(rec, req)
		b, _ := io.ReadAll(rec.Body)
		done(rec.Code, b, false)
	})
	return nil
}

// flush delivers every pending callout answer.
func (h *host) flush() {
	for {
		h.mu.Lock()
		if len(h.queue) == 0 {
			h.mu.Unlock()
			return
		}
		f := h.queue[0]
		h.queue = h.queue[1:]
		h.mu.Unlock()
		f()
	}
}

func (h *host) Count(name string, n uint64) {
	h.mu.Lock()
	h.metrics[name] += n
	h.mu.Unlock()
}

func (h *host) Warn(msg string) {
	h.mu.Lock()
	h.warns = append(h.warns, msg)
	h.mu.Unlock()
}

func (h *host) metric(name string) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.metrics[name]
}

func parse(t testing.TB, cfg string) *policy.Policy {
	t.Helper()
	p, err := policy.ParseConfig([]byte(cfg))
	require.NoError(t, err)
	return p
}

func newLimiter(t testing.TB, pol *policy.Policy, store *table.MemStore, h Host) *Limiter {
	t.Helper()
	l, err := New(pol, store, h)
	require.NoError(t, err)
	require.NoError(t, l.Init())
	return l
}

func req(path, user string) policy.Request {
	return policy.Request{Method: "POST", Path: path,
		Header:   func(n string) string { return map[string]string{"x-user": user}[n] },
		ClientIP: func() string { return "10.0.0.7:40000" }}
}

// check decides a request, delivering the callout answer when there is one.
func check(t *testing.T, l *Limiter, h *host, r policy.Request) Verdict {
	t.Helper()
	var got *Verdict
	v, done := l.Check(r, func(v Verdict) { got = &v })
	if done {
		return v
	}
	require.Nil(t, got, "resume must not run inside Check")
	h.flush()
	require.NotNil(t, got, "resume never ran")
	return *got
}

var t0 = countertest.T0

func TestStrict(t *testing.T) {
	clock := countertest.NewClock(t0.Add(15 * time.Second))
	ks := newKeystore(t, clock)
	h := newHost(clock, ks)
	pol := parse(t, `{"key_sources": [{"header": "x-user"}], "quotas": [{"limit": 3, "timeUnit": "minute"}]}`)
	l := newLimiter(t, pol, table.NewMemStore(), h)
	for i := range 3 {
		v := check(t, l, h, req("/v1/chat", "u1"))
		require.True(t, v.Pass, "request %d", i)
		assert.Equal(t, policy.Allowed, v.Outcome)
		require.NotNil(t, v.Rate)
		assert.Equal(t, policy.State{Allowed: true, Limit: 3, Remaining: int64(2 - i), Reset: t0.Add(time.Minute)}, *v.Rate)
	}
	v := check(t, l, h, req("/v1/chat", "u1"))
	assert.False(t, v.Pass)
	assert.Equal(t, policy.Denied, v.Outcome)
	assert.Equal(t, 429, v.Err.Status)
	assert.Equal(t, [][2]string{{"x-ratelimit-limit-requests", "3"}, {"x-ratelimit-remaining-requests", "0"},
		{"x-ratelimit-reset-requests", "45s"}, {"retry-after", "45"}}, v.Headers)
	v = check(t, l, h, req("/v1/chat", "u2"))
	assert.True(t, v.Pass, "another key has its own counter")
	assert.EqualValues(t, 3, ks.used(t, counter.Key{App: "hdr:x-user:u1", Product: "rule:default", Kind: counter.Requests},
		window.Spec{Limit: 3, Interval: 1, Unit: window.Minute, Kind: window.Calendar}))
	assert.EqualValues(t, 4, h.metric(policy.RequestsMetric(policy.Strict, policy.Allowed)))
	assert.EqualValues(t, 1, h.metric(policy.RequestsMetric(policy.Strict, policy.Denied)))
	assert.Equal(t, 5, ks.calls, "one callout per request")
}

func TestStrictAtomicBatch(t *testing.T) {
	clock := countertest.NewClock(t0)
	ks := newKeystore(t, clock)
	h := newHost(clock, ks)
	pol := parse(t, `{"key_sources": [{"header": "x-user"}], "quotas": [{"limit": 2, "timeUnit": "minute"}, {"limit": 5, "timeUnit": "hour"}]}`)
	l := newLimiter(t, pol, table.NewMemStore(), h)
	for range 2 {
		require.True(t, check(t, l, h, req("/", "u")).Pass)
	}
	v := check(t, l, h, req("/", "u"))
	require.False(t, v.Pass)
	hour := window.Spec{Limit: 5, Interval: 1, Unit: window.Hour, Kind: window.Calendar}
	assert.EqualValues(t, 2, ks.used(t, counter.Key{App: "hdr:x-user:u", Product: "rule:default", Kind: counter.Requests}, hour),
		"the hourly counter is not charged for a request the minute quota denied")
	assert.Equal(t, 1, ks.calls-2, "both counters in one callout")
}

func TestStrictFailureModes(t *testing.T) {
	for _, mode := range []string{"failed", "503", "dispatch"} {
		for _, fm := range []string{"open", "closed"} {
			t.Run(mode+"/"+fm, func(t *testing.T) {
				clock := countertest.NewClock(t0)
				ks := newKeystore(t, clock)
				ks.setMode(mode)
				h := newHost(clock, ks)
				pol := parse(t, `{"key_sources": [{"client_ip": true}], "failure_mode": "`+fm+`", "quotas": [{"limit": 1, "timeUnit": "minute"}]}`)
				l := newLimiter(t, pol, table.NewMemStore(), h)
				for range 5 {
					v := check(t, l, h, req("/", ""))
					if fm == "open" {
						assert.True(t, v.Pass)
						assert.Equal(t, policy.FailedOpen, v.Outcome)
						assert.Nil(t, v.Rate, "no made-up rate headers")
					} else {
						assert.False(t, v.Pass)
						assert.Equal(t, policy.FailedClosed, v.Outcome)
						assert.Equal(t, 503, v.Err.Status)
						assert.Equal(t, [][2]string{{"retry-after", "1"}}, v.Headers)
					}
				}
				assert.EqualValues(t, 5, h.metric(policy.KeystoreErrorsMetric("consume")))
				require.Len(t, h.warns, 1, "warnings are rate-limited")
				assert.Contains(t, h.warns[0], "keystore consume failed")
				clock.Advance(2 * time.Second)
				check(t, l, h, req("/", ""))
				require.Len(t, h.warns, 2)
				assert.Contains(t, h.warns[1], "4 similar warnings suppressed")
			})
		}
	}
}

func TestLocalSharedByWorkers(t *testing.T) {
	clock := countertest.NewClock(t0.Add(20 * time.Second))
	ks := newKeystore(t, clock)
	store := table.NewMemStore()
	pol := parse(t, `{"mode": "local", "key_sources": [{"client_ip": true}], "quotas": [{"limit": 4, "timeUnit": "minute", "window": "rolling"}]}`)
	hosts := []*host{newHost(clock, ks), newHost(clock, ks)}
	workers := []*Limiter{newLimiter(t, pol, store, hosts[0]), newLimiter(t, pol, store, hosts[1])}
	allowed := 0
	for i := range 6 {
		v := check(t, workers[i%2], hosts[i%2], req("/", ""))
		if v.Pass {
			allowed++
			assert.EqualValues(t, 4-allowed, v.Rate.Remaining)
		} else {
			assert.Equal(t, policy.Denied, v.Outcome)
			assert.Equal(t, "1m1s", v.Headers[2][1], "a rolling minute forgets usage up to one bucket (1s) late")
		}
	}
	assert.Equal(t, 4, allowed)
	assert.Zero(t, ks.calls, "local mode makes no callouts")
	clock.Advance(61 * time.Second)
	assert.True(t, check(t, workers[0], hosts[0], req("/", "")).Pass)
}

func TestSpikeArrest(t *testing.T) {
	clock := countertest.NewClock(t0)
	ks := newKeystore(t, clock)
	h := newHost(clock, ks)
	pol := parse(t, `{"mode": "local", "key_sources": [{"header": "x-user"}], "spike_arrest": {"rate": "30pm"}}`)
	l := newLimiter(t, pol, table.NewMemStore(), h)
	assert.True(t, check(t, l, h, req("/", "a")).Pass)
	v := check(t, l, h, req("/", "a"))
	assert.Equal(t, policy.SpikeDenied, v.Outcome)
	assert.Equal(t, "spike_arrest_violation", v.Err.Code)
	assert.Equal(t, [][2]string{{"x-ratelimit-reset-requests", "2s"}, {"retry-after", "2"}}, v.Headers)
	assert.True(t, check(t, l, h, req("/", "b")).Pass, "per key by default")
	clock.Advance(2 * time.Second)
	assert.True(t, check(t, l, h, req("/", "a")).Pass, "30pm admits one request every 2s")
}

func TestOutcomesWithoutCounting(t *testing.T) {
	clock := countertest.NewClock(t0)
	ks := newKeystore(t, clock)
	h := newHost(clock, ks)
	pol := parse(t, `{"key_sources": [{"identity": true}, {"header": "x-user"}], "quotas": [{"limit": 1, "timeUnit": "minute"}],
		"rules": [{"name": "free", "path": "/free", "identity_quota": false}]}`)
	l := newLimiter(t, pol, table.NewMemStore(), h)
	v := check(t, l, h, req("/free", "u"))
	assert.Equal(t, policy.Unlimited, v.Outcome)
	assert.True(t, v.Pass)
	v = check(t, l, h, req("/", ""))
	assert.Equal(t, policy.NoKey, v.Outcome)
	assert.True(t, v.Pass)
	bad := policy.Request{Method: "GET", Path: "/", Header: func(n string) string {
		return map[string]string{"x-tollgate-app": "a", "x-tollgate-request-quota": "nonsense"}[n]
	}}
	v = check(t, l, h, bad)
	assert.Equal(t, policy.Invalid, v.Outcome)
	assert.Equal(t, 500, v.Err.Status)
	assert.Zero(t, ks.calls)
	assert.EqualValues(t, 1, h.metric(policy.RequestsMetric(policy.Strict, policy.NoKey)))
}

// envoy is one simulated Envoy in async mode: two workers sharing a store.
type envoy struct {
	hosts   []*host
	workers []*Limiter
}

func newEnvoy(t *testing.T, pol *policy.Policy, clock *countertest.Clock, ks *keystore) *envoy {
	t.Helper()
	store := table.NewMemStore()
	e := &envoy{}
	for range 2 {
		h := newHost(clock, ks)
		e.hosts = append(e.hosts, h)
		e.workers = append(e.workers, newLimiter(t, pol, store, h))
	}
	return e
}

func (e *envoy) tick() {
	for i, w := range e.workers {
		w.Tick()
		e.hosts[i].flush()
	}
}

const asyncConfig = `{"mode": "async", "key_sources": [{"header": "x-user"}], "async": {"sync_period": "100ms"},
	"quotas": [{"limit": 100, "timeUnit": "minute"}]}`

var minute100 = window.Spec{Limit: 100, Interval: 1, Unit: window.Minute, Kind: window.Calendar}
var userKey = counter.Key{App: "hdr:x-user:u", Product: "rule:default", Kind: counter.Requests}

// TestAsyncBoundAndNoLoss: two Envoys with two workers each, 200 requests
// per second each, syncing every 100ms: the overshoot stays within the
// documented bound and the keystore ends up with every admitted request.
func TestAsyncBoundAndNoLoss(t *testing.T) {
	clock := countertest.NewClock(t0)
	ks := newKeystore(t, clock)
	pol := parse(t, asyncConfig)
	envoys := []*envoy{newEnvoy(t, pol, clock, ks), newEnvoy(t, pol, clock, ks)}
	admitted := 0
	const step = 5 * time.Millisecond
	for i := range 400 { // 2 s
		for _, e := range envoys {
			w := i % 2
			v := check(t, e.workers[w], e.hosts[w], req("/", "u"))
			if v.Pass {
				admitted++
			}
		}
		clock.Advance(step)
		if i%20 == 0 {
			for _, e := range envoys {
				e.tick()
			}
		}
	}
	for _, e := range envoys {
		e.tick()
	}
	// Bound: the other Envoy's admissions in 2 sync periods (callouts are instant here).
	bound := int(2 * 100 * time.Millisecond / step)
	t.Logf("admitted %d for a limit of 100; bound %d", admitted, 100+bound)
	assert.GreaterOrEqual(t, admitted, 100)
	assert.LessOrEqual(t, admitted, 100+bound)
	assert.EqualValues(t, admitted, ks.used(t, userKey, minute100), "every admitted request reached the keystore")
	assert.Zero(t, envoys[0].hosts[0].metric(policy.KeystoreErrorsMetric("sync")))
}

// TestAsyncOutageKeepsUsage: syncs that fail keep the usage pending, and it
// reaches the keystore once it is back; fail-closed rules refuse requests
// once syncing has failed for longer than 3 periods + timeout.
func TestAsyncOutageKeepsUsage(t *testing.T) {
	clock := countertest.NewClock(t0)
	ks := newKeystore(t, clock)
	pol := parse(t, `{"mode": "async", "key_sources": [{"header": "x-user"}], "async": {"sync_period": "100ms"},
		"keystore": {"timeout": "100ms"}, "quotas": [{"limit": 100, "timeUnit": "minute"}],
		"rules": [{"name": "closed", "path": "/closed", "failure_mode": "closed", "quotas": [{"limit": 100, "timeUnit": "minute"}]}]}`)
	e := newEnvoy(t, pol, clock, ks)
	for range 5 {
		require.True(t, check(t, e.workers[0], e.hosts[0], req("/", "u")).Pass)
	}
	e.tick()
	assert.EqualValues(t, 5, ks.used(t, userKey, minute100))

	ks.setMode("failed")
	for range 10 {
		clock.Advance(50 * time.Millisecond)
		require.True(t, check(t, e.workers[1], e.hosts[1], req("/", "u")).Pass, "open rules keep counting locally")
		e.tick()
	}
	assert.EqualValues(t, 5, ks.used(t, userKey, minute100))
	assert.NotZero(t, e.hosts[0].metric(policy.SyncsMetric("error"))+e.hosts[1].metric(policy.SyncsMetric("error")))
	v := check(t, e.workers[0], e.hosts[0], req("/closed", "u"))
	assert.Equal(t, policy.FailedClosed, v.Outcome, "no sync for 500ms > 3×100ms+100ms")
	assert.Equal(t, 503, v.Err.Status)

	ks.setMode("")
	clock.Advance(100 * time.Millisecond)
	e.tick()
	assert.EqualValues(t, 15, ks.used(t, userKey, minute100), "the outage lost no usage")
	assert.True(t, check(t, e.workers[0], e.hosts[0], req("/closed", "u")).Pass, "healthy again")
}

// TestAsyncTrackingEnds: a worker stops syncing counters idle for half
// their window (or a minute), after pushing what they hold.
func TestAsyncTrackingEnds(t *testing.T) {
	clock := countertest.NewClock(t0)
	ks := newKeystore(t, clock)
	pol := parse(t, `{"mode": "async", "key_sources": [{"header": "x-user"}], "quotas": [{"limit": 10, "interval": 2, "timeUnit": "second", "window": "rolling"}]}`)
	e := newEnvoy(t, pol, clock, ks)
	require.True(t, check(t, e.workers[0], e.hosts[0], req("/", "u")).Pass)
	assert.Equal(t, 1, e.workers[0].Tracked())
	clock.Advance(1500 * time.Millisecond)
	e.tick()
	assert.Equal(t, 1, e.workers[0].Tracked(), "pending usage is pushed before the counter is dropped")
	assert.EqualValues(t, 1, ks.used(t, counter.Key{App: "hdr:x-user:u", Product: "rule:default", Kind: counter.Requests},
		window.Spec{Limit: 10, Interval: 2, Unit: window.Second, Kind: window.Rolling}))
	clock.Advance(time.Second)
	e.tick()
	assert.Equal(t, 0, e.workers[0].Tracked())
}

func TestAsyncMultipleQuotasCountAllOrNone(t *testing.T) {
	clock := countertest.NewClock(t0)
	ks := newKeystore(t, clock)
	pol := parse(t, `{"mode": "async", "key_sources": [{"header": "x-user"}],
		"quotas": [{"limit": 2, "timeUnit": "minute"}, {"limit": 10, "timeUnit": "hour"}]}`)
	e := newEnvoy(t, pol, clock, ks)
	for range 2 {
		require.True(t, check(t, e.workers[0], e.hosts[0], req("/", "u")).Pass)
	}
	v := check(t, e.workers[0], e.hosts[0], req("/", "u"))
	require.Equal(t, policy.Denied, v.Outcome)
	e.tick()
	hour := window.Spec{Limit: 10, Interval: 1, Unit: window.Hour, Kind: window.Calendar}
	assert.EqualValues(t, 2, ks.used(t, counter.Key{App: "hdr:x-user:u", Product: "rule:default", Kind: counter.Requests}, hour))
}

// TestAsyncSyncCount: with async.sync_count, a counter is pushed as soon as
// that many requests are pending, before any tick; one push at a time.
func TestAsyncSyncCount(t *testing.T) {
	clock := countertest.NewClock(t0)
	ks := newKeystore(t, clock)
	pol := parse(t, `{"mode": "async", "key_sources": [{"header": "x-user"}], "async": {"sync_count": 3},
		"quotas": [{"limit": 100, "timeUnit": "minute"}]}`)
	e := newEnvoy(t, pol, clock, ks)
	for range 2 {
		require.True(t, check(t, e.workers[0], e.hosts[0], req("/", "u")).Pass)
	}
	assert.Zero(t, ks.calls)
	require.True(t, check(t, e.workers[1], e.hosts[1], req("/", "u")).Pass)
	assert.Equal(t, 1, ks.calls, "the third pending request triggers a push")
	for range 3 { // the push is still in flight: no second one
		require.True(t, check(t, e.workers[1], e.hosts[1], req("/", "u")).Pass)
	}
	assert.Equal(t, 1, ks.calls)
	e.hosts[1].flush()
	assert.EqualValues(t, 3, ks.used(t, userKey, minute100))
	require.True(t, check(t, e.workers[0], e.hosts[0], req("/", "u")).Pass)
	assert.Equal(t, 2, ks.calls, "4 pending after the push completed")
	e.hosts[0].flush()
	assert.EqualValues(t, 7, ks.used(t, userKey, minute100))
}
