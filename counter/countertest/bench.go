package countertest

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/window"
)

// benchKeys is how many distinct apps the benchmarks spread load over.
const benchKeys = 1024

func benchSpec(b *testing.B, kind string) window.Spec {
	b.Helper()
	s, err := window.NewSpec(window.MaxLimit, 1, "hour", kind)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchKey(i uint64) counter.Key {
	return counter.Key{App: "app" + strconv.FormatUint(i%benchKeys, 10), Product: "gold", Kind: counter.Requests}
}

func reportRate(b *testing.B, start time.Time, count int64, unit string) {
	b.Helper()
	if el := time.Since(start).Seconds(); el > 0 {
		b.ReportMetric(float64(count)/el, unit)
	}
}

// BenchConsume measures Consume decisions per second with parallelism
// goroutines per GOMAXPROCS, over benchKeys keys.
func BenchConsume(b *testing.B, eng *counter.Engine, kind string, parallelism int) {
	s := benchSpec(b, kind)
	var seq, n atomic.Uint64
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			d, err := eng.Consume(ctx, benchKey(seq.Add(1)), s, 1)
			if err != nil || !d.Allowed {
				b.Errorf("consume: %v %+v", err, d)
				return
			}
			n.Add(1)
		}
	})
	reportRate(b, start, int64(n.Load()), "decisions/s")
}

// BenchConsumeBatch measures decisions per second when each call carries
// size requests.
func BenchConsumeBatch(b *testing.B, eng *counter.Engine, size, parallelism int) {
	s := benchSpec(b, "calendar")
	var seq, n atomic.Uint64
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		reqs := make([]counter.Request, size)
		for pb.Next() {
			for i := range reqs {
				reqs[i] = counter.Request{Key: benchKey(seq.Add(1)), Spec: s, N: 1}
			}
			if _, err := eng.ConsumeBatch(ctx, reqs, false); err != nil {
				b.Errorf("consume batch: %v", err)
				return
			}
			n.Add(uint64(size))
		}
	})
	reportRate(b, start, int64(n.Load()), "decisions/s")
}

// BenchReserveSettle measures reserve+settle pairs per second.
func BenchReserveSettle(b *testing.B, eng *counter.Engine, parallelism int) {
	s := benchSpec(b, "rolling")
	var seq, n atomic.Uint64
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			k := benchKey(seq.Add(1))
			k.Kind = counter.Tokens
			r, err := eng.Reserve(ctx, k, s, 4096, time.Minute)
			if err != nil || !r.Allowed {
				b.Errorf("reserve: %v %+v", err, r)
				return
			}
			if _, err := eng.Settle(ctx, r.ID, 1234); err != nil {
				b.Errorf("settle: %v", err)
				return
			}
			n.Add(1)
		}
	})
	reportRate(b, start, int64(n.Load()), "pairs/s")
}

// BenchLeaseBatch measures lease items per second when each call carries
// size leases, as one Envoy's tick does: each caller keeps size leases open
// on its own counters and reports half of each held amount as used while
// topping it up again.
func BenchLeaseBatch(b *testing.B, eng *counter.Engine, size, parallelism int) {
	s := benchSpec(b, "calendar")
	var callers, n atomic.Uint64
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		c := callers.Add(1)
		reqs := make([]counter.LeaseRequest, size)
		for i := range reqs {
			k := counter.Key{App: "lease" + strconv.FormatUint(c, 10), Product: "gold", Kind: counter.Kind("k" + strconv.Itoa(i))}
			reqs[i] = counter.LeaseRequest{Key: k, Spec: s, Want: 64}
		}
		for pb.Next() {
			ls, err := eng.Lease(ctx, reqs)
			if err != nil {
				b.Errorf("lease: %v", err)
				return
			}
			for i, l := range ls {
				if l.Err != nil || l.Held != 64 {
					b.Errorf("lease %d: %v held %d", i, l.Err, l.Held)
					return
				}
				reqs[i].ID, reqs[i].Used = l.ID, l.Held/2
			}
			n.Add(uint64(size))
		}
	})
	reportRate(b, start, int64(n.Load()), "leases/s")
}
