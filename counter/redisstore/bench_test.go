package redisstore

import (
	"context"
	"testing"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/countertest"
	"github.com/tollgate/tollgate/internal/redistest"
)

// benchParallelism is the number of in-flight callers per GOMAXPROCS: the
// engine serves many Envoy workers at once, and a Redis round trip is mostly
// waiting.
const benchParallelism = 16

func benchEngine(b *testing.B) *counter.Engine {
	b.Helper()
	srv := redistest.Start(b)
	s, err := Open(context.Background(), srv.URL(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	eng := counter.New(s)
	b.Cleanup(func() { _ = eng.Close() })
	return eng
}

func BenchmarkConsumeRedis(b *testing.B) {
	for _, kind := range []string{"calendar", "rolling", "flexi"} {
		b.Run(kind, func(b *testing.B) { countertest.BenchConsume(b, benchEngine(b), kind, benchParallelism) })
	}
}

func BenchmarkConsumeBatch16Redis(b *testing.B) {
	countertest.BenchConsumeBatch(b, benchEngine(b), 16, benchParallelism)
}

func BenchmarkReserveSettleRedis(b *testing.B) {
	countertest.BenchReserveSettle(b, benchEngine(b), benchParallelism)
}

func BenchmarkLeaseBatch16Redis(b *testing.B) {
	countertest.BenchLeaseBatch(b, benchEngine(b), 16, benchParallelism)
}
