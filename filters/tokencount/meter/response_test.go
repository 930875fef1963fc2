package meter

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/shared/sse"
)

const promptEstimate = 40

func testPlan(api usage.API, strip bool) *Plan {
	return &Plan{API: api, Model: "m", Stream: true, PromptEstimate: promptEstimate, OutputReserve: 1000,
		Amount: promptEstimate + 1000, StripUsage: strip, Quota: quota(1<<40, usage.MetricTotal),
		PromptBound: 1 << 20, CompletionBound: 1 << 20}
}

// meterResult is everything a metered response yields.
type meterResult struct {
	Out    []byte
	Usage  usage.Usage
	Source Source
}

// meterChunks runs a response through a Response in the given chunks, the
// way the filter does (each output replaces its chunk).
func meterChunks(t testing.TB, p *Policy, pl *Plan, status int, ct, ce string, parts [][]byte) meterResult {
	t.Helper()
	r := p.NewResponse(pl, status, ct, ce)
	var out []byte
	for i, c := range parts {
		o, changed := r.Feed(c, i == len(parts)-1)
		if !changed {
			require.Equal(t, c, o)
		}
		out = append(out, o...)
	}
	u, src := r.Usage()
	return meterResult{Out: out, Usage: u, Source: src}
}

// events lists "name|data" of every event of a stream.
func events(t testing.TB, b []byte) []string {
	t.Helper()
	rd := sse.NewReader(sse.Options{})
	var out []string
	evs, err := rd.Feed(b)
	require.NoError(t, err)
	fin, err := rd.Finish()
	require.NoError(t, err)
	for _, ev := range append(slices.Clone(evs), fin...) {
		out = append(out, string(ev.Name)+"|"+string(ev.Data))
	}
	return out
}

// keptEvents are the events a client must see when usage-only chunks are stripped.
func keptEvents(t testing.TB, b []byte) (kept []string, dropped int) {
	t.Helper()
	rd := sse.NewReader(sse.Options{})
	evs, err := rd.Feed(b)
	require.NoError(t, err)
	fin, _ := rd.Finish()
	for _, ev := range append(slices.Clone(evs), fin...) {
		if usage.IsUsageOnlyChunk(&ev) {
			dropped++
			continue
		}
		kept = append(kept, string(ev.Name)+"|"+string(ev.Data))
	}
	return kept, dropped
}

func TestResponseStreams(t *testing.T) {
	p := mustParse(t, `{}`)
	for _, fx := range loadStreams(t) {
		api := apiByName(t, fx.API)
		body := readFixture(t, "streams/"+fx.File)
		for _, strip := range []bool{false, true} {
			if strip && api == usage.APIAnthropicMessages {
				continue
			}
			name := fx.File
			if strip {
				name += "/strip"
			}
			t.Run(name, func(t *testing.T) {
				pl := testPlan(api, strip)
				whole := meterChunks(t, p, pl, 200, "text/event-stream; charset=utf-8", "", [][]byte{body})
				if fx.Usage != nil {
					assert.Equal(t, SourceUpstream, whole.Source)
					assert.Equal(t, fx.Usage.PromptTokens, whole.Usage.PromptTokens)
					assert.Equal(t, fx.Usage.CompletionTokens, whole.Usage.CompletionTokens)
					assert.Equal(t, fx.Usage.TotalTokens, whole.Usage.TotalTokens)
					assert.Equal(t, fx.Usage.CachedTokens, whole.Usage.CachedTokens)
					assert.Equal(t, fx.Usage.ReasoningTokens, whole.Usage.ReasoningTokens)
				} else {
					assert.Equal(t, SourceEstimated, whole.Source)
					assert.Equal(t, int64(promptEstimate), whole.Usage.PromptTokens)
					assert.Positive(t, whole.Usage.CompletionTokens)
				}
				if !strip {
					assert.Equal(t, body, whole.Out, "a stream not rewritten passes byte for byte")
				} else {
					kept, _ := keptEvents(t, body)
					assert.Equal(t, kept, events(t, whole.Out))
				}
				// Any split gives the same bytes and the same usage.
				rng := rand.New(rand.NewPCG(uint64(len(body)), 7))
				for range 40 {
					cuts := make([]int, rng.IntN(12))
					for i := range cuts {
						cuts[i] = rng.IntN(len(body) + 1)
					}
					slices.Sort(cuts)
					got := meterChunks(t, p, pl, 200, "text/event-stream", "", chunks(body, cuts))
					require.Equal(t, whole, got, "cuts %v", cuts)
				}
				// Byte by byte.
				var bytewise [][]byte
				for i := range body {
					bytewise = append(bytewise, body[i:i+1])
				}
				require.Equal(t, whole, meterChunks(t, p, pl, 200, "text/event-stream", "", bytewise))
			})
		}
	}
}

