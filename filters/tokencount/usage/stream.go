package usage

import (
	"bytes"

	"github.com/tollgate/tollgate/shared/reqview"
	"github.com/tollgate/tollgate/shared/sse"
)

// StreamCounter extracts usage from a streamed response event by event,
// so it never needs the whole stream. It understands:
//
//   - OpenAI's final usage chunk (stream_options.include_usage: an extra
//     chunk with "choices": [] and a usage object before [DONE]);
//   - vLLM-style usage on the last content chunk and per-chunk cumulative
//     usage (continuous_usage_stats): the last usage seen wins;
//   - Anthropic message_start (input and cache tokens) and message_delta
//     (cumulative output tokens) usage.
//
// It also counts the streamed text (content, reasoning, tool-call
// arguments) of every choice with the TextTokens heuristic, which Result
// uses when the stream carried no usage at all.
type StreamCounter struct {
	api     API
	r       *sse.Reader
	usage   Usage
	found   bool
	done    bool
	failed  bool
	choices []TextCounter
	// Anthropic usage fields, merged across message_start and message_delta
	aIn, aOut, aCacheW, aCacheR int64
	invalid                     bool        // an Anthropic usage field was not a count
	doc                         reqview.Doc // reused for every event: no allocation per event
}

// maxChoices bounds the per-choice counters (n is capped at maxN).
const maxChoices = maxN

// NewStreamCounter returns a counter for a stream of the given API.
func NewStreamCounter(api API, opts sse.Options) *StreamCounter {
	return &StreamCounter{api: api, r: sse.NewReader(opts)}
}

// Reset prepares the counter for another stream of the same API.
func (s *StreamCounter) Reset() {
	s.r.Reset()
	for i := range s.choices {
		s.choices[i].Reset()
	}
	doc := s.doc
	*s = StreamCounter{api: s.api, r: s.r, choices: s.choices[:0], doc: doc}
}

// Feed parses the next body chunk and observes the events it completes.
// Its error (an oversized event was skipped) is informational: counting
// goes on, and the result may then be incomplete.
func (s *StreamCounter) Feed(chunk []byte) error {
	evs, err := s.r.Feed(chunk)
	for i := range evs {
		s.Observe(&evs[i])
	}
	return err
}

// Finish observes an event the stream left unterminated at its end.
func (s *StreamCounter) Finish() error {
	evs, err := s.r.Finish()
	for i := range evs {
		s.Observe(&evs[i])
	}
	return err
}

// Observe takes one event, for callers that parse the stream themselves
// (for instance with sse.Passthrough).
func (s *StreamCounter) Observe(ev *sse.Event) {
	if ev.IsDone() {
		s.done = true
		return
	}
	if s.api == APIAnthropicMessages {
		s.anthropic(ev)
		return
	}
	// The event's bytes outlive this call only in copies: no string kept.
	o, ok := s.parse(ev.Data)
	if !ok {
		return
	}
	if isObject(o.Get("error")) {
		s.failed = true
	}
	if v := o.Get("usage"); isObject(v) {
		if u, ok := fromUsage(s.api, v); ok {
			s.usage, s.found = u, true
		}
	}
	o.Get("choices").Elems(func(_ int, c reqview.Value) bool {
		idx, _ := c.Get("index").Int()
		tc := s.choice(idx)
		if s.api == APICompletions {
			tc.WriteString(c.Get("text").View())
			return true
		}
		d := c.Get("delta")
		if !isObject(d) {
			d = c.Get("message") // some servers stream whole messages
		}
		for _, k := range [...]string{"content", "reasoning_content", "reasoning", "refusal"} {
			if t := d.Get(k); isString(t) {
				tc.WriteString(t.View())
			}
		}
		d.Get("tool_calls").Elems(func(_ int, call reqview.Value) bool {
			f := call.Get("function")
			tc.WriteString(f.Get("name").View())
			tc.WriteString(f.Get("arguments").View())
			return true
		})
		return true
	})
}

// parseJSON reads one upstream JSON document (an event's data, a response
// body) through the canonical view: iterative, depth-bounded, and refusing
// what two parsers could read differently; ok is false for anything else.
func parseJSON(b []byte) (reqview.Value, bool) {
	d, err := reqview.Parse(b, reqview.Limits{MaxBytes: len(b) + 1, MaxDepth: eventDepth})
	if err != nil {
		return reqview.Value{}, false
	}
	return d.Root(), true
}

// parse reads one event's data into the counter's reused Doc (see parseJSON).
func (s *StreamCounter) parse(b []byte) (reqview.Value, bool) {
	if err := s.doc.Parse(b, reqview.Limits{MaxBytes: len(b) + 1, MaxDepth: eventDepth}); err != nil {
		return reqview.Value{}, false
	}
	return s.doc.Root(), true
}

