package route

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const backend = "/gcs/google/gemma-3-1b-it"

func TestResponseKindFor(t *testing.T) {
	tests := []struct {
		ct, ce string
		want   ResponseKind
	}{
		{"application/json", "", ResponseJSON},
		{"application/json; charset=utf-8", "identity", ResponseJSON},
		{"text/event-stream", "", ResponseSSE},
		{"Text/Event-Stream; charset=utf-8", "", ResponseSSE},
		{"application/json", "gzip", ResponseUntouched},
		{"text/plain", "", ResponseUntouched},
		{"", "", ResponseUntouched},
	}
	for _, tt := range tests {
		t.Run(tt.ct+"/"+tt.ce, func(t *testing.T) {
			assert.Equal(t, tt.want, ResponseKindFor(tt.ct, tt.ce))
		})
	}
}

func TestMapModel(t *testing.T) {
	resp := loadFixture(t, "response.json")
	tests := []struct {
		name   string
		doc    string
		want   string
		mapped bool
	}{
		{"fixture", string(resp), strings.Replace(string(resp), `"model":"`+backend+`"`, `"model":"gemma-3-1b-it"`, 1), true},
		{"other model kept", `{"model":"x"}`, `{"model":"x"}`, false},
		{"no model", `{"id":1}`, `{"id":1}`, false},
		{"nested only", `{"a":{"model":"` + backend + `"}}`, `{"a":{"model":"` + backend + `"}}`, false},
		{"not json", `oops`, `oops`, false},
		{"array", `[1]`, `[1]`, false},
		{"whitespace kept", " {\"model\" : \"" + backend + "\" }\n", " {\"model\" : \"gemma-3-1b-it\" }\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := MapModel([]byte(tt.doc), backend, "gemma-3-1b-it")
			assert.Equal(t, tt.mapped, ok)
			assert.Equal(t, tt.want, string(got))
		})
	}
}

// feedAll runs a StreamMapper over chunks the way the filter does in a
// proxy: held bytes stay in the proxy's buffer and come back with the next
// chunk. It returns everything forwarded.
func feedAll(t testing.TB, max int, chunks [][]byte) (string, int) {
	t.Helper()
	m := NewStreamMapper(backend, "gemma-3-1b-it", max)
	var out bytes.Buffer
	var buffered []byte
	for i, c := range chunks {
		buffered = append(buffered, c...)
		o, unchanged, hold := m.Map(buffered, i == len(chunks)-1)
		if hold {
			require.NotEqual(t, len(chunks)-1, i, "never holds at the end")
			continue
		}
		if unchanged {
			require.Equal(t, buffered, o)
		}
		out.Write(o)
		buffered = nil
	}
	require.Empty(t, buffered)
	return out.String(), m.Mapped()
}

