package memstore

import (
	"testing"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/countertest"
)

func benchEngine(b *testing.B) *counter.Engine {
	b.Helper()
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	eng := counter.New(s)
	b.Cleanup(func() { _ = eng.Close() })
	return eng
}

func BenchmarkConsumeMemory(b *testing.B) {
	for _, kind := range []string{"calendar", "rolling", "flexi"} {
		b.Run(kind, func(b *testing.B) { countertest.BenchConsume(b, benchEngine(b), kind, 1) })
	}
}

func BenchmarkConsumeBatch16Memory(b *testing.B) {
	countertest.BenchConsumeBatch(b, benchEngine(b), 16, 1)
}

func BenchmarkReserveSettleMemory(b *testing.B) {
	countertest.BenchReserveSettle(b, benchEngine(b), 1)
}

func BenchmarkLeaseBatch16Memory(b *testing.B) {
	countertest.BenchLeaseBatch(b, benchEngine(b), 16, 1)
}
