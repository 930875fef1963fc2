package lease

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/table"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func item(app string, limit int64) string {
	return fmt.Sprintf(`"key":{"app":%q,"kind":"tokens"},"spec":{"limit":%d,"interval":1,"timeUnit":"minute"}`, app, limit)
}

func settings(t testing.TB, cfg Config) Settings {
	t.Helper()
	s, err := cfg.Compile(1000)
	require.NoError(t, err)
	return s
}

// env is one Envoy: shared data and its workers, over one keystore.
type env struct {
	store   *table.MemStore
	ks      *fakeKeystore
	clock   *clock
	hosts   []*worker
	workers []*Leases
}

func newEnv(t testing.TB, ks *fakeKeystore, s Settings, n int) *env {
	t.Helper()
	e := &env{store: table.NewMemStore(), ks: ks, clock: ks.clock}
	for range n {
		h := &worker{t: t, clock: ks.clock, ks: ks}
		l, err := New(e.store, h, "tollgate.lease.test", s, time.Second)
		require.NoError(t, err)
		require.NoError(t, l.Init())
		e.hosts = append(e.hosts, h)
		e.workers = append(e.workers, l)
	}
	return e
}

// tick runs every worker's tick and delivers the answers.
func (e *env) tick(t testing.TB) int {
	t.Helper()
	sent := 0
	for i, l := range e.workers {
		n, err := l.Tick()
		require.NoError(t, err)
		sent += n
		e.hosts[i].deliver()
	}
	return sent
}

func (e *env) rec(t testing.TB, counter string) record {
	t.Helper()
	v, _, ok, err := e.workers[0].table.Get(counter, ms(e.clock.Now()))
	require.NoError(t, err)
	if !ok {
		return record{}
	}
	r, err := decodeRecord(v)
	require.NoError(t, err)
	return r
}

func TestCompile(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		err  string
	}{
		{"defaults", Config{Enabled: true}, ""},
		{"short ttl", Config{TTL: Duration(500 * time.Millisecond)}, "lease.ttl"},
		{"renew too slow for ttl", Config{TTL: Duration(2 * time.Second), Renew: Duration(time.Second)}, "quarter"},
		{"negative max", Config{Max: -1}, "lease.max"},
		{"too many counters", Config{MaxCounters: 1 << 20}, "max_counters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.cfg.Compile(1000)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, DefaultTTL, s.TTL)
			assert.EqualValues(t, 1000, s.Max)
		})
	}
}

func TestRecordVersion1(t *testing.T) {
	v1 := []byte{1, 2, 'l', '1'}
	for _, v := range []int64{5, 3, 2, 0, 0, 9, 10, 100, 50, 7, 1, 1, 1, 4} {
		v1 = binary.AppendVarint(v1, v)
	}
	v1 = binary.AppendUvarint(v1, 77)
	r, err := decodeRecord(v1)
	require.NoError(t, err)
	assert.Equal(t, record{ID: "l1", Avail: 5, Inflight: 3, Pending: 2, Valid: 9, Expiry: 10, Limit: 100, Remaining: 50, Reset: 7,
		Demand: 1, Rate: 1, Peak: 1, LastUse: 4, Tag: 77}, r, "a record written before Seq still reads")
}

func TestRecordRoundTrip(t *testing.T) {
	r := record{ID: "l1", Avail: -3, Inflight: 7, Pending: 9, Sent: 2, Flight: 123, Tag: 1 << 63, Valid: 5, Expiry: 6,
		Limit: 1000, Remaining: 10, Reset: 99, Demand: 4, Rate: 3, Peak: 2, LastUse: 1, Seq: 12}
	got, err := decodeRecord(r.encode())
	require.NoError(t, err)
	assert.Equal(t, r, got)
	for _, bad := range [][]byte{{9}, {1, 200}, append(r.encode(), 0)} {
		_, err := decodeRecord(bad)
		assert.Error(t, err)
	}
}

