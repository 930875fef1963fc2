package wasmhost

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func benchHeaders(extra ...Pair) *HeaderMap {
	h := newRequestHeaderMap(Pair{":authority", "example.com"}, Pair{":path", "/v1/chat/completions"},
		Pair{":method", "POST"}, Pair{":scheme", "http"}, Pair{"content-type", "application/json"},
		Pair{"authorization", "Bearer sk-test"}, Pair{"x-forwarded-proto", "http"},
		Pair{"x-request-id", "2f1f6b4e-0c3a-4a57-9a57-8b0c6f0b9a11"})
	for _, p := range extra {
		h.Add(p.Key, p.Value)
	}
	return h
}

// BenchmarkRequestHeadersCallback measures one proxy_on_request_headers
// call (the raw module reads all request headers through the allocator).
func BenchmarkRequestHeadersCallback(b *testing.B) {
	vm := newVM(b, newHost(b, Config{DiscardLogs: true}))
	s := vm.NewStream()
	h := benchHeaders()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if st := s.RequestHeaders(h, false); st != HeadersContinue {
			b.Fatalf("status %v", st)
		}
	}
}

// BenchmarkRequestBodyCallback measures one proxy_on_request_body call with
// a 1 KiB chunk the module reads back (buffer status + buffer bytes).
func BenchmarkRequestBodyCallback(b *testing.B) {
	vm := newVM(b, newHost(b, Config{DiscardLogs: true}))
	s := vm.NewStream()
	s.RequestHeaders(benchHeaders(), false)
	chunk := make([]byte, 1024)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if st := s.RequestBody(chunk, false); st != DataContinue {
			b.Fatalf("status %v", st)
		}
	}
}

// BenchmarkSharedDataCAS measures a headers callback doing a shared-data get
// and a CAS set, on one VM and on two VMs sharing the store in parallel.
func BenchmarkSharedDataCAS(b *testing.B) {
	h := benchHeaders(Pair{"x-t-shared-get", "k"}, Pair{"x-t-shared-set", "k=value@0"})
	b.Run("one-vm", func(b *testing.B) {
		vm := newVM(b, newHost(b, Config{DiscardLogs: true}))
		s := vm.NewStream()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			s.RequestHeaders(h, false)
		}
	})
	b.Run("two-vms-parallel", func(b *testing.B) {
		host := newHost(b, Config{DiscardLogs: true})
		vms := []*VM{newVM(b, host), newVM(b, host)}
		var next atomic.Int32
		b.SetParallelism(1)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			vm := vms[int(next.Add(1)-1)%len(vms)]
			s := vm.NewStream()
			hh := h.Clone()
			for pb.Next() {
				s.RequestHeaders(hh, false)
			}
		})
	})
}

// BenchmarkDo measures a whole request through the filter and an upstream
// handler with VM.Do.
func BenchmarkDo(b *testing.B) {
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	vm := newVM(b, newHost(b, Config{Upstream: up, DiscardLogs: true}))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest("POST", "/v1/chat/completions", Chunks(`{"model":"m"}`))
		if _, err := vm.Do(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}