func splitEvery(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

func TestStreamMapperFixture(t *testing.T) {
	in := loadFixture(t, "stream.sse")
	want := strings.ReplaceAll(string(in), `"model":"`+backend+`"`, `"model":"gemma-3-1b-it"`)
	for _, size := range []int{1, 2, 3, 7, 16, 64, len(in)} {
		t.Run("chunks of "+string(rune('0'+size%10)), func(t *testing.T) {
			got, mapped := feedAll(t, 4096, splitEvery(in, size))
			assert.Equal(t, want, got)
			assert.Equal(t, 2, mapped)
		})
	}
}

func TestStreamMapperTable(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		max    int
		want   string
	}{
		{"no events", []string{"", ""}, 64, ""},
		{"unterminated last line flushed at eos", []string{`data: {"model":"` + backend + `"}`}, 256, `data: {"model":"gemma-3-1b-it"}`},
		{"held across empty eos chunk", []string{`data: {"model":"` + backend + `"}`, ``}, 256, `data: {"model":"gemma-3-1b-it"}`},
		{"line split in three", []string{`data: {"mo`, `del":"` + backend, `"}` + "\n\n", ``}, 256, "data: {\"model\":\"gemma-3-1b-it\"}\n\n"},
		{"oversize split line then a short one", []string{`data: {"model":"` + backend + `","pad":"`, strings.Repeat("y", 50), "\"}\ndata: {\"mo", "del\":\"" + backend + "\"}\n", ""}, 40,
			`data: {"model":"` + backend + `","pad":"` + strings.Repeat("y", 50) + "\"}\ndata: {\"model\":\"gemma-3-1b-it\"}\n"},
		{"crlf kept", []string{"data: {\"model\":\"" + backend + "\"}\r\n\r\n"}, 256, "data: {\"model\":\"gemma-3-1b-it\"}\r\n\r\n"},
		{"no space after colon", []string{"data:{\"model\":\"" + backend + "\"}\n"}, 256, "data:{\"model\":\"gemma-3-1b-it\"}\n"},
		{"oversize line passes untouched", []string{`data: {"model":"` + backend + `","pad":"`, strings.Repeat("x", 50), "\"}\n", "data: {\"model\":\"" + backend + "\"}\n"}, 40,
			`data: {"model":"` + backend + `","pad":"` + strings.Repeat("x", 50) + "\"}\ndata: {\"model\":\"gemma-3-1b-it\"}\n"},
		{"comment and done", []string{": hi\n\ndata: [DONE]\n\n"}, 64, ": hi\n\ndata: [DONE]\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chunks := make([][]byte, len(tt.chunks))
			for i, c := range tt.chunks {
				chunks[i] = []byte(c)
			}
			got, _ := feedAll(t, tt.max, chunks)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestStreamMapperForwardsCompleteLinesAtOnce(t *testing.T) {
	m := NewStreamMapper(backend, "gemma-3-1b-it", 4096)
	out, unchanged, hold := m.Map([]byte("data: {\"model\":\"other\"}\n\n"), false)
	assert.False(t, hold)
	assert.True(t, unchanged)
	assert.Equal(t, "data: {\"model\":\"other\"}\n\n", string(out))
	_, _, hold = m.Map([]byte("data: {\"mod"), false)
	assert.True(t, hold, "an incomplete line is held in the proxy")
	out, unchanged, hold = m.Map([]byte("data: {\"model\":\""+backend+"\"}\n\n"), false)
	assert.False(t, hold)
	assert.False(t, unchanged)
	assert.Equal(t, "data: {\"model\":\"gemma-3-1b-it\"}\n\n", string(out))
	out, unchanged, hold = m.Map([]byte("data: {\"model\":\""+backend+"\"}"), true)
	assert.False(t, hold, "the end of the stream is never held")
	assert.False(t, unchanged)
	assert.Equal(t, "data: {\"model\":\"gemma-3-1b-it\"}", string(out))
	assert.Equal(t, 2, m.Mapped())
}

func FuzzStreamMapper(f *testing.F) {
	f.Add(loadFixture(f, "stream.sse"), []byte{3, 9, 1})
	f.Add([]byte("data: {\"model\":\""+backend+"\"}"), []byte{1})
	f.Add([]byte("\r\n\ndata:\n"), []byte{0, 2})
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		whole, _ := feedAll(t, 1<<20, [][]byte{stream})
		// Any chunking gives the same bytes as the whole stream at once.
		var chunks [][]byte
		rest := stream
		for _, c := range cuts {
			n := min(int(c), len(rest))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		chunks = append(chunks, rest)
		split, _ := feedAll(t, 1<<20, chunks)
		require.Equal(t, whole, split)
		// Lines without the backend model are forwarded byte for byte, even
		// when lines outgrow a tiny hold limit.
		if !bytes.Contains(stream, []byte("gcs")) {
			require.Equal(t, string(stream), whole)
			tiny, _ := feedAll(t, 4, chunks)
			require.Equal(t, string(stream), tiny)
		}
	})
}
