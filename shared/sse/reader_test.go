package sse

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ev is a comparable copy of an Event.
type ev struct {
	Name, Data, ID string
}

// collect feeds chunks to a fresh reader, then finishes it, and returns
// copies of every event plus the number of size errors seen.
func collect(t testing.TB, opts Options, chunks ...[]byte) ([]ev, int) {
	t.Helper()
	r := NewReader(opts)
	var out []ev
	errs := 0
	add := func(evs []Event, err error) {
		if err != nil {
			require.ErrorIs(t, err, ErrEventTooLarge)
			errs++
		}
		for i := range evs {
			out = append(out, ev{string(evs[i].Name), string(evs[i].Data), string(evs[i].ID)})
		}
	}
	for _, c := range chunks {
		add(r.Feed(c))
	}
	add(r.Finish())
	return out, errs
}

// splitAt cuts b at the given ascending offsets.
func splitAt(b []byte, cuts ...int) [][]byte {
	var out [][]byte
	prev := 0
	for _, c := range cuts {
		out = append(out, b[prev:c])
		prev = c
	}
	return append(out, b[prev:])
}

// bytewise returns b as one-byte chunks.
func bytewise(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

func TestReaderTable(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  []ev
		errs  int
		opts  Options
		after func(t *testing.T, r *Reader)
	}{
		{name: "single", in: "data: hello\n\n", want: []ev{{Data: "hello"}}},
		{name: "no space after colon", in: "data:hello\n\n", want: []ev{{Data: "hello"}}},
		{name: "only one space stripped", in: "data:  two\n\n", want: []ev{{Data: " two"}}},
		{name: "multi data joined", in: "data: a\ndata: b\ndata:\ndata: c\n\n", want: []ev{{Data: "a\nb\n\nc"}}},
		{name: "field without colon is empty data", in: "data\ndata\n\n", want: []ev{{Data: "\n"}}},
		{name: "empty data event", in: "data:\n\n", want: []ev{{Data: ""}}},
		{name: "event name and id", in: "event: message_start\nid: 7\ndata: {}\n\n", want: []ev{{Name: "message_start", Data: "{}", ID: "7"}}},
		{name: "id persists, name resets", in: "id: 1\nevent: x\ndata: a\n\ndata: b\n\n", want: []ev{{Name: "x", Data: "a", ID: "1"}, {Data: "b", ID: "1"}}},
		{name: "id with NUL ignored", in: "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", want: []ev{{Data: "a", ID: "1"}, {Data: "b", ID: "1"}}},
		{name: "comments and keep-alives", in: ": ping\n\n:\ndata: x\n: mid\n\n", want: []ev{{Data: "x"}}},
		{name: "event without data is not dispatched", in: "event: ping\n\ndata: y\n\n", want: []ev{{Data: "y"}}},
		{name: "unknown field ignored", in: "foo: bar\ndata: z\n\n", want: []ev{{Data: "z"}}},
		{name: "crlf", in: "data: a\r\ndata: b\r\n\r\n", want: []ev{{Data: "a\nb"}}},
		{name: "cr only", in: "data: a\rdata: b\r\r", want: []ev{{Data: "a\nb"}}},
		{name: "mixed endings", in: "data: a\r\n\rdata: b\n\r\n", want: []ev{{Data: "a"}, {Data: "b"}}},
		{name: "bom stripped", in: "\xEF\xBB\xBFdata: a\n\n", want: []ev{{Data: "a"}}},
		{name: "bom makes field name unknown only after start", in: "data: a\n\n\xEF\xBB\xBFdata: b\n\n", want: []ev{{Data: "a"}}},
		{name: "partial bom is data", in: "\xEF\xBBdata: a\n\ndata: b\n\n", want: []ev{{Data: "b"}}},
		{name: "done", in: "data: [DONE]\n\n", want: []ev{{Data: "[DONE]"}}},
		{name: "utf8 preserved", in: "data: 日本語 🙂 é\n\n", want: []ev{{Data: "日本語 🙂 é"}}},
		{name: "blank lines only", in: "\n\n\r\n\r", want: nil},
		{name: "unterminated last event dispatched by Finish", in: "data: a\n\ndata: tail", want: []ev{{Data: "a"}, {Data: "tail"}}},
		{name: "unterminated event without data", in: "event: x\n", want: nil},
		{
			name: "oversize event skipped, next kept",
			in:   "data: 0123456789012345678901234567890123456789\n\ndata: ok\n\n",
			opts: Options{MaxEventSize: 32}, want: []ev{{Data: "ok"}}, errs: 1,
		},
		{
			name: "oversize by accumulated lines",
			in:   "data: 0123456789\ndata: 0123456789\ndata: 0123456789\n\ndata: ok\n\n",
			opts: Options{MaxEventSize: 32}, want: []ev{{Data: "ok"}}, errs: 1,
		},
		{
			name: "oversize comment line counts too",
			in:   ": 0123456789012345678901234567890123456789\ndata: x\n\ndata: ok\n\n",
			opts: Options{MaxEventSize: 32}, want: []ev{{Data: "ok"}}, errs: 1,
		},
		{
			name: "retry parsed",
			in:   "retry: 1500\ndata: a\n\nretry: 1x\n\n",
			want: []ev{{Data: "a"}},
			after: func(t *testing.T, r *Reader) {
				v, ok := r.Retry()
				assert.True(t, ok)
				assert.Equal(t, int64(1500), v)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			for _, split := range [][][]byte{{in}, bytewise(in)} {
				got, errs := collect(t, tc.opts, split...)
				assert.Equal(t, tc.want, got)
				// Byte-wise feeding reports each oversize event once too.
				assert.Equal(t, tc.errs, errs, "size errors")
			}
			if tc.after != nil {
				r := NewReader(tc.opts)
				_, _ = r.Feed(in)
				tc.after(t, r)
			}
		})
	}
}

