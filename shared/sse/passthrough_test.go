package sse

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dropData drops events whose data contains s.
func dropData(s string) DropFunc {
	return func(e *Event) bool { return bytes.Contains(e.Data, []byte(s)) }
}

// runPassthrough feeds chunks and returns the concatenated output, the
// number of dropped events and every event's data.
func runPassthrough(t testing.TB, opts Options, drop DropFunc, chunks ...[]byte) (string, int, []string) {
	t.Helper()
	p := NewPassthrough(opts, drop)
	var out bytes.Buffer
	var data []string
	for _, c := range chunks {
		res, _ := p.Feed(c)
		if res.Unchanged {
			require.Equal(t, c, res.Out)
		}
		out.Write(res.Out)
		for i := range res.Events {
			data = append(data, string(res.Events[i].Data))
		}
	}
	res, _ := p.Finish()
	out.Write(res.Out)
	for i := range res.Events {
		data = append(data, string(res.Events[i].Data))
	}
	return out.String(), p.Dropped(), data
}

func TestPassthroughTable(t *testing.T) {
	usage := `data: {"choices":[],"usage":{"total_tokens":9}}`
	tests := []struct {
		name    string
		in      string
		drop    DropFunc
		want    string
		dropped int
	}{
		{name: "nothing dropped", in: "data: a\n\n: ping\n\ndata: b\n\n", want: "data: a\n\n: ping\n\ndata: b\n\n"},
		{
			name: "usage chunk removed", drop: dropData(`"usage":{`),
			in:   "data: a\n\n" + usage + "\n\ndata: [DONE]\n\n",
			want: "data: a\n\ndata: [DONE]\n\n", dropped: 1,
		},
		{
			name: "crlf usage chunk removed", drop: dropData(`"usage":{`),
			in:   "data: a\r\n\r\n" + usage + "\r\n\r\ndata: [DONE]\r\n\r\n",
			want: "data: a\r\n\r\ndata: [DONE]\r\n\r\n", dropped: 1,
		},
		{
			name: "cr usage chunk removed", drop: dropData(`"usage":{`),
			in:   "data: a\r\r" + usage + "\r\rdata: [DONE]\r\r",
			want: "data: a\r\rdata: [DONE]\r\r", dropped: 1,
		},
		{
			name: "leading comment goes with the dropped block", drop: dropData("x"),
			in: ": c\ndata: x\n\ndata: y\n\n", want: "data: y\n\n", dropped: 1,
		},
		{
			name: "keep-alive block survives a dropped neighbour", drop: dropData("x"),
			in: ": ping\n\ndata: x\n\ndata: y\n\n", want: ": ping\n\ndata: y\n\n", dropped: 1,
		},
		{
			name: "unterminated tail forwarded", in: "data: a\n\ndata: par",
			want: "data: a\n\ndata: par",
		},
		{
			name: "unterminated dropped tail removed", drop: dropData("usage"),
			in: "data: a\n\ndata: usage", want: "data: a\n\n", dropped: 1,
		},
		{
			name: "bom forwarded", in: "\xEF\xBB\xBFdata: a\n\n", want: "\xEF\xBB\xBFdata: a\n\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			for i := 0; i <= len(in); i++ {
				got, dropped, _ := runPassthrough(t, Options{}, tc.drop, splitAt(in, i)...)
				require.Equal(t, tc.want, got, "split at %d", i)
				require.Equal(t, tc.dropped, dropped, "split at %d", i)
			}
			got, dropped, _ := runPassthrough(t, Options{}, tc.drop, bytewise(in)...)
			require.Equal(t, tc.want, got, "byte-wise")
			require.Equal(t, tc.dropped, dropped)
		})
	}
}

func TestPassthroughForwardsCompleteEventsAtOnce(t *testing.T) {
	p := NewPassthrough(Options{}, dropData("usage"))
	chunk := []byte("data: a\n\n: keep-alive\n\n")
	res, err := p.Feed(chunk)
	require.NoError(t, err)
	assert.True(t, res.Unchanged, "whole events need no copy")
	assert.Equal(t, chunk, res.Out)

	res, err = p.Feed([]byte("data: b\n\ndata: par"))
	require.NoError(t, err)
	assert.False(t, res.Unchanged)
	assert.Equal(t, "data: b\n\n", string(res.Out), "only the unfinished event is held back")

	res, err = p.Feed([]byte("tial\n\n"))
	require.NoError(t, err)
	assert.Equal(t, "data: partial\n\n", string(res.Out))
	require.Len(t, res.Events, 1)
	assert.Equal(t, "partial", string(res.Events[0].Data))
}

func TestPassthroughOversizeEventStreamsThrough(t *testing.T) {
	p := NewPassthrough(Options{MaxEventSize: 16}, func(*Event) bool { return true })
	big := "data: " + strings.Repeat("x", 40)
	var out bytes.Buffer
	res, _ := p.Feed([]byte(big[:10]))
	out.Write(res.Out)
	assert.Empty(t, res.Out, "under the limit it is held")
	res, _ = p.Feed([]byte(big[10:]))
	out.Write(res.Out)
	assert.NotEmpty(t, res.Out, "over the limit it is forwarded as it arrives")
	res, err := p.Feed([]byte("\n\ndata: y\n\n"))
	out.Write(res.Out)
	require.ErrorIs(t, err, ErrEventTooLarge)
	assert.Equal(t, big+"\n\n", out.String(), "the oversized event is kept, the small one dropped")
	assert.Equal(t, 1, p.Dropped())
}

func TestPassthroughFixturesNoDropIsIdentity(t *testing.T) {
	for name, stream := range readFixtures(t) {
		t.Run(name, func(t *testing.T) {
			for i := 0; i <= len(stream); i += 3 {
				got, _, _ := runPassthrough(t, Options{}, nil, splitAt(stream, i, min(len(stream), i+7))...)
				require.Equal(t, string(stream), got, "split at %d", i)
			}
		})
	}
}
