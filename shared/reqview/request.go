package reqview

import (
	"strconv"
)

// TopFields are the top-level members the gateway reads. A key that equals
// one of them only by case or escapes is refused, because an upstream that
// matches keys case-insensitively (Go's encoding/json, Ollama, LocalAI)
// would act on a value the gateway never judged.
var TopFields = []string{
	"model", "max_tokens", "max_completion_tokens", "max_output_tokens", "n", "best_of",
	"stream", "stream_options", "messages", "input", "prompt", "suffix", "tools", "functions",
	"tool_choice", "system", "user",
}

// Fields of the nested objects the gateway reads, checked the same way.
var (
	messageFields       = []string{"role", "content", "name", "tool_calls", "function_call", "tool_call_id", "refusal"}
	partFields          = []string{"type", "text", "image_url", "input_audio", "file", "refusal", "source", "input", "content", "thinking", "name", "tool_use_id"}
	streamOptionsFields = []string{"include_usage"}
	toolCallFields      = []string{"id", "type", "function"}
	functionCallFields  = []string{"name", "arguments"}
)

// MaxCount bounds n and best_of so that reservations cannot overflow.
const MaxCount = 1024

// Request is the canonical view of an OpenAI-compatible (or Anthropic
// /v1/messages) request body: the fields every filter reads, type-checked
// once, so that all filters agree on what the request is.
type Request struct {
	Doc                 *Doc
	Model               string // "" when absent or null
	ModelValue          Value  // the model member, for in-place rewrites
	Stream              bool
	StreamOptions       Value // the stream_options member (missing when absent)
	IncludeUsage        bool  // stream_options.include_usage
	MaxTokens           Value // a positive integer when present and not null
	MaxCompletionTokens Value // a positive integer when present and not null
	N                   Value // a positive integer ≤ MaxCount when present and not null
	BestOf              Value // a positive integer ≤ MaxCount when present and not null
}

// Root is the request's top-level object.
func (r *Request) Root() Value { return r.Doc.root }

// ParseRequest validates body with Parse, requires a JSON object, refuses
// case and escape variants of the fields the gateway reads (at the top
// level, in stream_options, messages, content parts and tool calls) and
// type-checks the top-level fields it reads.
func ParseRequest(body []byte, lim Limits) (*Request, error) {
	d, err := Parse(body, lim)
	if err != nil {
		return nil, err
	}
	root := d.root
	if root.kind != Object {
		return nil, &Error{Status: 400, Msg: "the body must be a JSON object", Offset: -1}
	}
	if err := root.strictKeys("", TopFields); err != nil {
		return nil, err
	}
	r := &Request{Doc: d}
	r.ModelValue = root.Get("model")
	switch r.ModelValue.kind {
	case String:
		r.Model = r.ModelValue.Str()
	case Invalid, Null:
	default:
		return nil, fieldErr("model", "must be a string")
	}
	var e *Error
	if r.Stream, e = optBool(root, "stream"); e != nil {
		return nil, e
	}
	r.StreamOptions = root.Get("stream_options")
	switch r.StreamOptions.kind {
	case Object:
		if err := r.StreamOptions.strictKeys("stream_options.", streamOptionsFields); err != nil {
			return nil, err
		}
		if r.IncludeUsage, e = optBool(r.StreamOptions, "include_usage"); e != nil {
			return nil, prefixed(e, "stream_options.")
		}
	case Invalid, Null:
	default:
		return nil, fieldErr("stream_options", "must be an object")
	}
	for _, c := range []struct {
		key string
		dst *Value
		max int64
	}{
		{"max_tokens", &r.MaxTokens, 1<<31 - 1},
		{"max_completion_tokens", &r.MaxCompletionTokens, 1<<31 - 1},
		{"n", &r.N, MaxCount},
		{"best_of", &r.BestOf, MaxCount},
	} {
		v := root.Get(c.key)
		if v.IsNull() {
			continue
		}
		n, ok := v.Int()
		if !ok || n < 1 {
			return nil, fieldErr(c.key, "must be a positive integer")
		}
		if n > c.max {
			return nil, fieldErr(c.key, "must be at most "+strconv.FormatInt(c.max, 10))
		}
		*c.dst = v
	}
	if err := checkMessages(root.Get("messages")); err != nil {
		return nil, err
	}
	return r, nil
}

// Count is a validated positive integer field (0 when absent or null).
func Count(v Value) int64 {
	n, _ := v.Int()
	return n
}

// checkMessages refuses case and escape variants in the nested objects of
// messages that the gateway reads; shapes are the readers' business.
func checkMessages(msgs Value) *Error {
	var err *Error
	msgs.Elems(func(i int, m Value) bool {
		if m.kind != Object {
			return true
		}
		p := "messages[" + strconv.Itoa(i) + "]."
		if err = m.strictKeys(p, messageFields); err != nil {
			return false
		}
		if err = checkParts(m.Get("content"), p+"content"); err != nil {
			return false
		}
		m.Get("tool_calls").Elems(func(j int, tc Value) bool {
			tp := p + "tool_calls[" + strconv.Itoa(j) + "]."
			if err = tc.strictKeys(tp, toolCallFields); err == nil {
				err = tc.Get("function").strictKeys(tp+"function.", functionCallFields)
			}
			return err == nil
		})
		if err == nil {
			err = m.Get("function_call").strictKeys(p+"function_call.", functionCallFields)
		}
		return err == nil
	})
	return err
}