func TestReaderEventsValidUntilNextFeed(t *testing.T) {
	r := NewReader(Options{})
	evs, err := r.Feed([]byte("data: one\n\ndata: two\n\n"))
	require.NoError(t, err)
	require.Len(t, evs, 2)
	assert.Equal(t, "one", string(evs[0].Data))
	assert.Equal(t, "two", string(evs[1].Data))
	assert.True(t, evs[0].Is("message"))
	assert.False(t, evs[0].Is("ping"))
}

func TestReaderCRLFSplitAcrossChunks(t *testing.T) {
	r := NewReader(Options{})
	evs, err := r.Feed([]byte("data: a\r"))
	require.NoError(t, err)
	assert.Empty(t, evs)
	evs, err = r.Feed([]byte("\n\r"))
	require.NoError(t, err)
	require.Len(t, evs, 1, "a CR ends the blank line at once: no wait for the next chunk")
	assert.Equal(t, "a", string(evs[0].Data))
	evs, err = r.Feed([]byte("\ndata: b\r\n\r\n"))
	require.NoError(t, err)
	require.Len(t, evs, 1, "the LF after a split CR is not a second blank line")
	assert.Equal(t, "b", string(evs[0].Data))
}

func TestReaderOversizeErrorIsWrapped(t *testing.T) {
	r := NewReader(Options{MaxEventSize: 8})
	_, err := r.Feed([]byte("data: 0123456789\n\n"))
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrEventTooLarge))
	assert.Contains(t, err.Error(), "8 bytes")
	evs, err := r.Feed([]byte("data: ok\n\n"))
	require.NoError(t, err)
	require.Len(t, evs, 1)
}

func TestReaderReset(t *testing.T) {
	r := NewReader(Options{})
	_, _ = r.Feed([]byte("id: 9\ndata: partial"))
	r.Reset()
	evs, err := r.Feed([]byte("data: fresh\n\n"))
	require.NoError(t, err)
	require.Len(t, evs, 1)
	assert.Equal(t, "fresh", string(evs[0].Data))
	assert.Empty(t, evs[0].ID)
}

// readFixtures loads every stream in testdata.
func readFixtures(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.sse"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	out := make(map[string][]byte, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		out[filepath.Base(p)] = b
	}
	return out
}

func TestReaderFixturesSplitEverywhere(t *testing.T) {
	for name, stream := range readFixtures(t) {
		t.Run(name, func(t *testing.T) {
			want, errs := collect(t, Options{}, stream)
			require.Zero(t, errs)
			require.NotEmpty(t, want)
			for i := 0; i <= len(stream); i++ {
				got, _ := collect(t, Options{}, splitAt(stream, i)...)
				require.Equal(t, want, got, "split at %d", i)
			}
			got, _ := collect(t, Options{}, bytewise(stream)...)
			require.Equal(t, want, got, "byte-wise")
		})
	}
}

func TestReaderFixtureContents(t *testing.T) {
	fx := readFixtures(t)
	lf, _ := collect(t, Options{}, fx["lf.sse"])
	for _, name := range []string{"crlf.sse", "cr.sse", "bom.sse"} {
		got, _ := collect(t, Options{}, fx[name])
		assert.Equal(t, lf, got, name)
	}
	require.Len(t, lf, 7)
	assert.Equal(t, "[DONE]", lf[6].Data)
	mixed, _ := collect(t, Options{}, fx["mixed.sse"])
	assert.Equal(t, []ev{
		{Name: "update", Data: "first line\nsecond line\n", ID: "1"},
		{Data: `{"a":1}`, ID: "1"},
		{Name: "end", Data: "[DONE]", ID: "2"},
	}, mixed)
}
