package policy_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/filters/guard/policy"
)

// prose is ordinary English with some numbers and punctuation, no PII.
const prose = "The quarterly report shows revenue grew 12% to 4.5 million while costs fell. " +
	"Our team shipped version 2.3 of the app, fixed 17 bugs and answered 340 tickets. " +
	"Next steps: hire two engineers, review the roadmap on Monday, and plan the launch. "

// pii is prose with an e-mail, a phone number and a payment card.
const pii = "Contact jane.doe@example.com or +1 415 555 0100 about card 4111 1111 1111 1111. "

func text(base string, n int) string {
	return strings.Repeat(base, n/len(base)+1)[:n]
}

// BenchmarkCheckBody measures scanning a chat request with the guarded
// profile of testdata/config.json (request detectors, a custom deny
// pattern, threat sets on two JSON fields); bytes/op is the prompt size,
// so ns/op ÷ KB gives the cost per KB of text.
func BenchmarkCheckBody(b *testing.B) {
	c := profile(b, load(b), "guarded", "")
	for _, tc := range []struct {
		name string
		text string
	}{
		{"prose-1KB", text(prose, 1024)},
		{"prose-64KB", text(prose, 64<<10)},
		{"pii-1KB", text(pii, 1024)},
	} {
		p, _ := json.Marshal(tc.text)
		body := []byte(`{"model":"m","user":"u1","messages":[{"role":"user","content":` + string(p) + `}]}`)
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.text)))
			b.ReportAllocs()
			for b.Loop() {
				if r := c.CheckBody(body, 1<<20); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		})
	}
}

// BenchmarkStreamMasker measures masking a streamed answer of 1 KB in
// 4-byte deltas (about 256 chunks), SSE parsing and re-encoding included.
func BenchmarkStreamMasker(b *testing.B) {
	c := profile(b, load(b), "guarded", "")
	for _, tc := range []struct{ name, text string }{{"prose-1KB", text(prose, 1024)}, {"pii-1KB", text(pii, 1024)}} {
		up := []byte(chatStream(tc.text, 4))
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.text)))
			b.ReportAllocs()
			now := time.Unix(0, 0)
			for b.Loop() {
				m := c.NewStreamMasker(time.Hour)
				m.Feed(up, now)
				m.Finish(now)
			}
		})
	}
}

// BenchmarkUnscannedProfile is the cost for a caller whose profile scans
// nothing: choosing the profile, with no body read at all.
func BenchmarkUnscannedProfile(b *testing.B) {
	p := load(b)
	h := hdr(map[string]string{"x-tollgate-product": "other", "x-tollgate-app": "open-app"})
	for b.Loop() {
		c, _ := p.Profile(h)
		if c.ScansRequestBody() {
			b.Fatal("the open app scans nothing on requests")
		}
	}
}

var _ = policy.Request