func TestResponseStripsOnlyTheUsageChunk(t *testing.T) {
	p := mustParse(t, `{}`)
	body := readFixture(t, "streams/openai_chat_usage.sse")
	kept, dropped := keptEvents(t, body)
	require.Equal(t, 1, dropped)
	got := meterChunks(t, p, testPlan(usage.APIChatCompletions, true), 200, "text/event-stream", "", [][]byte{body})
	assert.Equal(t, kept, events(t, got.Out))
	assert.NotContains(t, string(got.Out), `"choices":[],`)
	assert.True(t, bytes.HasSuffix(got.Out, []byte("data: [DONE]\n\n")))
	assert.Equal(t, int64(71), got.Usage.TotalTokens)
}

func TestResponseJSON(t *testing.T) {
	p := mustParse(t, `{"max_response_bytes": 4096}`)
	chat := readFixture(t, "responses/chat_completion.json")
	tests := []struct {
		name     string
		api      usage.API
		status   int
		ct, ce   string
		body     []byte
		kind     Kind
		source   Source
		prompt   int64
		complete int64
	}{
		{"chat usage", usage.APIChatCompletions, 200, "application/json", "", chat, KindJSON, SourceUpstream, 43, 28},
		{"no content type", usage.APIChatCompletions, 200, "", "", chat, KindJSON, SourceUpstream, 43, 28},
		{"reasoning and cache", usage.APIChatCompletions, 200, "application/json", "identity",
			readFixture(t, "responses/chat_completion_reasoning_cached.json"), KindJSON, SourceUpstream, 1310, 476},
		{"embeddings", usage.APIEmbeddings, 200, "application/json", "", readFixture(t, "responses/embeddings.json"), KindJSON, SourceUpstream, -1, 0},
		{"anthropic", usage.APIAnthropicMessages, 200, "application/json", "", readFixture(t, "responses/anthropic_message.json"), KindJSON, SourceUpstream, -1, -1},
		{"no usage: estimated from the message", usage.APIChatCompletions, 200, "application/json", "",
			[]byte(`{"choices":[{"index":0,"message":{"role":"assistant","content":"Yes, we ship to Canada in five days."}}]}`), KindJSON, SourceEstimated, promptEstimate, -1},
		{"too large: the reservation", usage.APIChatCompletions, 200, "application/json", "", bytes.Repeat([]byte(" "), 5000), KindJSON, SourceReservation, promptEstimate, 1000},
		{"compressed: the reservation", usage.APIChatCompletions, 200, "application/json", "gzip", []byte("\x1f\x8b..."), KindJSON, SourceReservation, promptEstimate, 1000},
		{"compressed stream: the reservation", usage.APIChatCompletions, 200, "text/event-stream", "br", []byte("\x1f\x8b..."), KindSSE, SourceReservation, promptEstimate, 1000},
		{"upstream error: nothing", usage.APIChatCompletions, 429, "application/json", "", readFixture(t, "responses/error_rate_limited.json"), KindError, SourceNone, 0, 0},
		{"upstream 500", usage.APIChatCompletions, 500, "text/plain", "", []byte("boom"), KindError, SourceNone, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := testPlan(tt.api, false)
			r := p.NewResponse(pl, tt.status, tt.ct, tt.ce)
			assert.Equal(t, tt.kind, r.Kind())
			assert.False(t, r.Rewrites())
			// Split in three: JSON bodies are only copied, never changed.
			n := len(tt.body)
			for i, c := range chunks(tt.body, []int{n / 3, 2 * n / 3}) {
				out, changed := r.Feed(c, i == 2)
				assert.False(t, changed)
				assert.Equal(t, c, out)
			}
			u, src := r.Usage()
			assert.Equal(t, tt.source, src)
			if tt.prompt >= 0 {
				assert.Equal(t, tt.prompt, u.PromptTokens)
			} else {
				assert.Positive(t, u.PromptTokens)
			}
			if tt.complete >= 0 {
				assert.Equal(t, tt.complete, u.CompletionTokens)
			} else {
				assert.Positive(t, u.CompletionTokens)
			}
			assert.Equal(t, src == SourceEstimated || src == SourceReservation, u.Estimated)
			// Feeding after the end changes nothing.
			out, changed := r.Feed([]byte("x"), true)
			assert.False(t, changed)
			assert.Equal(t, []byte("x"), out)
		})
	}
}

