package reqview

import (
	"strconv"
	"strings"
	"testing"
)

// chatBody is a chat request of about size bytes spread over messages, as
// agents send long conversations.
func chatBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"gemma-3-1b-it","stream":true,"stream_options":{"include_usage":true},"max_tokens":256,"messages":[`)
	msg := strings.Repeat("lorem ipsum dolor sit amet ", 20)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"role":"user","content":[{"type":"text","text":"` + msg + strconv.Itoa(i) + `"}]}`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkParseRequest is the canonical view's cost per request: the
// validating pass, the top-level fields and the nested key checks.
func BenchmarkParseRequest(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10, 64 << 10, 1 << 20} {
		body := chatBody(size)
		b.Run(strconv.Itoa(size>>10)+"KB", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseRequest(body, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTextBytes is the strict token bound's cost on top of the parse.
func BenchmarkTextBytes(b *testing.B) {
	body := chatBody(16 << 10)
	r, err := ParseRequest(body, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if r.TextBytes() == 0 {
			b.Fatal("no text")
		}
	}
}
