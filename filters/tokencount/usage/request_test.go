package usage

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAPIForPath(t *testing.T) {
	tests := []struct {
		path string
		want API
	}{
		{"/v1/chat/completions", APIChatCompletions},
		{"/v1/chat/completions?api-version=2024-10-21", APIChatCompletions},
		{"/openai/v1/chat/completions/", APIChatCompletions},
		{"/v1/completions", APICompletions},
		{"/v1/embeddings", APIEmbeddings},
		{"/v1/messages", APIAnthropicMessages},
		{"/v1/models", APIUnknown},
		{"/v1/threads/abc/messages", APIUnknown},
		{"", APIUnknown},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, APIForPath(tc.path), tc.path)
	}
}

func TestParseRequestFields(t *testing.T) {
	tests := []struct {
		name string
		api  API
		body string
		want Request // Prompt compared on selected fields below
	}{
		{
			name: "chat defaults", api: APIChatCompletions,
			body: `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
			want: Request{API: APIChatCompletions, Model: "gpt-4o", N: 1},
		},
		{
			name: "chat stream with usage, max_completion_tokens wins", api: APIChatCompletions,
			body: `{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":10,"max_completion_tokens":20,"n":3,"messages":[{"role":"user","content":"hi"}]}`,
			want: Request{API: APIChatCompletions, Model: "m", Stream: true, IncludeUsage: true, StreamOptions: true, MaxOutput: 20, MaxOutputSet: true, N: 3},
		},
		{
			name: "stream_options without include_usage", api: APIChatCompletions,
			body: `{"model":"m","stream":true,"stream_options":{},"messages":[{"role":"user","content":"hi"}]}`,
			want: Request{API: APIChatCompletions, Model: "m", Stream: true, StreamOptions: true, N: 1},
		},
		{
			name: "chat legacy max_tokens, nulls ignored", api: APIChatCompletions,
			body: `{"model":"m","stream":null,"stream_options":null,"max_completion_tokens":null,"max_tokens":7,"n":null,"messages":[{"role":"user","content":"hi"}]}`,
			want: Request{API: APIChatCompletions, Model: "m", StreamOptions: true, MaxOutput: 7, MaxOutputSet: true, N: 1},
		},
		{
			name: "completions best_of raises n", api: APICompletions,
			body: `{"model":"i","prompt":"x","max_tokens":5,"n":2,"best_of":4}`,
			want: Request{API: APICompletions, Model: "i", MaxOutput: 5, MaxOutputSet: true, N: 4},
		},
		{
			name: "embeddings", api: APIEmbeddings,
			body: `{"model":"e","input":["a","b"]}`,
			want: Request{API: APIEmbeddings, Model: "e", N: 1},
		},
		{
			name: "anthropic", api: APIAnthropicMessages,
			body: `{"model":"claude","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			want: Request{API: APIAnthropicMessages, Model: "claude", Stream: true, MaxOutput: 1024, MaxOutputSet: true, N: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRequest(tc.api, []byte(tc.body))
			require.NoError(t, err)
			got.Prompt, got.View = Prompt{}, nil
			assert.Equal(t, tc.want, *got)
		})
	}
}

func TestParseRequestPrompt(t *testing.T) {
	tests := []struct {
		name string
		api  API
		body string
		want Prompt
	}{
		{
			name: "chat string and parts", api: APIChatCompletions,
			body: `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","name":"bo","content":[{"type":"text","text":"hello world"}]}]}`,
			want: Prompt{Messages: 2, Names: 1, Inputs: 1, TextTokens: TextTokens("system") + TextTokens("Be brief.") + TextTokens("user") + TextTokens("bo") + TextTokens("hello world"),
				TextBytes: 32, Texts: 5},
		},
		{
			name: "assistant tool call without content", api: APIChatCompletions,
			body: `{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]}]}`,
			want: Prompt{Messages: 1, Inputs: 1, TextTokens: TextTokens("assistant") + TextTokens("f") + TextTokens(`{"x":1}`),
				TextBytes: 9, Texts: 1, ToolBytes: 8, Tools: 1},
		},
		{
			name: "completions token ids", api: APICompletions,
			body: `{"prompt":[1,2,3,4]}`,
			want: Prompt{Inputs: 1, TokenIDs: 4},
		},
		{
			name: "completions token arrays", api: APICompletions,
			body: `{"prompt":[[1,2],[3]]}`,
			want: Prompt{Inputs: 2, TokenIDs: 3},
		},
		{
			name: "embeddings strings", api: APIEmbeddings,
			body: `{"input":["one two","three"]}`,
			want: Prompt{Inputs: 2, TextTokens: TextTokens("one two") + TextTokens("three"), TextBytes: 12, Texts: 2},
		},
		{
			name: "anthropic system blocks and tool use", api: APIAnthropicMessages,
			body: `{"max_tokens":5,"system":[{"type":"text","text":"sys"}],"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"get","input":{"q":1}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"ok"}]}]}`,
			want: Prompt{Messages: 3, Inputs: 1, TextTokens: TextTokens("sys") + TextTokens("assistant") + TextTokens("get") + TextTokens(`{"q":1}`) + TextTokens("user") + TextTokens("ok"),
				TextBytes: 18, Texts: 4, ToolBytes: 10, Tools: 1},
		},
		{
			name: "anthropic document counted as file", api: APIAnthropicMessages,
			body: `{"max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"url","url":"https://x/y.pdf"}}]}]}`,
			want: Prompt{Messages: 1, Inputs: 1, Files: 1, TextTokens: TextTokens("user"), TextBytes: 4, Texts: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRequest(tc.api, []byte(tc.body))
			require.NoError(t, err)
			assert.Equal(t, tc.want, got.Prompt)
		})
	}
}

// Bodies two JSON parsers could read differently are refused by the
// canonical view (the upstream might read the other value).
func TestParseRequestAmbiguousRefused(t *testing.T) {
	for _, body := range []string{
		`{"messages":[{"role":"user","content":"a","content":"one two three four five six"}]}`,
		`{"model":"m","stream":true,"stream\u005foptions":{"include_usage":false},"messages":[{"role":"user","content":"hi"}]}`,
		`{"max_tokens":1,"Max_tokens":40,"messages":[{"role":"user","content":"hi"}]}`,
		`{"max_tokens":1,"messages":[{"role":"user","Content":"hi","content":"x"}]}`,
	} {
		_, err := ParseRequest(APIChatCompletions, []byte(body))
		var re *RequestError
		require.ErrorAs(t, err, &re, body)
		assert.Equal(t, "ambiguous_json", re.Code, body)
		assert.Equal(t, 400, re.Status, body)
	}
	_, err := ParseRequest(APIChatCompletions, []byte(`{"messages":[{"role":"user","content":`+strings.Repeat("[", 5000)+strings.Repeat("]", 5000)+`}]}`))
	var re *RequestError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "json_too_deep", re.Code)
}

