package lease

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/shared/config"
)

// fakeKeystore implements the lease contract of /v1/quota/lease
// (docs/leases.md) and a direct reserve/settle, for one window that never
// ends: what the filter side relies on, with every amount checked.
type fakeKeystore struct {
	mu       sync.Mutex
	clock    *clock
	counters map[string]*fakeCounter
	nextID   int
	calls    int
	// forget, when set, drops every open lease (a keystore that lost them).
	fail bool
}

type fakeCounter struct {
	limit, usage int64
	leases       map[string]*fakeLease
	tombs        map[string]fakeLease // closed leases' last reports
	consumed     int64                // consumption reported by leases and settles
}

type fakeLease struct {
	held   int64
	expiry time.Time
	// seq and used are the last report applied (re-sends count once).
	seq, used int64
}

func newFakeKeystore(c *clock) *fakeKeystore {
	return &fakeKeystore{clock: c, counters: map[string]*fakeCounter{}}
}

// keyOf is the counter's key in a test's item (key and spec members).
func keyOf(ctr string) string {
	var it fakeItem
	if err := json.Unmarshal([]byte("{"+ctr+"}"), &it); err != nil {
		panic(err)
	}
	return string(it.Key)
}

// counterFor finds a counter by its key.
func (k *fakeKeystore) counterFor(key string, limit int64) *fakeCounter {
	c := k.counters[key]
	if c == nil {
		c = &fakeCounter{limit: limit, leases: map[string]*fakeLease{}, tombs: map[string]fakeLease{}}
		k.counters[key] = c
	}
	now := k.clock.Now()
	for id, l := range c.leases {
		if !now.Before(l.expiry) {
			c.usage -= l.held
			delete(c.leases, id)
		}
	}
	return c
}

type fakeItem struct {
	Key  json.RawMessage `json:"key"`
	Spec struct {
		Limit int64 `json:"limit"`
	} `json:"spec"`
	ID    string `json:"id"`
	Used  int64  `json:"used"`
	Want  int64  `json:"want"`
	Min   int64  `json:"min"`
	TTLMs int64  `json:"ttl_ms"`
	Seq   int64  `json:"seq"`
}

// lease serves one POST /v1/quota/lease body.
func (k *fakeKeystore) lease(t testing.TB, body []byte) (int, []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	if k.fail {
		return 503, []byte(`{"error":{"message":"down"}}`)
	}
	var req struct {
		Items []fakeItem `json:"items"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		t.Errorf("lease body %s: %v", body, err)
		return 400, nil
	}
	if len(req.Items) < 1 || len(req.Items) > MaxItems {
		t.Errorf("lease callout with %d items", len(req.Items))
	}
	var out []string
	for _, it := range req.Items {
		if it.Used < 0 || it.Want < 0 || it.Min < 0 || it.Min > it.Want {
			t.Errorf("bad item %+v", it)
		}
		c := k.counterFor(string(it.Key), it.Spec.Limit)
		l, lost := c.leases[it.ID], false

		if tomb, ok := c.tombs[it.ID]; l == nil && ok && it.Seq > 0 && it.Seq == tomb.seq {
			// A re-send of a report that closed the lease, or found it lost.
			it.Used = max(it.Used-tomb.used, 0)
		}
		if l != nil && it.Seq > 0 && it.Seq == l.seq {
			// A re-send: only what that report had not applied yet counts.
			if it.Used < l.used {
				t.Errorf("re-send of seq %d with used %d < %d", it.Seq, it.Used, l.used)
			}
			it.Used, l.used = it.Used-l.used, it.Used
		} else if l != nil {
			l.seq, l.used = it.Seq, it.Used
		}
		if l != nil {
			if it.Used > l.held {
				c.usage += it.Used - l.held
				l.held = 0
			} else {
				l.held -= it.Used
			}
		} else {
			c.usage += it.Used
			lost = it.ID != ""
			k.nextID++
			l = &fakeLease{}
			it.ID = fmt.Sprintf("l%d", k.nextID)
			c.leases[it.ID] = l
		}
		c.consumed += it.Used
		switch {
		case it.Want < l.held:
			c.usage -= l.held - it.Want
			l.held = it.Want
		case it.Want > l.held:
			g := min(it.Want-l.held, max(0, c.limit-c.usage))
			if l.held+g < it.Min {
				g = 0
			}
			l.held += g
			c.usage += g
		}
		id := it.ID
		if it.Want == 0 {
			c.tombs[id] = fakeLease{seq: l.seq, used: l.used}
			delete(c.leases, id)
			id = ""
		} else {
			l.expiry = k.clock.Now().Add(time.Duration(it.TTLMs) * time.Millisecond)
		}
		out = append(out, fmt.Sprintf(`{"id":%q,"held":%d,"used":%d,"limit":%d,"remaining":%d,"reset":0,"reset_after_ms":60000,"valid_for_ms":%d,"lost":%v}`,
			id, l.held, c.usage, c.limit, max(c.limit-c.usage, 0), it.TTLMs, lost))
	}
	return 200, []byte(`{"results":[` + strings.Join(out, ",") + `]}`)
}

// reserve is the direct path: all or nothing.
func (k *fakeKeystore) reserve(key string, limit, n int64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	c := k.counterFor(keyOf(key), limit)
	if c.usage+n > c.limit {
		return false
	}
	c.usage += n
	return true
}

// settle closes a direct reservation of n at actual.
func (k *fakeKeystore) settle(key string, n, actual int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := k.counterFor(keyOf(key), 0)
	c.usage += actual - n
	c.consumed += actual
}

// state is a counter's usage, consumption and open leases.
func (k *fakeKeystore) state(key string) (usage, consumed int64, leases int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := k.counterFor(keyOf(key), 0)
	return c.usage, c.consumed, len(c.leases)
}

func (k *fakeKeystore) callCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls
}

// clock is a settable clock shared by the workers of a test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// worker is one Envoy worker's host: its callouts wait until it delivers
// them, as proxy-wasm delivers answers on the worker that sent them.
type worker struct {
	t       testing.TB
	clock   *clock
	ks      *fakeKeystore
	queue   []func()
	refuse  bool // Dispatch fails
	dropped bool // answers never come back
}

func (w *worker) Now() time.Time { return w.clock.Now() }

func (w *worker) Dispatch(body []byte, done func(bool, int, []byte)) error {
	if w.refuse {
		return fmt.Errorf("no cluster")
	}
	w.queue = append(w.queue, func() {
		if w.dropped {
			done(true, 0, nil)
			return
		}
		st, b := w.ks.lease(w.t, body)
		done(false, st, b)
	})
	return nil
}

// deliver answers the callouts sent so far.
func (w *worker) deliver() {
	q := w.queue
	w.queue = nil
	for _, f := range q {
		f()
	}
}

// Duration converts for Config literals.
func Duration(d time.Duration) config.Duration { return config.Duration(d) }
