package gate

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/filters/apikey/policy"
)

// BenchmarkWarmRequest is the filter's per-request work on a warm cache,
// natively: extract, hash, memo lookup, authorise, identity headers.
func BenchmarkWarmRequest(b *testing.B) {
	w := newWorld(&testing.T{}, ``)
	h := w.worker(1)
	key := "tg_WLkuVCThxSP0D7IuxynEzMRfXmxFulT441t5TR"
	hash := policy.HashKey(key)
	h.gate.Check(req(1), hash)
	w.answer(200, grantBody)
	headers := map[string]string{"x-api-key": key}
	get := func(n string) (string, bool) { v, ok := headers[n]; return v, ok }
	b.ReportAllocs()
	for b.Loop() {
		x := w.pol.Extract(get, "/v1/models")
		if !w.pol.Screen(x.Key) {
			b.Fatal("screen")
		}
		d, done := h.gate.Check(Request{Stream: 2, Method: "GET", Path: x.Path}, policy.HashKey(x.Key))
		if !done || !d.Pass {
			b.Fatal("not allowed")
		}
		_ = d.Identity.Pairs(w.pol.Identity)
	}
	_ = time.Now
}