func TestParseRequestDoesNotAliasBody(t *testing.T) {
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}},{"type":"image_url","image_url":{"url":"https://x","detail":"low"}}]}]}`)
	req, err := ParseRequest(APIChatCompletions, body)
	require.NoError(t, err)
	for i := range body {
		body[i] = 'X'
	}
	assert.Equal(t, "gpt-4o", req.Model)
	assert.Equal(t, "wav", req.Prompt.Audio[0].Format)
	assert.Equal(t, "low", req.Prompt.Images[0].Detail)
}

func TestParseRequestErrors(t *testing.T) {
	tests := []struct {
		name  string
		api   API
		body  string
		param string
	}{
		{"not json", APIChatCompletions, `{"model":`, ""},
		{"not an object", APIChatCompletions, `[1,2]`, ""},
		{"empty body", APIChatCompletions, ``, ""},
		{"model not string", APIChatCompletions, `{"model":3,"messages":[]}`, "model"},
		{"stream not bool", APIChatCompletions, `{"stream":"yes","messages":[{"role":"user","content":"x"}]}`, "stream"},
		{"stream_options not object", APIChatCompletions, `{"stream_options":true,"messages":[{"role":"user","content":"x"}]}`, "stream_options"},
		{"include_usage not bool", APIChatCompletions, `{"stream_options":{"include_usage":1},"messages":[{"role":"user","content":"x"}]}`, "stream_options.include_usage"},
		{"messages missing", APIChatCompletions, `{"model":"m"}`, "messages"},
		{"messages empty", APIChatCompletions, `{"messages":[]}`, "messages"},
		{"message not object", APIChatCompletions, `{"messages":["hi"]}`, "messages[0]"},
		{"role missing", APIChatCompletions, `{"messages":[{"content":"x"}]}`, "messages[0].role"},
		{"content wrong type", APIChatCompletions, `{"messages":[{"role":"user","content":5}]}`, "messages[0].content"},
		{"part without type", APIChatCompletions, `{"messages":[{"role":"user","content":[{"text":"x"}]}]}`, "messages[0].content[0].type"},
		{"text part without text", APIChatCompletions, `{"messages":[{"role":"user","content":[{"type":"text"}]}]}`, "messages[0].content[0].text"},
		{"image without url", APIChatCompletions, `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}`, "messages[0].content[0].image_url.url"},
		{"bad detail", APIChatCompletions, `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x","detail":"ultra"}}]}]}`, "messages[0].content[0].image_url.detail"},
		{"audio without data", APIChatCompletions, `{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"format":"wav"}}]}]}`, "messages[0].content[0].input_audio.data"},
		{"max_tokens negative", APIChatCompletions, `{"max_tokens":-1,"messages":[{"role":"user","content":"x"}]}`, "max_tokens"},
		{"max_tokens fractional", APIChatCompletions, `{"max_tokens":1.5,"messages":[{"role":"user","content":"x"}]}`, "max_tokens"},
		{"max_tokens string", APIChatCompletions, `{"max_completion_tokens":"10","messages":[{"role":"user","content":"x"}]}`, "max_completion_tokens"},
		{"n zero", APIChatCompletions, `{"n":0,"messages":[{"role":"user","content":"x"}]}`, "n"},
		{"n huge", APIChatCompletions, `{"n":100000,"messages":[{"role":"user","content":"x"}]}`, "n"},
		{"tools not array", APIChatCompletions, `{"tools":{},"messages":[{"role":"user","content":"x"}]}`, "tools"},
		{"prompt missing", APICompletions, `{"model":"m"}`, "prompt"},
		{"prompt wrong type", APICompletions, `{"prompt":{}}`, "prompt"},
		{"prompt empty array", APICompletions, `{"prompt":[]}`, "prompt"},
		{"prompt mixed", APICompletions, `{"prompt":[1,"a"]}`, "prompt"},
		{"prompt bad token", APICompletions, `{"prompt":[[1,"a"]]}`, "prompt[0]"},
		{"input missing", APIEmbeddings, `{"model":"m"}`, "input"},
		{"input bad element", APIEmbeddings, `{"input":[true]}`, "input[0]"},
		{"anthropic content wrong", APIAnthropicMessages, `{"messages":[{"role":"user","content":7}]}`, "messages[0].content"},
		{"anthropic block text wrong", APIAnthropicMessages, `{"messages":[{"role":"user","content":[{"type":"text","text":1}]}]}`, "messages[0].content[0].text"},
		{"anthropic nested tool_result", APIAnthropicMessages, `{"messages":[{"role":"user","content":[{"type":"tool_result","content":[{"type":"text","text":false}]}]}]}`, "messages[0].content[0].content[0].text"},
		{"unsupported api", APIUnknown, `{}`, ""},
		{"duplicate max_tokens", APIChatCompletions, `{"max_tokens":1,"messages":[{"role":"user","content":"x"}],"max_tokens":100000}`, ""},
		{"duplicate model", APIChatCompletions, `{"model":"cheap","model":"expensive","messages":[{"role":"user","content":"x"}]}`, ""},
		{"duplicate stream", APIChatCompletions, `{"stream":false,"stream":true,"messages":[{"role":"user","content":"x"}]}`, ""},
		{"detail not a string", APIChatCompletions, `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x","detail":1}}]}]}`, "messages[0].content[0].image_url.detail"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRequest(tc.api, []byte(tc.body))
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrMalformedRequest))
			var re *RequestError
			require.True(t, errors.As(err, &re))
			assert.Equal(t, tc.param, re.Param)
			assert.Contains(t, err.Error(), "malformed request body")
		})
	}
}

