package usage

import (
	"bytes"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/sse"
)

// streamOutcome is everything a stream yields, for split comparisons.
type streamOutcome struct {
	Events   []string // "name|data" of every event, in order
	Usage    Usage
	Found    bool
	Done     bool
	Streamed int64
}

// countStream runs a StreamCounter over the chunks.
func countStream(t testing.TB, api API, chunks [][]byte) streamOutcome {
	t.Helper()
	s := NewStreamCounter(api, sse.Options{})
	r := sse.NewReader(sse.Options{}) // a second reader records the events
	var out streamOutcome
	record := func(evs []sse.Event) {
		for i := range evs {
			out.Events = append(out.Events, string(evs[i].Name)+"|"+string(evs[i].Data))
		}
	}
	for _, c := range chunks {
		require.NoError(t, s.Feed(c))
		evs, err := r.Feed(c)
		require.NoError(t, err)
		record(evs)
	}
	require.NoError(t, s.Finish())
	evs, _ := r.Finish()
	record(evs)
	out.Usage, out.Found, out.Done, out.Streamed = s.Result(0), s.Found(), s.Done(), s.StreamedTokens()
	return out
}

// chunked cuts b at the given positions (sorted, clamped) and then into
// pieces of at most size bytes.
func chunked(b []byte, cuts []int, size int) [][]byte {
	var out [][]byte
	prev := 0
	for _, c := range append(cuts, len(b)) {
		c = min(max(c, prev), len(b))
		seg := b[prev:c]
		for len(seg) > size {
			out = append(out, seg[:size])
			seg = seg[size:]
		}
		out = append(out, seg)
		prev = c
	}
	return out
}

func TestStreamFixtures(t *testing.T) {
	for _, fx := range loadStreams(t) {
		t.Run(fx.File, func(t *testing.T) {
			api := apiByName(t, fx.API)
			stream := readFile(t, "streams/"+fx.File)
			got := countStream(t, api, [][]byte{stream})
			assert.Len(t, got.Events, fx.Events)
			assert.Equal(t, fx.Done, got.Done)
			if fx.Usage == nil {
				assert.False(t, got.Found)
				assert.True(t, got.Usage.Estimated)
			} else {
				require.True(t, got.Found)
				assert.Equal(t, fx.Usage.usage(), got.Usage)
			}
			if fx.StreamedTextTokens != nil {
				truth := float64(*fx.StreamedTextTokens)
				errRel := (float64(got.Streamed) - truth) / truth
				t.Logf("streamed text: o200k=%d estimate=%d err=%+.1f%%", *fx.StreamedTextTokens, got.Streamed, 100*errRel)
				assert.LessOrEqual(t, math.Abs(errRel), 0.35)
			}
		})
	}
}

func TestStreamEstimatedWithoutUsage(t *testing.T) {
	s := NewStreamCounter(APIChatCompletions, sse.Options{})
	require.NoError(t, s.Feed(readFile(t, "streams/openai_chat_no_usage.sse")))
	u := s.Result(43)
	assert.True(t, u.Estimated)
	assert.Equal(t, int64(43), u.PromptTokens)
	assert.Equal(t, s.StreamedTokens(), u.CompletionTokens)
	assert.Equal(t, u.PromptTokens+u.CompletionTokens, u.TotalTokens)
	assert.True(t, s.Done())
}

