package lease

import (
	"testing"
	"time"
)

// BenchmarkTakeSettle is the per-request work of a leased reservation
// natively, over the in-memory stand-in for shared data: one CAS to take,
// one to settle, no callout (a tick every 100 requests).
//
//	go test -run '^$' -bench TakeSettle ./shared/lease/
func BenchmarkTakeSettle(b *testing.B) {
	c := &clock{now: t0}
	ks := newFakeKeystore(c)
	e := newEnv(b, ks, settings(b, Config{Enabled: true, Max: 1 << 40}), 1)
	ctr := item("bench", 1<<50)
	w := e.workers[0]
	for range 10 { // the lease grows to a demand of 100 requests per tick
		for range 100 {
			if _, ok, _ := w.Take(ctr, 100); ok {
				_ = w.Settle(ctr, 100, 60)
			}
		}
		c.Advance(100 * time.Millisecond)
		e.tick(b)
	}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := w.Take(ctr, 100); err != nil || !ok {
			b.Fatalf("take: ok %v, err %v", ok, err)
		}
		if err := w.Settle(ctr, 100, 60); err != nil {
			b.Fatal(err)
		}
		if i++; i%100 == 0 {
			c.Advance(100 * time.Millisecond)
			e.tick(b)
		}
	}
}
