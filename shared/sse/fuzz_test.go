package sse

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// chunksBy cuts b into chunks whose lengths cycle through sizes (a zero
// size gives an empty chunk, which the reader must accept too).
func chunksBy(b, sizes []byte) [][]byte {
	if len(sizes) == 0 {
		return [][]byte{b}
	}
	var out [][]byte
	for i := 0; len(b) > 0; i++ {
		n := min(int(sizes[i%len(sizes)]), len(b))
		out = append(out, b[:n])
		b = b[n:]
		if i > 4*len(sizes)+len(b)*2 { // all-zero sizes: finish in one piece
			out = append(out, b)
			break
		}
	}
	return out
}

// checkBounded asserts the reader never holds more than its limit.
func checkBounded(t *testing.T, r *Reader) {
	t.Helper()
	require.LessOrEqual(t, len(r.line), r.max)
	require.LessOrEqual(t, len(r.data)+len(r.name), r.max)
	require.LessOrEqual(t, len(r.lastID), r.max)
}

// FuzzReader feeds arbitrary bytes in fuzzer-chosen chunks: no panic,
// bounded buffers, and the same events and errors as the unsplit stream.
func FuzzReader(f *testing.F) {
	for _, b := range readFixtures(f) {
		f.Add(b, []byte{1, 7, 64}, uint16(0))
		f.Add(b, []byte{3}, uint16(48))
	}
	f.Add([]byte("data: a\r\n\r\ndata: b\r\r"), []byte{8, 1}, uint16(8))
	f.Add([]byte("\xEF\xBB\xBFdata: x\n\n"), []byte{1}, uint16(0))
	f.Fuzz(func(t *testing.T, stream, sizes []byte, max uint16) {
		opts := Options{MaxEventSize: int(max)}
		want, wantErrs := collect(t, opts, stream)

		r := NewReader(opts)
		var got []ev
		errs := 0
		for _, c := range chunksBy(stream, sizes) {
			evs, err := r.Feed(c)
			if err != nil {
				errs++
			}
			checkBounded(t, r)
			for i := range evs {
				got = append(got, ev{string(evs[i].Name), string(evs[i].Data), string(evs[i].ID)})
			}
		}
		evs, err := r.Finish()
		if err != nil {
			errs++
		}
		for i := range evs {
			got = append(got, ev{string(evs[i].Name), string(evs[i].Data), string(evs[i].ID)})
		}
		require.Equal(t, want, got)
		require.Equal(t, wantErrs > 0, errs > 0, "oversize reported whatever the split")
	})
}

// FuzzPassthrough checks that forwarding is split-independent: without a
// drop rule the output is the input byte for byte, and with one it equals
// the output for the unsplit stream.
func FuzzPassthrough(f *testing.F) {
	for _, b := range readFixtures(f) {
		f.Add(b, []byte{5, 1, 200}, byte('o'))
	}
	f.Add([]byte("data: a\r\n\r\ndata: b\r\n\r\n"), []byte{8, 1}, byte('b'))
	f.Fuzz(func(t *testing.T, stream, sizes []byte, c byte) {
		drop := func(e *Event) bool { return bytes.IndexByte(e.Data, c) >= 0 }
		chunks := chunksBy(stream, sizes)

		same, _, _ := runPassthrough(t, Options{}, nil, chunks...)
		require.Equal(t, string(stream), same)

		want, wantDropped, wantData := runPassthrough(t, Options{}, drop, stream)
		got, dropped, gotData := runPassthrough(t, Options{}, drop, chunks...)
		require.Equal(t, want, got)
		require.Equal(t, wantDropped, dropped)
		require.Equal(t, wantData, gotData)

		// What reaches the client parses to the kept events only.
		kept, _ := collect(t, Options{}, []byte(got))
		for _, k := range kept {
			require.NotContains(t, k.Data, string(c))
		}
	})
}