// TestLifecycle walks one counter through its lease's life in one Envoy.
func TestLifecycle(t *testing.T) {
	c := &clock{now: t0}
	ks := newFakeKeystore(c)
	e := newEnv(t, ks, settings(t, Config{Enabled: true, Max: 500}), 2)
	ctr := item("a", 10000)
	w := e.workers[0]

	// No lease yet: the take falls back, and its demand is noted.
	_, ok, err := w.Take(ctr, 40)
	require.NoError(t, err)
	assert.False(t, ok, "no lease: fall back")
	assert.Empty(t, e.hosts[0].queue, "a new counter waits for the tick")
	assert.Equal(t, 1, e.tick(t), "one counter sent by the leader alone")
	r := e.rec(t, ctr)
	require.NotEmpty(t, r.ID)
	assert.EqualValues(t, 3*40+2*40, r.Avail, "want = 3×demand + 2×peak")
	usage, _, leases := ks.state(ctr)
	assert.EqualValues(t, 200, usage, "the held amount counts as used at the keystore")
	assert.Equal(t, 1, leases)

	// Takes from any worker draw locally; settle returns the unused part.
	g, ok, err := e.workers[1].Take(ctr, 50)
	require.NoError(t, err)
	require.True(t, ok)
	assert.EqualValues(t, 10000, g.Limit)
	assert.EqualValues(t, 9800+150, g.Remaining)
	require.NoError(t, w.Settle(ctr, 50, 30))
	r = e.rec(t, ctr)
	assert.EqualValues(t, 170, r.Avail)
	assert.EqualValues(t, 0, r.Inflight)
	assert.EqualValues(t, 30, r.Pending)
	_, ok, _ = w.Take(ctr, 171)
	assert.False(t, ok, "more than the lease holds falls back")

	// The next tick reports the 30 and resizes.
	calls := ks.callCount()
	c.Advance(time.Second)
	e.tick(t)
	assert.Equal(t, calls+1, ks.callCount(), "one callout per tick")
	_, consumed, _ := ks.state(ctr)
	assert.EqualValues(t, 30, consumed)
	r = e.rec(t, ctr)
	assert.EqualValues(t, 0, r.Pending)
	usage, _, _ = ks.state(ctr)
	assert.Equal(t, usage, 30+r.Avail, "usage = consumption + held")

	// Idle: the lease goes back, and with it every unused unit.
	for range 8 {
		c.Advance(time.Second)
		e.tick(t)
	}
	r = e.rec(t, ctr)
	assert.Empty(t, r.ID)
	usage, consumed, leases = ks.state(ctr)
	assert.EqualValues(t, 30, usage)
	assert.EqualValues(t, 30, consumed)
	assert.Equal(t, 0, leases)
	marks, _, err := w.activeSets()
	require.NoError(t, err)
	assert.Zero(t, countBits(marks), "an idle counter's set is no longer read by the leader")
	_, ok, _ = w.Take(ctr, 1)
	assert.False(t, ok)
	marks, _, err = w.activeSets()
	require.NoError(t, err)
	assert.Equal(t, 1, countBits(marks), "demand marks its set again")
	assert.Equal(t, 1, e.tick(t), "and the leader asks for a lease")
}

func countBits(b []byte) int {
	n := 0
	for _, x := range b {
		for ; x != 0; x &= x - 1 {
			n++
		}
	}
	return n
}

// TestShrinksNearTheLimit: a lease never holds more than half of what is
// free, and never more than max.
func TestShrinksNearTheLimit(t *testing.T) {
	c := &clock{now: t0}
	ks := newFakeKeystore(c)
	e := newEnv(t, ks, settings(t, Config{Enabled: true, Max: 300}), 1)
	ctr := item("a", 4000)
	w := e.workers[0]
	var helds []int64
	for range 25 {
		for range 10 {
			if _, ok, _ := w.Take(ctr, 20); ok {
				require.NoError(t, w.Settle(ctr, 20, 20))
			} else if ks.reserve(ctr, 4000, 20) {
				ks.settle(ctr, 20, 20)
			}
		}
		c.Advance(time.Second)
		e.tick(t)
		r := e.rec(t, ctr)
		assert.LessOrEqual(t, r.Avail, int64(300))
		helds = append(helds, r.Avail)
		usage, _, _ := ks.state(ctr)
		assert.LessOrEqual(t, usage, int64(4000))
		assert.LessOrEqual(t, r.Avail, (4000-usage+r.Avail)/2+1, "at most half of what is free")
		assert.LessOrEqual(t, r.Avail, int64(4000/MaxShare), "at most an eighth of the limit")
	}
	assert.Contains(t, helds, int64(300), "max caps a busy lease")
	assert.Less(t, helds[len(helds)-1], int64(50), "near the limit the lease shrinks")
	_, consumed, _ := ks.state(ctr)
	assert.LessOrEqual(t, consumed, int64(4000))
}