func TestResponsePartial(t *testing.T) {
	p := mustParse(t, `{}`)
	body := readFixture(t, "streams/openai_chat_usage.sse")
	half := bytes.Index(body, []byte(`"content":" Canada"`))
	require.Positive(t, half)

	r := p.NewResponse(testPlan(usage.APIChatCompletions, true), 200, "text/event-stream", "")
	r.Feed(body[:half], false)
	u, src := r.Partial()
	assert.Equal(t, SourceEstimated, src)
	assert.Equal(t, int64(promptEstimate), u.PromptTokens)
	assert.Positive(t, u.CompletionTokens)
	assert.Less(t, u.CompletionTokens, int64(28), "only what was streamed")

	// vLLM cumulative usage: the last usage seen.
	cut := readFixture(t, "streams/vllm_continuous_usage_cut.sse")
	r = p.NewResponse(testPlan(usage.APIChatCompletions, false), 200, "text/event-stream", "")
	r.Feed(cut, false)
	u, src = r.Partial()
	assert.Equal(t, SourceUpstream, src)
	assert.Equal(t, int64(52), u.TotalTokens)

	r = p.NewResponse(testPlan(usage.APIChatCompletions, false), 200, "application/json", "")
	r.Feed([]byte(`{"choices":`), false)
	u, src = r.Partial()
	assert.Equal(t, SourceReservation, src)
	assert.Equal(t, int64(promptEstimate+1000), u.TotalTokens)

	r = p.NewResponse(testPlan(usage.APIChatCompletions, false), 503, "application/json", "")
	_, src = r.Partial()
	assert.Equal(t, SourceNone, src)
}

func TestKindAndSourceNames(t *testing.T) {
	assert.Equal(t, "json", KindJSON.String())
	assert.Equal(t, "sse", KindSSE.String())
	assert.Equal(t, "error", KindError.String())
	assert.Equal(t, "upstream", SourceUpstream.String())
	assert.Equal(t, "estimated", SourceEstimated.String())
	assert.Equal(t, "reservation", SourceReservation.String())
	assert.Equal(t, "none", SourceNone.String())
}

// FuzzResponseSplit cuts recorded streams at random byte positions and
// checks that the metered output and usage equal those of the unsplit
// stream, with and without removal of the usage chunk.
func FuzzResponseSplit(f *testing.F) {
	files := []string{"openai_chat_usage.sse", "openai_chat_crlf.sse", "openai_chat_utf8.sse", "openai_chat_no_usage.sse",
		"vllm_continuous_usage.sse", "openrouter_keepalive.sse", "completions_usage.sse", "anthropic_messages.sse"}
	f.Add(uint8(0), true, uint64(1), uint16(7))
	f.Add(uint8(1), true, uint64(99), uint16(1))
	f.Add(uint8(2), false, uint64(5), uint16(300))
	f.Add(uint8(7), false, uint64(3), uint16(64))
	p, err := Parse(nil)
	if err != nil {
		f.Fatal(err)
	}
	bodies := make([][]byte, len(files))
	for i, name := range files {
		bodies[i] = readFixture(f, "streams/"+name)
	}
	f.Fuzz(func(t *testing.T, which uint8, strip bool, seed uint64, n uint16) {
		i := int(which) % len(files)
		body := bodies[i]
		api := usage.APIChatCompletions
		switch files[i] {
		case "completions_usage.sse":
			api = usage.APICompletions
		case "anthropic_messages.sse":
			api, strip = usage.APIAnthropicMessages, false
		}
		pl := testPlan(api, strip)
		whole := meterChunks(t, p, pl, 200, "text/event-stream", "", [][]byte{body})
		rng := rand.New(rand.NewPCG(seed, uint64(n)))
		cuts := make([]int, int(n)%64)
		for j := range cuts {
			cuts[j] = rng.IntN(len(body) + 1)
		}
		slices.Sort(cuts)
		got := meterChunks(t, p, pl, 200, "text/event-stream", "", chunks(body, cuts))
		require.Equal(t, whole, got)
	})
}

// BenchmarkResponseStream is the filter's per-chunk work on a recorded
// OpenAI stream delivered one event per body chunk: SSE parsing, usage and
// text counting, and (strip) removal of the usage chunk. ns/chunk is the
// per-callback cost natively; a Go Wasm module runs it about 10× slower.
func BenchmarkResponseStream(b *testing.B) {
	p, err := Parse(nil)
	require.NoError(b, err)
	body := readFixture(b, "streams/openai_chat_usage.sse")
	var parts [][]byte
	for len(body) > 0 {
		i := bytes.Index(body, []byte("\n\n"))
		parts = append(parts, body[:i+2])
		body = body[i+2:]
	}
	for _, strip := range []bool{false, true} {
		name := "count"
		if strip {
			name = "count+strip"
		}
		b.Run(name, func(b *testing.B) {
			pl := testPlan(usage.APIChatCompletions, strip)
			b.ReportAllocs()
			for b.Loop() {
				r := p.NewResponse(pl, 200, "text/event-stream", "")
				for i, c := range parts {
					r.Feed(c, i == len(parts)-1)
				}
				if u, _ := r.Usage(); u.TotalTokens != 71 {
					b.Fatal(u)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(parts)), "ns/chunk")
		})
	}
}