// png returns the first bytes of a PNG of the given size.
func pngHeader(w, h uint32) []byte {
	b := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
	b = binary.BigEndian.AppendUint32(b, w)
	b = binary.BigEndian.AppendUint32(b, h)
	return append(b, 8, 2, 0, 0, 0, 0, 0, 0, 0)
}

func TestImageSizeFromHeaders(t *testing.T) {
	jpeg := []byte{0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x10}
	jpeg = append(jpeg, make([]byte, 14)...) // an APP1 segment to skip
	jpeg = append(jpeg, 0xFF, 0xC2, 0x00, 0x11, 0x08, 0x02, 0xD0, 0x05, 0x00, 0x03)
	gif := []byte("GIF89a\x2c\x01\xc8\x00\x00\x00")
	webpX := []byte("RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00\x7f\x07\x00\x37\x04\x00")
	tests := []struct {
		name string
		data []byte
		w, h int
		ok   bool
	}{
		{"png", pngHeader(1280, 720), 1280, 720, true},
		{"jpeg progressive after app1", jpeg, 1280, 720, true},
		{"gif", gif, 300, 200, true},
		{"webp extended", webpX, 1920, 1080, true},
		{"garbage", []byte("hello, not an image at all"), 0, 0, false},
		{"truncated jpeg", []byte{0xFF, 0xD8, 0xFF, 0xE1, 0x40, 0x00, 0, 0, 0, 0}, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
				b, ok := newB64(enc.EncodeToString(tc.data))
				require.True(t, ok)
				w, h, ok := imageSize(b)
				assert.Equal(t, tc.ok, ok)
				assert.Equal(t, tc.w, w)
				assert.Equal(t, tc.h, h)
			}
		})
	}
}