// checkParts checks the content parts of one message, and one level of
// nested tool_result content (Anthropic), iteratively.
func checkParts(content Value, param string) *Error {
	var err *Error
	content.Elems(func(j int, part Value) bool {
		pp := param + "[" + strconv.Itoa(j) + "]."
		if err = part.strictKeys(pp, partFields); err != nil {
			return false
		}
		for _, k := range []string{"image_url", "input_audio", "source"} {
			if err = part.Get(k).strictKeys(pp+k+".", []string{"url", "detail", "data", "format", "type", "media_type"}); err != nil {
				return false
			}
		}
		if part.Get("type").View() == "tool_result" {
			part.Get("content").Elems(func(k int, inner Value) bool {
				err = inner.strictKeys(pp+"content["+strconv.Itoa(k)+"].", partFields)
				return err == nil
			})
		}
		return err == nil
	})
	return err
}

func optBool(o Value, key string) (bool, *Error) {
	v := o.Get(key)
	if v.IsNull() {
		return false, nil
	}
	b, ok := v.Bool()
	if !ok {
		return false, fieldErr(key, "must be a boolean")
	}
	return b, nil
}

func fieldErr(param, msg string) *Error {
	return &Error{Status: 400, Param: param, Msg: msg, Offset: -1}
}

func prefixed(e *Error, prefix string) *Error {
	e.Param = prefix + e.Param
	return e
}

// Texts visits every string that reaches the model as text, with its
// OpenAI-style parameter path: message contents and text parts, names,
// refusals, tool-call names and arguments, Anthropic system prompts, tool
// inputs and tool results, completions' prompt and suffix, and embeddings'
// input. Token-id arrays, images, audio and tool schemas are not text;
// readers count them by their own rules. It stops when fn returns false.
func (r *Request) Texts(fn func(param string, text Value) bool) {
	root := r.Doc.root
	t := texts{fn: fn}
	t.content(root.Get("system"), "system")
	root.Get("messages").Elems(func(i int, m Value) bool {
		p := "messages[" + strconv.Itoa(i) + "]"
		t.str(m.Get("name"), p+".name")
		t.str(m.Get("refusal"), p+".refusal")
		t.content(m.Get("content"), p+".content")
		m.Get("tool_calls").Elems(func(j int, tc Value) bool {
			f := tc.Get("function")
			tp := p + ".tool_calls[" + strconv.Itoa(j) + "].function"
			t.str(f.Get("name"), tp+".name")
			t.str(f.Get("arguments"), tp+".arguments")
			return !t.stop
		})
		fc := m.Get("function_call")
		t.str(fc.Get("name"), p+".function_call.name")
		t.str(fc.Get("arguments"), p+".function_call.arguments")
		return !t.stop
	})
	for _, k := range []string{"prompt", "input"} {
		v := root.Get(k)
		if v.kind == String {
			t.str(v, k)
			continue
		}
		v.Elems(func(i int, e Value) bool {
			t.str(e, k+"["+strconv.Itoa(i)+"]")
			return !t.stop
		})
	}
	t.str(root.Get("suffix"), "suffix")
}

// TextBytes is the total UTF-8 byte length of what Texts visits: byte-level
// BPE never makes more tokens than bytes, so it bounds the text's tokens.
func (r *Request) TextBytes() int64 {
	var n int64
	r.Texts(func(_ string, v Value) bool {
		n += int64(v.StrLen())
		return true
	})
	return n
}

// texts walks content without recursion: one level of nested tool results.
type texts struct {
	fn   func(string, Value) bool
	stop bool
}

func (t *texts) str(v Value, param string) {
	if !t.stop && v.kind == String && !t.fn(param, v) {
		t.stop = true
	}
}

// content reads a string or an array of parts; a tool_result part's own
// content is read one level down, never deeper.
func (t *texts) content(c Value, param string) {
	if c.kind == String {
		t.str(c, param)
		return
	}
	c.Elems(func(j int, part Value) bool {
		pp := param + "[" + strconv.Itoa(j) + "]"
		t.part(part, pp)
		if part.Get("type").View() == "tool_result" {
			inner := part.Get("content")
			if inner.kind == String {
				t.str(inner, pp+".content")
			} else {
				inner.Elems(func(k int, ip Value) bool {
					t.part(ip, pp+".content["+strconv.Itoa(k)+"]")
					return !t.stop
				})
			}
		}
		return !t.stop
	})
}

func (t *texts) part(part Value, param string) {
	if part.kind == String {
		t.str(part, param)
		return
	}
	for _, k := range []string{"text", "refusal", "thinking"} {
		t.str(part.Get(k), param+"."+k)
	}
	if part.Get("type").View() == "tool_use" {
		// Anthropic tool input is a JSON object; its strings reach the model.
		t.str(part.Get("name"), param+".name")
	}
}