func TestStreamCases(t *testing.T) {
	tests := []struct {
		name   string
		api    API
		stream string
		want   Usage
		found  bool
		done   bool
		failed bool
	}{
		{
			name: "n=2 choices counted separately", api: APIChatCompletions,
			stream: `data: {"choices":[{"index":0,"delta":{"content":"Hello"}},{"index":1,"delta":{"content":"Good"}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"content":" there"}},{"index":1,"delta":{"content":"bye"}}]}` + "\n\n",
			want: Usage{CompletionTokens: 3, TotalTokens: 3, Estimated: true}, // "Hello there" + "Goodbye"
		},
		{
			name: "tool call arguments counted", api: APIChatCompletions,
			stream: `data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"get","arguments":"{\"q\":"}}]}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}` + "\n\n",
			want: Usage{CompletionTokens: TextTokens(`get{"q":1}`), TotalTokens: TextTokens(`get{"q":1}`), Estimated: true},
		},
		{
			name: "reasoning_content counted", api: APIChatCompletions,
			stream: `data: {"choices":[{"index":0,"delta":{"reasoning_content":"think"}}]}` + "\n\n",
			want:   Usage{CompletionTokens: 1, TotalTokens: 1, Estimated: true},
		},
		{
			name: "error chunk", api: APIChatCompletions, failed: true,
			stream: `data: {"error":{"message":"overloaded","type":"server_error"}}` + "\n\n",
			want:   Usage{Estimated: true},
		},
		{
			name: "negative usage is invalid", api: APIChatCompletions, found: true, done: true,
			stream: `data: {"choices":[],"usage":{"prompt_tokens":-5,"completion_tokens":3}}` + "\n\ndata: [DONE]\n\n",
			want:   Usage{CompletionTokens: 3, TotalTokens: 3, Invalid: true},
		},
		{
			name: "anthropic absurd output is invalid", api: APIAnthropicMessages, found: true,
			stream: "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":1e18}}\n\n",
			want:   Usage{Invalid: true},
		},
		{
			name: "anthropic error event", api: APIAnthropicMessages, failed: true,
			stream: "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
			want:   Usage{Estimated: true},
		},
		{
			name: "anthropic delta carrying input tokens", api: APIAnthropicMessages, found: true, done: true,
			stream: "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n" +
				"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":12,\"output_tokens\":40,\"cache_read_input_tokens\":100}}\n\n" +
				"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
			want: Usage{PromptTokens: 112, CompletionTokens: 40, TotalTokens: 152, CachedTokens: 100},
		},
		{
			name: "unterminated final usage chunk still counted", api: APIChatCompletions, found: true,
			stream: `data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}`,
			want:   Usage{PromptTokens: 5, CompletionTokens: 6, TotalTokens: 11},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStreamCounter(tc.api, sse.Options{})
			require.NoError(t, s.Feed([]byte(tc.stream)))
			require.NoError(t, s.Finish())
			assert.Equal(t, tc.want, s.Result(0))
			assert.Equal(t, tc.found, s.Found())
			assert.Equal(t, tc.done, s.Done())
			assert.Equal(t, tc.failed, s.Failed())
			s.Reset()
			assert.False(t, s.Found())
			assert.Zero(t, s.StreamedTokens())
		})
	}
}

func TestIsUsageOnlyChunk(t *testing.T) {
	tests := []struct {
		data string
		want bool
	}{
		{`{"id":"x","choices":[],"usage":{"prompt_tokens":1}}`, true},
		{`{"id":"x","choices":[ ],"usage":{"prompt_tokens":1}}`, true},
		{`{"id":"x","choices":null,"usage":{"prompt_tokens":1}}`, true},
		{`{"id":"x","usage":{"prompt_tokens":1}}`, true},
		{`{"id":"x","choices":[{"index":0,"delta":{}}],"usage":{"prompt_tokens":1}}`, false},
		{`{"id":"x","choices":[],"usage":null}`, false},
		{`{"id":"x","choices":[{"delta":{"content":"usage"}}]}`, false},
		{`[DONE]`, false},
		{"{\"choices\" : [],\n \"usage\" :\n\t{\"prompt_tokens\":1}}", true},
		{`{"choices":[],"note":"\"usage\": {","usage":{"prompt_tokens":1}}`, true},
		{`{"choices":[{"delta":{"content":"\"usage\":{"}}],"usage":null}`, false},
		{`{"choices":[],"usage"`, false},
		{`{"choices":[],"usage":`, false},
	}
	for _, tc := range tests {
		ev := sse.Event{Data: []byte(tc.data)}
		assert.Equal(t, tc.want, IsUsageOnlyChunk(&ev), tc.data)
	}
}