func TestImageTokens(t *testing.T) {
	var e Estimator
	tests := []struct {
		name string
		img  ImagePart
		want int64
	}{
		{"low detail any size", ImagePart{Detail: "low", Width: 4096, Height: 8192}, 85},
		{"1024 square high (OpenAI example)", ImagePart{Detail: "high", Width: 1024, Height: 1024}, 765},
		{"2048x4096 high (OpenAI example)", ImagePart{Detail: "high", Width: 2048, Height: 4096}, 1105},
		{"small image is not scaled up", ImagePart{Detail: "high", Width: 512, Height: 512}, 255},
		{"auto treated as high", ImagePart{Detail: "auto", Width: 513, Height: 500}, 425},
		{"unknown size uses default", ImagePart{}, 765},
		{"anthropic 1000x1000", ImagePart{Rule: ImageAnthropic, Width: 1000, Height: 1000}, 1334},
		{"anthropic capped", ImagePart{Rule: ImageAnthropic, Width: 4000, Height: 4000}, 1600},
		{"anthropic unknown", ImagePart{Rule: ImageAnthropic}, 1600},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, e.ImageTokens(tc.img), tc.name)
	}
	custom := Estimator{UnknownImageWidth: 512, UnknownImageHeight: 512}
	assert.Equal(t, int64(255), custom.ImageTokens(ImagePart{}))
}