// eventDepth bounds the nesting of an upstream event or response: usage
// and deltas sit a few levels deep.
const eventDepth = 32

func (s *StreamCounter) anthropic(ev *sse.Event) {
	o, ok := s.parse(ev.Data)
	if !ok {
		return
	}
	switch o.Get("type").View() {
	case "message_start":
		s.anthropicUsage(o.Get("message").Get("usage"))
	case "message_delta":
		s.anthropicUsage(o.Get("usage"))
	case "content_block_start":
		b := o.Get("content_block")
		tc := s.choice(0)
		tc.WriteString(b.Get("text").View())
		tc.WriteString(b.Get("name").View())
	case "content_block_delta":
		d := o.Get("delta")
		tc := s.choice(0)
		for _, k := range [...]string{"text", "partial_json", "thinking"} {
			if t := d.Get(k); isString(t) {
				tc.WriteString(t.View())
			}
		}
	case "message_stop":
		s.done = true
	case "error":
		s.failed = true
	}
}

// anthropicUsage merges a usage object: present fields replace earlier
// ones (message_delta carries cumulative counts).
func (s *StreamCounter) anthropicUsage(v reqview.Value) {
	if !isObject(v) {
		return
	}
	s.found = true
	set := func(dst *int64, key string) {
		if f := v.Get(key); f.Exists() {
			*dst = count(f, &s.invalid)
		}
	}
	set(&s.aIn, "input_tokens")
	set(&s.aOut, "output_tokens")
	set(&s.aCacheW, "cache_creation_input_tokens")
	set(&s.aCacheR, "cache_read_input_tokens")
	s.usage = Usage{
		PromptTokens:     s.aIn + s.aCacheW + s.aCacheR,
		CompletionTokens: s.aOut,
		TotalTokens:      s.aIn + s.aCacheW + s.aCacheR + s.aOut,
		CachedTokens:     s.aCacheR,
		CacheWriteTokens: s.aCacheW,
		Invalid:          s.invalid,
	}
}

// choice returns the text counter of a choice index.
func (s *StreamCounter) choice(i int64) *TextCounter {
	if i < 0 || i >= maxChoices {
		i = 0
	}
	for int64(len(s.choices)) <= i {
		s.choices = append(s.choices, TextCounter{})
	}
	return &s.choices[i]
}

// Found reports whether the stream carried usage.
func (s *StreamCounter) Found() bool { return s.found }

// Done reports whether the stream reached its end marker ([DONE] or
// Anthropic message_stop); false means it was cut short.
func (s *StreamCounter) Done() bool { return s.done }

// Failed reports whether the stream carried an error event.
func (s *StreamCounter) Failed() bool { return s.failed }

// StreamedTokens estimates the completion tokens streamed so far.
func (s *StreamCounter) StreamedTokens() int64 {
	var t int64
	for i := range s.choices {
		t += s.choices[i].Tokens()
	}
	return t
}

// Result is the usage of the stream: the upstream's own when it sent any,
// else an estimate (Estimated set) made of promptEstimate and the tokens
// of the streamed text.
func (s *StreamCounter) Result(promptEstimate int64) Usage {
	if s.found {
		return s.usage
	}
	c := s.StreamedTokens()
	return Usage{
		PromptTokens:     promptEstimate,
		CompletionTokens: c,
		TotalTokens:      promptEstimate + c,
		Estimated:        true,
	}
}

// IsUsageOnlyChunk reports an OpenAI-style chunk that exists only to carry
// usage ("choices": [] and a usage object): the chunk the filter removes
// again when it injected include_usage for a client that did not ask.
func IsUsageOnlyChunk(ev *sse.Event) bool {
	if !hasUsageObject(ev.Data) {
		return false
	}
	o, ok := parseJSON(ev.Data)
	if !ok || !isObject(o.Get("usage")) {
		return false
	}
	ch := o.Get("choices")
	return ch.IsNull() || (isArray(ch) && ch.Len() == 0)
}

// hasUsageObject is a cheap pre-check before parsing: some "usage" key is
// followed by an object. Chunks with "usage":null (OpenAI's content chunks
// when include_usage is on) are answered without a parse.
func hasUsageObject(data []byte) bool {
	key := []byte(`"usage"`)
	for {
		i := bytes.Index(data, key)
		if i < 0 {
			return false
		}
		data = data[i+len(key):]
		j := skipSpace(data, 0)
		if j < len(data) && data[j] == ':' {
			if k := skipSpace(data, j+1); k < len(data) && data[k] == '{' {
				return true
			}
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