// TestExpiry: takes stop before a lease that is not renewed can expire,
// and at the window's end.
func TestExpiry(t *testing.T) {
	c := &clock{now: t0}
	ks := newFakeKeystore(c)
	s := settings(t, Config{Enabled: true, TTL: Duration(4 * time.Second)})
	e := newEnv(t, ks, s, 1)
	ctr := item("a", 1000)
	w := e.workers[0]
	w.Take(ctr, 10)
	e.tick(t)
	_, ok, _ := w.Take(ctr, 1)
	require.True(t, ok)
	c.Advance(2 * time.Second) // no renewal: half the TTL left
	_, ok, _ = w.Take(ctr, 1)
	assert.False(t, ok, "a lease about to expire covers nothing")
	require.NoError(t, w.Settle(ctr, 1, 1))

	// Valid (the window's end) bounds takes too.
	e.tick(t)
	_, err := w.table.Update(ctr, ms(c.Now()), func(old []byte, _ int64) ([]byte, int64, bool) {
		r, _ := decodeRecord(old)
		r.Valid = ms(c.Now())
		return r.encode(), ms(c.Now()) + 60000, true
	})
	require.NoError(t, err)
	_, ok, _ = w.Take(ctr, 1)
	assert.False(t, ok, "past valid_until")
	require.Len(t, e.hosts[0].queue, 1, "a take past the frame's end renews at once, not at the next tick")
	e.hosts[0].deliver()
	_, ok, _ = w.Take(ctr, 1)
	assert.True(t, ok, "the new frame's lease covers it")
}

// TestLostLeaseNeverDoubleCounts: the keystore lost the lease (it expired
// while the leader was away); its consumption is reported once, on a new lease.
func TestLostLeaseNeverDoubleCounts(t *testing.T) {
	c := &clock{now: t0}
	ks := newFakeKeystore(c)
	e := newEnv(t, ks, settings(t, Config{Enabled: true, TTL: Duration(4 * time.Second)}), 1)
	ctr := item("a", 1000)
	w := e.workers[0]
	w.Take(ctr, 100)
	e.tick(t)
	_, ok, _ := w.Take(ctr, 100)
	require.True(t, ok)
	require.NoError(t, w.Settle(ctr, 100, 70))
	c.Advance(5 * time.Second) // the lease expired at the keystore
	usage, _, leases := ks.state(ctr)
	assert.EqualValues(t, 0, usage, "an expired lease returns its held amount")
	assert.Equal(t, 0, leases)
	e.tick(t)
	r := e.rec(t, ctr)
	assert.NotEmpty(t, r.ID, "a new lease")
	usage, consumed, _ := ks.state(ctr)
	assert.EqualValues(t, 70, consumed, "reported once")
	assert.Equal(t, 70+r.Avail, usage)
}

// TestFailedCalloutsKeepConsumption: a refused or lost callout keeps the
// pending consumption for the next tick; a stale answer is ignored.
func TestFailedCalloutsKeepConsumption(t *testing.T) {
	c := &clock{now: t0}
	ks := newFakeKeystore(c)
	e := newEnv(t, ks, settings(t, Config{Enabled: true}), 1)
	ctr := item("a", 1000)
	w, h := e.workers[0], e.hosts[0]
	w.Take(ctr, 10)
	e.tick(t)
	_, ok, _ := w.Take(ctr, 10)
	require.True(t, ok)
	require.NoError(t, w.Settle(ctr, 10, 10))

	h.refuse = true
	c.Advance(time.Second)
	_, err := w.Tick()
	assert.Error(t, err)
	assert.EqualValues(t, 10, e.rec(t, ctr).Pending)
	h.refuse = false

	ks.fail = true
	c.Advance(time.Second)
	e.tick(t)
	assert.EqualValues(t, 10, e.rec(t, ctr).Pending, "a 503 keeps it pending")
	ks.fail = false

	// A callout whose answer never comes is given up after its timeout;
	// its late answer is then ignored.
	c.Advance(time.Second)
	_, err = w.Tick()
	require.NoError(t, err)
	late := h.queue
	h.queue = nil
	c.Advance(1500 * time.Millisecond)
	assert.Equal(t, 0, e.tick(t), "still in flight")
	c.Advance(time.Second)
	assert.Equal(t, 1, e.tick(t), "given up and sent again")
	for _, f := range late {
		f()
	}
	_, consumed, _ := ks.state(ctr)
	assert.EqualValues(t, 10, consumed, "the re-sent report and its late original count once (seq)")
	assert.EqualValues(t, 0, e.rec(t, ctr).Pending)
}