// wav builds a PCM WAV header plus silence.
func wav(rate, seconds int) []byte {
	data := rate * 2 * seconds
	b := []byte("RIFF")
	b = binary.LittleEndian.AppendUint32(b, uint32(36+data))
	b = append(b, "WAVEfmt "...)
	b = binary.LittleEndian.AppendUint32(b, 16)
	b = binary.LittleEndian.AppendUint16(b, 1)
	b = binary.LittleEndian.AppendUint16(b, 1)
	b = binary.LittleEndian.AppendUint32(b, uint32(rate))
	b = binary.LittleEndian.AppendUint32(b, uint32(rate*2))
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 16)
	b = append(b, "data"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(data))
	return append(b, make([]byte, data)...)
}

func TestAudio(t *testing.T) {
	var e Estimator
	b, ok := newB64(base64.StdEncoding.EncodeToString(wav(8000, 3)))
	require.True(t, ok)
	s, ok := audioSeconds(b, "wav")
	require.True(t, ok)
	assert.InDelta(t, 3.0, s, 1e-9)
	assert.Equal(t, int64(30), e.AudioTokens(AudioPart{Seconds: s, Known: true}))

	// 128 kbit/s MPEG-1 layer III frame header, then 16000 bytes: 1 s.
	mp3 := append([]byte{0xFF, 0xFB, 0x90, 0x64}, make([]byte, 16000-4)...)
	b, _ = newB64(base64.StdEncoding.EncodeToString(mp3))
	s, ok = audioSeconds(b, "mp3")
	require.True(t, ok)
	assert.InDelta(t, 1.0, s, 1e-9)

	_, ok = audioSeconds(b, "flac")
	assert.False(t, ok)
	assert.Equal(t, int64(300), e.AudioTokens(AudioPart{}), "unknown: 30 s default")
	assert.Equal(t, int64(300), e.AudioTokens(AudioPart{Seconds: math.NaN(), Known: true}))
}

func TestReservation(t *testing.T) {
	parse := func(api API, body string) *Request {
		t.Helper()
		r, err := ParseRequest(api, []byte(body))
		require.NoError(t, err)
		return r
	}
	e := Estimator{DefaultMaxOutput: 1000}
	tests := []struct {
		name       string
		req        *Request
		est        Estimator
		wantOutput int64
	}{
		{"client max × n", parse(APIChatCompletions, `{"max_tokens":100,"n":3,"messages":[{"role":"user","content":"x"}]}`), e, 300},
		{"default when unset", parse(APIChatCompletions, `{"messages":[{"role":"user","content":"x"}]}`), e, 1000},
		{"cap applies", parse(APIChatCompletions, `{"max_tokens":100000,"messages":[{"role":"user","content":"x"}]}`), Estimator{MaxOutputCap: 8192}, 8192},
		{"completions per prompt", parse(APICompletions, `{"max_tokens":40,"n":2,"prompt":["a","b"]}`), e, 160},
		{"embeddings have no output", parse(APIEmbeddings, `{"input":"x"}`), e, 0},
		{"package default", parse(APIAnthropicMessages, `{"messages":[{"role":"user","content":"x"}]}`), Estimator{}, DefaultMaxOutput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prompt, out := tc.est.Reservation(tc.req)
			assert.Equal(t, tc.est.PromptTokens(tc.req), prompt)
			assert.Positive(t, prompt)
			assert.Equal(t, tc.wantOutput, out)
		})
	}
}

// TestEstimatorOnFixtures measures the prompt estimate against o200k counts
// with cookbook accounting on the request fixtures (numbers in DESIGN.md).
func TestEstimatorOnFixtures(t *testing.T) {
	var e Estimator
	var sumAbs float64
	n := 0
	for _, fx := range loadRequests(t) {
		api := APIForPath(fx.Path)
		req, err := ParseRequest(api, readFile(t, "requests/"+fx.File))
		require.NoError(t, err, fx.File)
		est := e.PromptTokens(req)
		if fx.Truth == nil {
			t.Logf("%-24s est=%5d (no reference count)", fx.File, est)
			continue
		}
		errRel := float64(est-*fx.Truth) / float64(*fx.Truth)
		t.Logf("%-24s truth=%5d est=%5d err=%+5.1f%%", fx.File, *fx.Truth, est, 100*errRel)
		assert.LessOrEqual(t, math.Abs(errRel), 0.25, fx.File)
		sumAbs += math.Abs(errRel)
		n++
	}
	mean := sumAbs / float64(n)
	t.Logf("mean |error| over %d fixtures: %.1f%%", n, 100*mean)
	assert.Less(t, mean, 0.12)
}