// TestStripInjectedUsage runs the filter's path for a client that did not
// ask for usage: the usage chunk is counted but never forwarded.
func TestStripInjectedUsage(t *testing.T) {
	for _, name := range []string{"openai_chat_usage.sse", "openai_chat_crlf.sse", "completions_usage.sse", "vllm_continuous_usage.sse"} {
		t.Run(name, func(t *testing.T) {
			stream := readFile(t, "streams/"+name)
			api := APIChatCompletions
			if name == "completions_usage.sse" {
				api = APICompletions
			}
			for _, size := range []int{1, 7, 100, len(stream)} {
				p := sse.NewPassthrough(sse.Options{}, IsUsageOnlyChunk)
				s := NewStreamCounter(api, sse.Options{})
				var out bytes.Buffer
				for _, c := range chunked(stream, nil, size) {
					res, err := p.Feed(c)
					require.NoError(t, err)
					out.Write(res.Out)
					for i := range res.Events {
						s.Observe(&res.Events[i])
					}
				}
				res, err := p.Finish()
				require.NoError(t, err)
				out.Write(res.Out)
				require.Equal(t, 1, p.Dropped())
				require.True(t, s.Found())
				assert.NotContains(t, out.String(), `"choices":[],`)
				assert.Contains(t, out.String(), "data: [DONE]")
				assert.Equal(t, len(stream)-out.Len(), usageChunkLen(t, stream), "exactly the usage chunk removed")
			}
		})
	}
}

// usageChunkLen finds the byte length of the usage-only event block.
func usageChunkLen(t *testing.T, stream []byte) int {
	t.Helper()
	i := bytes.Index(stream, []byte(`"choices":[],`))
	require.Positive(t, i)
	start := bytes.LastIndex(stream[:i], []byte("data: "))
	end := bytes.Index(stream[i:], []byte("data: [DONE]"))
	return i + end - start
}

// FuzzStreamSplit splits every recorded stream at fuzzer-chosen positions
// and into fuzzer-chosen chunk sizes: the events and the usage must equal
// those of the unsplit stream, and so must the bytes forwarded by the
// passthrough that strips the usage chunk.
func FuzzStreamSplit(f *testing.F) {
	fixtures := loadStreams(f)
	streams := make([][]byte, len(fixtures))
	apis := make([]API, len(fixtures))
	whole := make([]streamOutcome, len(fixtures))
	for i, fx := range fixtures {
		streams[i] = readFile(f, "streams/"+fx.File)
		apis[i] = apiByName(f, fx.API)
		whole[i] = countStream(f, apis[i], [][]byte{streams[i]})
		f.Add(uint8(i), uint16(len(streams[i])/2), uint16(0), uint16(3), uint8(0))
		f.Add(uint8(i), uint16(1), uint16(17), uint16(len(streams[i])-1), uint8(1))
	}
	f.Fuzz(func(t *testing.T, which uint8, c1, c2, c3 uint16, size uint8) {
		i := int(which) % len(streams)
		stream := streams[i]
		n := len(stream) + 1
		cuts := []int{int(c1) % n, int(c2) % n, int(c3) % n}
		if cuts[0] > cuts[1] {
			cuts[0], cuts[1] = cuts[1], cuts[0]
		}
		if cuts[1] > cuts[2] {
			cuts[1], cuts[2] = cuts[2], cuts[1]
		}
		if cuts[0] > cuts[1] {
			cuts[0], cuts[1] = cuts[1], cuts[0]
		}
		chunkSize := len(stream)
		if size > 0 {
			chunkSize = int(size)
		}
		chunks := chunked(stream, cuts, chunkSize)
		got := countStream(t, apis[i], chunks)
		require.Equal(t, whole[i], got)

		// The passthrough forwards the same bytes whatever the split.
		p := sse.NewPassthrough(sse.Options{}, IsUsageOnlyChunk)
		var out bytes.Buffer
		for _, c := range chunks {
			res, err := p.Feed(c)
			require.NoError(t, err)
			out.Write(res.Out)
		}
		res, err := p.Finish()
		require.NoError(t, err)
		out.Write(res.Out)
		ref := sse.NewPassthrough(sse.Options{}, IsUsageOnlyChunk)
		r1, _ := ref.Feed(stream)
		want := append([]byte(nil), r1.Out...)
		r2, _ := ref.Finish()
		want = append(want, r2.Out...)
		require.Equal(t, string(want), out.String())
	})
}