// TestLeader: one worker sends; another takes over when the leader stops.
func TestLeader(t *testing.T) {
	c := &clock{now: t0}
	ks := newFakeKeystore(c)
	e := newEnv(t, ks, settings(t, Config{Enabled: true}), 3)
	ctr := item("a", 1000)
	e.workers[1].Take(ctr, 10)
	n0, _ := e.workers[0].Tick()
	assert.Equal(t, 1, n0, "the first worker to tick leads and opens the lease")
	e.hosts[0].deliver()
	c.Advance(100 * time.Millisecond)
	n0, _ = e.workers[0].Tick()
	n1, _ := e.workers[1].Tick()
	assert.Equal(t, 1, n0, "the leader renews")
	assert.Equal(t, 0, n1, "not the leader")
	e.hosts[0].deliver()
	// The leader goes silent: after three ticks another worker leads.
	c.Advance(time.Second)
	n1, _ = e.workers[1].Tick()
	assert.Equal(t, 0, n1)
	c.Advance(2500 * time.Millisecond)
	n1, _ = e.workers[1].Tick()
	assert.Equal(t, 1, n1, "took over")
}

func TestSpecLimit(t *testing.T) {
	assert.EqualValues(t, 1000, specLimit(item("a", 1000)))
	assert.EqualValues(t, -1, specLimit(`"key":{"app":"a"}`))
	assert.EqualValues(t, -1, specLimit(`"key":{},"spec":{"limit":x}`))
}

// TestLeaseHoldsAtMostAnEighth: whatever the demand, a lease holds at most
// an eighth of its counter's limit, the first one too (before the keystore
// has said what is free).
func TestLeaseHoldsAtMostAnEighth(t *testing.T) {
	c := &clock{now: t0}
	ks := newFakeKeystore(c)
	e := newEnv(t, ks, settings(t, Config{Enabled: true, Max: 100000}), 1)
	ctr := item("a", 3000)
	for range 40 {
		e.workers[0].Take(ctr, 563)
	}
	e.tick(t)
	assert.EqualValues(t, 3000/MaxShare, e.rec(t, ctr).Avail)
}

// TestConsume: consumption known up front is drawn and recorded in one step.
func TestConsume(t *testing.T) {
	c := &clock{now: t0}
	ks := newFakeKeystore(c)
	e := newEnv(t, ks, settings(t, Config{Enabled: true}), 1)
	ctr := item("r", 1000)
	w := e.workers[0]
	_, ok, err := w.Consume(ctr, 1)
	require.NoError(t, err)
	assert.False(t, ok, "no lease yet")
	e.tick(t)
	before := e.rec(t, ctr)
	require.NotEmpty(t, before.ID)
	g, ok, err := w.Consume(ctr, 1)
	require.NoError(t, err)
	require.True(t, ok)
	after := e.rec(t, ctr)
	assert.Equal(t, before.Avail-1, after.Avail)
	assert.Equal(t, before.Pending+1, after.Pending)
	assert.Zero(t, after.Inflight)
	assert.EqualValues(t, 1000, g.Limit)
	c.Advance(time.Second)
	e.tick(t)
	_, consumed, _ := ks.state(ctr)
	assert.EqualValues(t, 1, consumed, "reported by the next tick")
}

func TestSettleOfAGoneRecord(t *testing.T) {
	c := &clock{now: t0}
	e := newEnv(t, newFakeKeystore(c), settings(t, Config{Enabled: true}), 1)
	assert.ErrorIs(t, e.workers[0].Settle(item("x", 10), 5, 5), ErrLost)
}

