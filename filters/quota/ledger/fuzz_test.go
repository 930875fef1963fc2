package ledger

import (
	"bytes"
	"testing"
)

// FuzzDecodeAsync: whatever bytes are in shared data, decoding never panics,
// and a record of the right length round-trips. The counter state's own
// decoder is fuzzed in counter/bucket.
func FuzzDecodeAsync(f *testing.F) {
	f.Add(AsyncState{Global: 1, Pending: 2}.encode())
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := decodeAsync(b)
		if len(b) == asyncLen && !bytes.Equal(s.encode(), b) {
			t.Fatalf("round trip changed %x into %x", b, s.encode())
		}
		if len(b) != asyncLen && s != (AsyncState{}) {
			t.Fatalf("%d bytes decoded to %+v, want the empty state", len(b), s)
		}
	})
}