func TestVisionFixtureReadsEveryHeader(t *testing.T) {
	req, err := ParseRequest(APIChatCompletions, readFile(t, "requests/chat_vision.json"))
	require.NoError(t, err)
	require.Len(t, req.Prompt.Images, 5)
	sizes := [][2]int{{1280, 720}, {3000, 2000}, {1600, 900}, {300, 200}, {0, 0}}
	for i, img := range req.Prompt.Images {
		assert.Equal(t, sizes[i], [2]int{img.Width, img.Height}, "image %d", i)
	}
	// 1280×720 high: 6 tiles; 3000×2000 auto: fit 2048, shorter side 768 →
	// 1152×768: 6 tiles; WebP low: 85; 300×200: 1 tile; remote URL: 1024²
	// default. The 140 KB of payloads play no part.
	var e Estimator
	assert.Equal(t, int64(1105+1105+85+255+765), func() int64 {
		var s int64
		for _, img := range req.Prompt.Images {
			s += e.ImageTokens(img)
		}
		return s
	}())
}

func FuzzParseRequest(f *testing.F) {
	for _, fx := range loadRequests(f) {
		if fx.File == "chat_vision.json" || fx.File == "chat_audio.json" {
			continue // large; the header parsers have their own seeds
		}
		f.Add(uint8(APIForPath(fx.Path)), readFile(f, "requests/"+fx.File))
	}
	f.Add(uint8(APIChatCompletions), []byte(`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQSkZJRgABAQ"}}]}]}`))
	f.Add(uint8(APIChatCompletions), []byte(`{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=","format":"wav"}}]}]}`))
	f.Fuzz(func(t *testing.T, api uint8, body []byte) {
		a := API(api % 5)
		req, err := ParseRequest(a, body)
		if err != nil {
			require.ErrorIs(t, err, ErrMalformedRequest)
			return
		}
		require.GreaterOrEqual(t, req.N, int64(1))
		require.LessOrEqual(t, req.N, int64(maxN))
		require.GreaterOrEqual(t, req.MaxOutput, int64(0))
		var e Estimator
		prompt, out := e.Reservation(req)
		require.GreaterOrEqual(t, prompt, int64(0))
		require.GreaterOrEqual(t, out, int64(0))
		// Never more than a few tokens per body byte, whatever the media.
		media := int64(len(req.Prompt.Images))*DefaultUnknownAnthropicImageTokens*2 + int64(len(req.Prompt.Audio)+1)*1e6 + int64(req.Prompt.Files)*DefaultFileTokens
		require.LessOrEqual(t, prompt, int64(4*len(body))+media)
	})
}

func FuzzImageHeader(f *testing.F) {
	f.Add(pngHeader(10, 20))
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x10, 0x00, 0x20})
	f.Add([]byte("RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2f\x00\x00\x00\x00"))
	f.Add(wav(8000, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, s := range []string{base64.StdEncoding.EncodeToString(data), string(data)} {
			b, ok := newB64(s)
			if !ok {
				continue
			}
			w, h, ok := imageSize(b)
			if ok {
				require.GreaterOrEqual(t, w, 0)
				require.GreaterOrEqual(t, h, 0)
			}
			for _, format := range []string{"wav", "mp3"} {
				if sec, ok := audioSeconds(b, format); ok {
					require.False(t, math.IsNaN(sec))
					require.GreaterOrEqual(t, sec, 0.0)
				}
			}
		}
	})
}
