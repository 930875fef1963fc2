package lease

import (
	"testing"
)

// FuzzParseAnswer: any keystore answer is read without a panic, and a
// result it accepts holds amounts within the engine's range.
func FuzzParseAnswer(f *testing.F) {
	f.Add(200, []byte(`{"results":[{"id":"l1","held":500,"used":1700,"limit":10000,"remaining":8300,"reset":1710072060000,"reset_after_ms":45000,"valid_for_ms":30000,"lost":false}]}`), 1)
	f.Add(200, []byte(`{"results":[{"error":{"code":"invalid_spec","message":"no"}},{"id":"","held":0,"limit":1}]}`), 2)
	f.Add(503, []byte(`{"error":{"message":"down"}}`), 1)
	f.Add(200, []byte(`{"results":[{"id":"x","held":-1,"limit":1e400}]}`), 1)
	f.Fuzz(func(t *testing.T, status int, body []byte, n int) {
		n = min(max(n, 0), MaxItems)
		rs, err := parseAnswer(false, status, body, n)
		if err != nil {
			return
		}
		if len(rs) != n {
			t.Fatalf("%d results for %d items", len(rs), n)
		}
		for _, r := range rs {
			if r.err != nil {
				continue
			}
			if r.held < 0 || r.held > maxAmount || r.limit < 0 || r.validFor < 0 || r.remaining < 0 {
				t.Fatalf("out of range: %+v", r)
			}
			if r.id == "" && r.held != 0 {
				t.Fatalf("a closed lease holds %d", r.held)
			}
		}
	})
}

// FuzzDecodeRecord: any shared-data value decodes without a panic, and a
// record that decodes encodes back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add((&record{ID: "l1", Avail: 5, Inflight: 3, Pending: 2, Tag: 9, Valid: 1, Expiry: 2}).encode())
	f.Add([]byte{1, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil || len(b) == 0 {
			return
		}
		again, err := decodeRecord(r.encode())
		if err != nil || again != r {
			t.Fatalf("round trip: %+v → %+v (%v)", r, again, err)
		}
	})
}
