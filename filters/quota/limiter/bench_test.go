package limiter

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/counter/countertest"
	"github.com/tollgate/tollgate/shared/table"
)

// BenchmarkCheck measures one decision per mode natively, over the
// in-memory stand-in for shared data (strict: encoding the callout and
// the keystore handler and memory engine answering in-process, no network).
//
//	go test -run '^$' -bench Check ./filters/quota/limiter/
func BenchmarkCheck(b *testing.B) {
	huge := `[{"limit": 9007199254740992, "timeUnit": "minute"}]`
	cases := []struct{ name, cfg string }{
		{"local", `{"mode": "local", "key_sources": [{"header": "x-user"}], "quotas": ` + huge + `}`},
		{"local-rolling", `{"mode": "local", "key_sources": [{"header": "x-user"}], "quotas": [{"limit": 9007199254740992, "timeUnit": "minute", "window": "rolling"}]}`},
		{"async", `{"mode": "async", "key_sources": [{"header": "x-user"}], "quotas": ` + huge + `}`},
		{"spike", `{"mode": "local", "key_sources": [{"header": "x-user"}], "spike_arrest": {"rate": "1000000ps"}}`},
		{"strict", `{"mode": "strict", "key_sources": [{"header": "x-user"}], "quotas": ` + huge + `}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			clock := countertest.NewClock(t0)
			ks := newKeystore(b, clock)
			h := newHost(clock, ks)
			l := newLimiter(b, parse(b, c.cfg), table.NewMemStore(), h)
			r := req("/v1/chat/completions", "bench")
			resume := func(Verdict) {}
			for b.Loop() {
				clock.Advance(time.Microsecond)
				if _, done := l.Check(r, resume); !done {
					h.flush()
				}
			}
		})
	}
}
