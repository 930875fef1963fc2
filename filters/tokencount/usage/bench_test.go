package usage

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/shared/sse"
)

// BenchmarkStreamUsage is the cost of extracting usage from a whole
// recorded stream fed in 512-byte body chunks (content counted too).
func BenchmarkStreamUsage(b *testing.B) {
	for _, name := range []string{"openai_chat_usage", "vllm_continuous_usage", "anthropic_messages"} {
		stream := readFile(b, "streams/"+name+".sse")
		api := APIChatCompletions
		if name == "anthropic_messages" {
			api = APIAnthropicMessages
		}
		chunks := chunked(stream, nil, 512)
		b.Run(name, func(b *testing.B) {
			s := NewStreamCounter(api, sse.Options{})
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				s.Reset()
				for _, c := range chunks {
					_ = s.Feed(c)
				}
				_ = s.Finish()
				if !s.Found() {
					b.Fatal("no usage")
				}
			}
		})
	}
}

// BenchmarkStreamEvent is the cost of one typical content chunk: SSE
// parsing plus usage and content extraction.
func BenchmarkStreamEvent(b *testing.B) {
	chunk := []byte(`data: {"id":"chatcmpl-BHz4kqGkR9TnC3d1f0oXyG2pLwVsE","object":"chat.completion.chunk","created":1743412201,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"content":" business"},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n")
	s := NewStreamCounter(APIChatCompletions, sse.Options{})
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Feed(chunk)
	}
}

// BenchmarkEstimate is the cost of parsing a request and estimating its
// reservation.
func BenchmarkEstimate(b *testing.B) {
	for _, name := range []string{"chat_simple", "chat_multiturn_code", "chat_vision", "anthropic_messages"} {
		body := readFile(b, "requests/"+name+".json")
		api := APIChatCompletions
		if name == "anthropic_messages" {
			api = APIAnthropicMessages
		}
		b.Run(name, func(b *testing.B) {
			var e Estimator
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				req, err := ParseRequest(api, body)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = e.Reservation(req)
			}
		})
	}
}

// BenchmarkIncludeUsage is the cost of the request rewrite.
func BenchmarkIncludeUsage(b *testing.B) {
	body := []byte(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Do you ship to Canada?"}],"max_tokens":256}`)
	b.ReportAllocs()
	for b.Loop() {
		_, _, _ = IncludeUsage(APIChatCompletions, body)
	}
}

// BenchmarkTextTokens is the heuristic over a 16 KiB English prompt, the
// per-KiB work of tokencount's strict bound (docs/benchmarks.md, "Body size").
func BenchmarkTextTokens(b *testing.B) {
	s := strings.Repeat("Summarise the gateway in one line. ", 16<<10/35)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		TextTokens(s)
	}
}
