package gate

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/apikey/policy"
	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/shared/cache"
	"github.com/tollgate/tollgate/shared/table"
)

// world is a set of fake workers (one Gate each) sharing one store and one
// keystore, with a manual clock.
type world struct {
	t     *testing.T
	now   time.Time
	pol   *policy.Policy
	store *table.MemStore
	calls []*call // callouts sent and not yet answered
	sent  int
}

type call struct {
	host *fakeHost
	body string
	done func(int, []byte)
}

type fakeHost struct {
	w        *world
	gate     *Gate
	finished map[uint32]policy.Decision
	tick     time.Duration
	events   map[Event]int
	refuse   bool
}

func (h *fakeHost) Now() time.Time { return h.w.now }

func (h *fakeHost) Dispatch(headers [][2]string, body []byte, timeout time.Duration, done func(int, []byte)) error {
	if h.refuse {
		return errors.New("cluster not found")
	}
	h.w.sent++
	h.w.calls = append(h.w.calls, &call{host: h, body: string(body), done: done})
	return nil
}

func (h *fakeHost) Finish(stream uint32, d policy.Decision) {
	_, dup := h.finished[stream]
	require.False(h.w.t, dup, "stream %d finished twice", stream)
	h.finished[stream] = d
}

func (h *fakeHost) SetTick(d time.Duration) { h.tick = d }
func (h *fakeHost) Count(e Event)           { h.events[e]++ }

func newWorld(t *testing.T, config string) *world {
	t.Helper()
	pol, err := policy.ParseConfig([]byte(config))
	require.NoError(t, err)
	return &world{t: t, now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC), pol: pol, store: table.NewMemStore()}
}

func (w *world) worker(owner uint64) *fakeHost {
	w.t.Helper()
	c, err := cache.New(w.store, cache.Options{Namespace: "t", MaxEntries: w.pol.Cache.MaxEntries})
	require.NoError(w.t, err)
	require.NoError(w.t, c.Init())
	h := &fakeHost{w: w, finished: map[uint32]policy.Decision{}, events: map[Event]int{}}
	h.gate = New(w.pol, c, h, owner)
	return h
}

// answer replies to every outstanding callout with status and body.
func (w *world) answer(status int, body string) {
	calls := w.calls
	w.calls = nil
	for _, c := range calls {
		c.done(status, []byte(body))
	}
}

const grantBody = `{"valid":true,"app":"demo","key_id":"key_1","entitlements":[{"product":"chat","allowed_models":["*"],"operations":[{"path":"/v1/**","methods":["*"]}]}]}`

var hashA = policy.HashKey("a")

func req(stream uint32) Request { return Request{Stream: stream, Method: "GET", Path: "/v1/models"} }

func TestMissThenHitInOneWorker(t *testing.T) {
	w := newWorld(t, ``)
	h := w.worker(1)
	_, done := h.gate.Check(req(1), hashA)
	require.False(t, done)
	require.Len(t, w.calls, 1)
	assert.JSONEq(t, `{"key_hash":"`+hashA+`"}`, w.calls[0].body)
	w.answer(200, grantBody)
	require.Contains(t, h.finished, uint32(1))
	assert.Equal(t, policy.Allowed, h.finished[1].Outcome)
	assert.Equal(t, "demo", h.finished[1].Identity.App)

	d, done := h.gate.Check(req(2), hashA)
	require.True(t, done)
	assert.Equal(t, policy.Allowed, d.Outcome)
	assert.Equal(t, 1, w.sent)
	assert.Equal(t, 1, h.events[CacheHit])
	assert.Equal(t, 1, h.events[CacheMiss])
	assert.Equal(t, 1, h.events[CalloutOK])
	assert.Equal(t, 0, h.gate.Waiting())
}

func TestSharedHitAcrossWorkers(t *testing.T) {
	w := newWorld(t, ``)
	a, b := w.worker(1), w.worker(2)
	_, done := a.gate.Check(req(1), hashA)
	require.False(t, done)
	w.answer(200, grantBody)
	d, done := b.gate.Check(req(1), hashA)
	require.True(t, done, "the other worker finds the answer in shared data")
	assert.Equal(t, policy.Allowed, d.Outcome)
	assert.Equal(t, 1, w.sent)
	assert.Equal(t, 1, b.events[CacheHit])
}