// TestConcurrentTakers: two Envoys of four workers each (goroutines over a
// CAS store) take and settle against one keystore at once, leases renewing
// on every worker's tick, with a direct reservation when the lease is
// short. The keystore never counts above the limit, every unit consumed
// is counted exactly once, and once idle every lease is returned.
func TestConcurrentTakers(t *testing.T) {
	const limit = 40000
	c := &clock{now: t0}
	ks := newFakeKeystore(c)
	s := settings(t, Config{Enabled: true, Max: 4000, Renew: Duration(50 * time.Millisecond), Idle: Duration(2 * time.Second)})
	envs := []*env{newEnv(t, ks, s, 4), newEnv(t, ks, s, 4)}
	ctr := item("busy", limit)
	var mu sync.Mutex
	var consumed, leased, direct int64
	var wg sync.WaitGroup
	for _, e := range envs {
		for i, w := range e.workers {
			h := e.hosts[i]
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(i), 7))
				var mine, viaLease, viaDirect int64
				next := c.Now()
				for range 600 {
					n := 1 + rng.Int64N(40)
					actual := rng.Int64N(n + 1)
					_, ok, err := w.Take(ctr, n)
					if err != nil {
						t.Error(err)
						return
					}
					switch {
					case ok:
						if err := w.Settle(ctr, n, actual); err != nil {
							t.Error(err)
							return
						}
						mine += actual
						viaLease++
					case ks.reserve(ctr, limit, n):
						ks.settle(ctr, n, actual)
						mine += actual
						if u, _, _ := ks.state(ctr); u < limit/2 {
							viaDirect++
						}
					}
					// Every request takes a millisecond; each worker ticks on
					// its own schedule and handles its callouts' answers.
					c.Advance(time.Millisecond)
					if now := c.Now(); !now.Before(next) {
						next = now.Add(s.Renew)
						if _, err := w.Tick(); err != nil {
							t.Error(err)
						}
					}
					h.deliver()
					usage, _, _ := ks.state(ctr)
					if usage > limit {
						t.Errorf("keystore usage %d above the limit", usage)
					}
				}
				mu.Lock()
				consumed += mine
				leased += viaLease
				direct += viaDirect
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	// Idle: ticks report the rest and return every lease.
	for range 10 {
		c.Advance(time.Second)
		for _, e := range envs {
			e.tick(t)
		}
	}
	usage, reported, leases := ks.state(ctr)
	assert.Equal(t, 0, leases, "idle leases returned")
	assert.Equal(t, consumed, reported, "every unit counted once")
	assert.Equal(t, consumed, usage)
	assert.LessOrEqual(t, consumed, int64(limit))
	assert.Greater(t, leased, 3*direct, "far from the limit, most requests are served from leases")
	t.Logf("consumed %d of %d; %d takes from leases, %d direct far from the limit; %d keystore calls", consumed, limit, leased, direct, ks.callCount())
}

// TestTickSendsTheLeasesClosestToExpiryFirst checks a tick with more
// active counters than one callout carries sends those with no lease or
// the earliest expiry first, and the rest on the next tick.
func TestTickSendsTheLeasesClosestToExpiryFirst(t *testing.T) {
	c := &clock{now: t0}
	ks := newFakeKeystore(c)
	e := newEnv(t, ks, settings(t, Config{Enabled: true, Max: 500, MaxCounters: 4 * MaxItems}), 1)
	ctrs := make([]string, 2*MaxItems)
	for i := range ctrs {
		ctrs[i] = item("app"+strconv.Itoa(i), 1_000_000)
		_, ok, err := e.workers[0].Take(ctrs[i], 1)
		require.NoError(t, err)
		require.False(t, ok, "no lease yet")
	}
	require.Equal(t, MaxItems, e.tick(t), "one callout carries at most MaxItems counters")
	leased := 0
	for _, ctr := range ctrs {
		if e.rec(t, ctr).ID != "" {
			leased++
		}
	}
	require.Equal(t, MaxItems, leased)

	c.Advance(300 * time.Millisecond)
	require.Equal(t, MaxItems, e.tick(t))
	for _, ctr := range ctrs {
		assert.NotEmpty(t, e.rec(t, ctr).ID, "%s: a counter without a lease goes before leases far from expiry", ctr)
	}
}
