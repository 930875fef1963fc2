package sse

import (
	"fmt"
	"testing"
)

// benchStream builds about size bytes of OpenAI-style chat chunks.
func benchStream(size int) []byte {
	var b []byte
	for i := 0; len(b) < size; i++ {
		b = fmt.Appendf(b, `data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"content":" token%d"},"logprobs":null,"finish_reason":null}]}`+"\n\n", i)
	}
	return append(b, "data: [DONE]\n\n"...)
}

// BenchmarkReader measures throughput over a 1 MiB stream cut into chunks
// of several sizes (MB/s is reported by -bench; allocs should be ~0).
func BenchmarkReader(b *testing.B) {
	stream := benchStream(1 << 20)
	for _, size := range []int{64, 512, 4096, 16384} {
		var chunks [][]byte
		for off := 0; off < len(stream); off += size {
			chunks = append(chunks, stream[off:min(off+size, len(stream))])
		}
		b.Run(fmt.Sprintf("chunk=%d", size), func(b *testing.B) {
			r := NewReader(Options{})
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			events := 0
			for b.Loop() {
				r.Reset()
				for _, c := range chunks {
					evs, _ := r.Feed(c)
					events += len(evs)
				}
			}
			if events == 0 {
				b.Fatal("no events")
			}
		})
	}
}

// BenchmarkReaderPerChunk is the cost of one typical upstream body chunk
// holding one complete event.
func BenchmarkReaderPerChunk(b *testing.B) {
	stream := benchStream(1)
	one := stream[:len(stream)-len("data: [DONE]\n\n")]
	r := NewReader(Options{})
	b.SetBytes(int64(len(one)))
	b.ReportAllocs()
	for b.Loop() {
		evs, _ := r.Feed(one)
		if len(evs) != 1 {
			b.Fatal("want one event")
		}
	}
}

// BenchmarkPassthrough measures forwarding with a drop rule that never
// matches (the usual case: nothing to remove).
func BenchmarkPassthrough(b *testing.B) {
	stream := benchStream(1 << 20)
	var chunks [][]byte
	for off := 0; off < len(stream); off += 4096 {
		chunks = append(chunks, stream[off:min(off+4096, len(stream))])
	}
	p := NewPassthrough(Options{}, func(e *Event) bool { return len(e.Data) == 0 })
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		p.Reset()
		for _, c := range chunks {
			_, _ = p.Feed(c)
		}
		_, _ = p.Finish()
	}
}
