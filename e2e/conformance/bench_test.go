package conformance

import (
	"testing"

	"github.com/tollgate/tollgate/shared/wasmhost"
)

func benchHeaders(path string) *wasmhost.HeaderMap {
	return wasmhost.NewHeaderMap(
		wasmhost.Pair{Key: ":method", Value: "GET"}, wasmhost.Pair{Key: ":path", Value: path}, wasmhost.Pair{Key: ":authority", Value: "gateway.local"},
		wasmhost.Pair{Key: ":scheme", Value: "http"}, wasmhost.Pair{Key: "user-agent", Value: "bench"}, wasmhost.Pair{Key: "x-api-key", Value: "tg_0123456789abcdef"},
		wasmhost.Pair{Key: "content-type", Value: "application/json"}, wasmhost.Pair{Key: "accept", Value: "*/*"},
	)
}

// BenchmarkHeaderCallback is one stream through the conformance plugin's
// header callback (context create, proxy_on_request_headers reading :path and
// adding, removing and replacing headers, context delete) on the wazero host.
func BenchmarkHeaderCallback(b *testing.B) {
	g := startWazero(b)
	vm := g.vms[0]
	h := benchHeaders("/headers")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := vm.NewStream()
		if st := s.RequestHeaders(h.Clone(), true); st != wasmhost.HeadersContinue {
			b.Fatalf("status %v", st)
		}
		s.Destroy()
	}
}

// BenchmarkBodyCallback is one proxy_on_request_body call with a 1 KiB chunk
// that the plugin passes on.
func BenchmarkBodyCallback(b *testing.B) {
	g := startWazero(b)
	vm := g.vms[0]
	s := vm.NewStream()
	defer s.Destroy()
	s.RequestHeaders(benchHeaders("/headers"), false)
	chunk := make([]byte, 1024)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if st := s.RequestBody(chunk, false); st != wasmhost.DataContinue {
			b.Fatalf("status %v", st)
		}
	}
}

// BenchmarkSharedDataCAS is one stream whose header callback does a shared-data
// get plus compare-and-swap set; subtract BenchmarkHeaderCallback for the CAS alone.
func BenchmarkSharedDataCAS(b *testing.B) {
	g := startWazero(b)
	vm := g.vms[0]
	h := benchHeaders("/bench/cas")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := vm.NewStream()
		s.RequestHeaders(h.Clone(), true)
		s.Destroy()
	}
	b.StopTimer()
	v, _, ok := g.host.SharedData("bench:cas")
	if !ok || len(v) == 0 {
		b.Fatal("CAS counter never written")
	}
}
