package ledger

import (
	"testing"
)

func FuzzDecodeState(f *testing.F) {
	f.Add((&state{fs: 1, fe: 2, expireAt: 3, buckets: []bucket{{1, 2}}, res: []reservation{{token: "t", bucket: 1, amount: 2, expires: 3}}}).encode())
	f.Add([]byte{stateVersion})
	f.Add(AsyncState{Global: 1, Pending: 2}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = decodeAsync(b) // never panics, whatever the bytes
		st, err := decodeState(b)
		if err != nil {
			return
		}
		again, err := decodeState(st.encode())
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if len(again.buckets) != len(st.buckets) || len(again.res) != len(st.res) || again.fe != st.fe {
			t.Fatalf("round trip changed the state")
		}
	})
}