func TestCoalescingWithinAndAcrossWorkers(t *testing.T) {
	w := newWorld(t, `{"cache":{"negative_ttl":"5s"}}`)
	workers := []*fakeHost{w.worker(1), w.worker(2), w.worker(3)}
	const perWorker = 5
	for i, h := range workers {
		for s := range perWorker {
			_, done := h.gate.Check(req(uint32(s+1)), hashA)
			require.False(t, done, "worker %d stream %d", i, s)
		}
	}
	require.Equal(t, 1, w.sent, "one callout for 15 concurrent misses")
	assert.Equal(t, 5*time.Millisecond, workers[1].tick, "waiting workers poll")
	assert.Equal(t, time.Duration(0), workers[0].tick, "the claiming worker is woken by its callout")

	w.answer(200, `{"valid":false,"reason":"unknown_key"}`)
	for s := range perWorker {
		assert.Equal(t, policy.Invalid, workers[0].finished[uint32(s+1)].Outcome)
	}
	w.now = w.now.Add(5 * time.Millisecond)
	for _, h := range workers[1:] {
		h.gate.Tick()
		require.Len(t, h.finished, perWorker)
		for _, d := range h.finished {
			assert.Equal(t, policy.Invalid, d.Outcome)
			assert.Equal(t, 401, d.Error.Status)
		}
		assert.Equal(t, time.Duration(0), h.tick, "ticks stop when nobody waits")
		assert.Equal(t, perWorker, h.events[Coalesced])
	}
	assert.Equal(t, 1, w.sent)

	_, done := workers[2].gate.Check(req(99), hashA)
	assert.True(t, done, "negative answer cached")
	w.now = w.now.Add(5 * time.Second)
	_, done = workers[2].gate.Check(req(100), hashA)
	assert.False(t, done, "negative TTL over: a new callout")
	assert.Equal(t, 2, w.sent)
}

func TestClaimLapseTakeOver(t *testing.T) {
	w := newWorld(t, `{"keystore":{"timeout":"100ms"},"cache":{"coalesce_wait":"200ms"}}`)
	a, b := w.worker(1), w.worker(2)
	_, done := a.gate.Check(req(1), hashA)
	require.False(t, done)
	_, done = b.gate.Check(req(1), hashA)
	require.False(t, done)
	first := w.calls
	w.calls = nil

	// Worker a's callout never answers in time; b's wait is bounded.
	w.now = w.now.Add(100 * time.Millisecond)
	b.gate.Tick()
	assert.Empty(t, b.finished)
	assert.Equal(t, 1, w.sent, "still waiting within the bound")
	w.now = w.now.Add(100 * time.Millisecond)
	b.gate.Tick()
	require.Equal(t, 2, w.sent, "b takes the lapsed claim over and calls itself")
	w.answer(200, grantBody)
	assert.Equal(t, policy.Allowed, b.finished[1].Outcome)

	// The late answer of a's callout still finishes a's stream.
	first[0].done(0, nil)
	assert.Equal(t, policy.KeystoreError, a.finished[1].Outcome)
}

func TestFailureSharedBriefly(t *testing.T) {
	w := newWorld(t, `{"cache":{"error_ttl":"1s"}}`)
	a, b := w.worker(1), w.worker(2)
	_, _ = a.gate.Check(req(1), hashA)
	_, _ = b.gate.Check(req(1), hashA)
	w.answer(0, "")
	assert.Equal(t, policy.KeystoreError, a.finished[1].Outcome)
	assert.Equal(t, 503, a.finished[1].Error.Status)
	w.now = w.now.Add(5 * time.Millisecond)
	b.gate.Tick()
	assert.Equal(t, policy.KeystoreError, b.finished[1].Outcome, "waiters share the failure")
	assert.Equal(t, 1, a.events[CalloutError])

	w.now = w.now.Add(time.Second)
	_, done := b.gate.Check(req(2), hashA)
	assert.False(t, done, "after the error TTL the keystore is tried again")
}

func TestFailureNotCachedReleasesClaim(t *testing.T) {
	w := newWorld(t, `{"cache":{"error_ttl":"0s"}}`)
	a, b := w.worker(1), w.worker(2)
	_, _ = a.gate.Check(req(1), hashA)
	_, _ = b.gate.Check(req(1), hashA)
	w.answer(503, `oops`)
	assert.Equal(t, policy.KeystoreError, a.finished[1].Outcome)
	w.now = w.now.Add(5 * time.Millisecond)
	b.gate.Tick()
	assert.Empty(t, b.finished, "nothing cached: b claims and calls")
	assert.Equal(t, 2, w.sent)
	w.answer(200, grantBody)
	assert.Equal(t, policy.Allowed, b.finished[1].Outcome)
}

func TestFailOpen(t *testing.T) {
	w := newWorld(t, `{"failure_mode":"open"}`)
	h := w.worker(1)
	_, _ = h.gate.Check(req(1), hashA)
	w.answer(0, "")
	d := h.finished[1]
	assert.True(t, d.Pass)
	assert.Equal(t, policy.KeystoreError, d.Outcome)
	assert.Empty(t, d.Identity.App)
}

func TestDispatchRefused(t *testing.T) {
	w := newWorld(t, ``)
	a, b := w.worker(1), w.worker(2)
	a.refuse = true
	d, done := a.gate.Check(req(1), hashA)
	require.True(t, done)
	assert.Equal(t, 503, d.Error.Status)
	assert.Equal(t, 0, a.gate.Waiting())
	_, done = b.gate.Check(req(1), hashA)
	assert.False(t, done)
	assert.Equal(t, 1, w.sent, "the refused claim was released, so b calls at once")
}

func TestStreamEndsWhileWaiting(t *testing.T) {
	w := newWorld(t, ``)
	a, b := w.worker(1), w.worker(2)
	_, _ = a.gate.Check(req(1), hashA)
	_, _ = a.gate.Check(req(2), hashA)
	_, _ = b.gate.Check(req(1), hashA)
	a.gate.StreamDone(1)
	b.gate.StreamDone(1)
	w.now = w.now.Add(5 * time.Millisecond)
	b.gate.Tick()
	assert.Equal(t, time.Duration(0), b.tick, "no live waiter: ticks stop")
	w.answer(200, grantBody)
	assert.NotContains(t, a.finished, uint32(1))
	assert.Equal(t, policy.Allowed, a.finished[2].Outcome)
	assert.Empty(t, b.finished)
	d, done := b.gate.Check(req(3), hashA)
	assert.True(t, done, "the answer was cached although its requester left")
	assert.Equal(t, policy.Allowed, d.Outcome)
}

func TestForbiddenFromCachedGrant(t *testing.T) {
	w := newWorld(t, ``)
	h := w.worker(1)
	_, _ = h.gate.Check(req(1), hashA)
	w.answer(200, grantBody)
	d, done := h.gate.Check(Request{Stream: 2, Method: "GET", Path: "/admin"}, hashA)
	require.True(t, done)
	assert.Equal(t, policy.Forbidden, d.Outcome)
	assert.Equal(t, 1, w.sent, "authorisation of a new path needs no callout")
}

func TestLocalMode(t *testing.T) {
	pol, err := policy.ParseConfig([]byte(`{"local":{"keys":[{"hash":"` + hashA + `","app":"demo","products":["p"]}],"products":[{"name":"p","operations":[{"path":"/v1/**"}]}]}}`))
	require.NoError(t, err)
	w := newWorld(t, ``)
	h := &fakeHost{w: w, finished: map[uint32]policy.Decision{}, events: map[Event]int{}}
	g := New(pol, nil, h, 1)
	d, done := g.Check(req(1), hashA)
	require.True(t, done)
	assert.Equal(t, policy.Allowed, d.Outcome)
	d, done = g.Check(req(2), policy.HashKey("b"))
	require.True(t, done)
	assert.Equal(t, policy.Invalid, d.Outcome)
	assert.Equal(t, model.ReasonStatus(model.ReasonUnknownKey), d.Error.Status)
}

func TestManyKeysBounded(t *testing.T) {
	w := newWorld(t, `{"cache":{"max_entries":16}}`)
	h := w.worker(1)
	for i := range 200 {
		_, done := h.gate.Check(req(uint32(i+1)), policy.HashKey(fmt.Sprint(i)))
		require.False(t, done)
		w.answer(200, `{"valid":false,"reason":"unknown_key"}`)
	}
	assert.Equal(t, 4, w.store.Keys(), "16 entries in 4 sets of 4")
	assert.LessOrEqual(t, h.gate.memo.Len(), 16)
	for _, e := range Events {
		assert.NotEqual(t, "unknown", e.String())
	}
}
