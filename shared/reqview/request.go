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
		return nil, &Error{Status: 400, Code: CodeInvalidJSON, Msg: "the body must be a JSON object", Offset: -1}
	}
	if err := root.strictKeys(TopFields); err != nil {
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
		if err := r.StreamOptions.strictKeys(streamOptionsFields); err != nil {
			return nil, prefixed(err, "stream_options.")
		}
		if r.IncludeUsage, e = optBool(r.StreamOptions, "include_usage"); e != nil {
			return nil, prefixed(e, "stream_options.")
		}
	case Invalid, Null:
	default:
		return nil, fieldErr("stream_options", "must be an object")
	}
	if r.MaxTokens, e = count(root, "max_tokens", 1<<31-1); e != nil {
		return nil, e
	}
	if r.MaxCompletionTokens, e = count(root, "max_completion_tokens", 1<<31-1); e != nil {
		return nil, e
	}
	if r.N, e = count(root, "n", MaxCount); e != nil {
		return nil, e
	}
	if r.BestOf, e = count(root, "best_of", MaxCount); e != nil {
		return nil, e
	}
	if err := checkMessages(root.Get("messages")); err != nil {
		return nil, err
	}
	return r, nil
}

// count reads an optional positive integer member no larger than max.
func count(o Value, key string, max int64) (Value, *Error) {
	v := o.Get(key)
	if v.IsNull() {
		return Value{}, nil
	}
	n, ok := v.Int()
	if !ok || n < 1 {
		return Value{}, fieldErr(key, "must be a positive integer")
	}
	if n > max {
		return Value{}, fieldErr(key, "must be at most "+strconv.FormatInt(max, 10))
	}
	return v, nil
}

// Count is a validated positive integer field (0 when absent or null).
func Count(v Value) int64 {
	n, _ := v.Int()
	return n
}

// checkMessages refuses case and escape variants in the nested objects of
// messages that the gateway reads; shapes are the readers' business. Paths
// are built only for the error.
func checkMessages(msgs Value) *Error {
	var err *Error
	msgs.Elems(func(i int, m Value) bool {
		if m.kind != Object {
			return true
		}
		p := func() string { return "messages[" + strconv.Itoa(i) + "]." }
		if err = m.strictKeys(messageFields); err != nil {
			err = prefixed(err, p())
			return false
		}
		if err = checkParts(m.Get("content")); err != nil {
			err = prefixed(err, p()+"content")
			return false
		}
		m.Get("tool_calls").Elems(func(j int, tc Value) bool {
			tp := func() string { return p() + "tool_calls[" + strconv.Itoa(j) + "]." }
			if err = tc.strictKeys(toolCallFields); err != nil {
				err = prefixed(err, tp())
			} else if err = tc.Get("function").strictKeys(functionCallFields); err != nil {
				err = prefixed(err, tp()+"function.")
			}
			return err == nil
		})
		if err == nil {
			if err = m.Get("function_call").strictKeys(functionCallFields); err != nil {
				err = prefixed(err, p()+"function_call.")
			}
		}
		return err == nil
	})
	return err
}

// nestedPartFields are the members of image_url, input_audio and source objects.
var nestedPartFields = []string{"url", "detail", "data", "format", "type", "media_type"}

// checkParts checks the content parts of one message, and one level of
// nested tool_result content (Anthropic), iteratively. Params are relative
// to the content ("[0].text").
func checkParts(content Value) *Error {
	var err *Error
	content.Elems(func(j int, part Value) bool {
		pp := func() string { return "[" + strconv.Itoa(j) + "]." }
		if err = part.strictKeys(partFields); err != nil {
			err = prefixed(err, pp())
			return false
		}
		for _, k := range [...]string{"image_url", "input_audio", "source"} {
			if err = part.Get(k).strictKeys(nestedPartFields); err != nil {
				err = prefixed(err, pp()+k+".")
				return false
			}
		}
		if part.Get("type").View() == "tool_result" {
			part.Get("content").Elems(func(k int, inner Value) bool {
				if err = inner.strictKeys(partFields); err != nil {
					err = prefixed(err, pp()+"content["+strconv.Itoa(k)+"].")
				}
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
	return &Error{Status: 400, Code: CodeInvalidValue, Param: param, Msg: msg, Offset: -1}
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
	t := texts{fn: fn, params: true}
	t.walk(r.Doc.root)
}

// TextBytes is the total UTF-8 byte length of what Texts visits: byte-level
// BPE never makes more tokens than bytes, so it bounds the text's tokens.
func (r *Request) TextBytes() int64 {
	var n int64
	t := texts{fn: func(_ string, v Value) bool {
		n += int64(v.StrLen())
		return true
	}}
	t.walk(r.Doc.root)
	return n
}

// texts walks content without recursion (one level of nested tool
// results); it builds parameter paths only when params is set.
type texts struct {
	fn     func(string, Value) bool
	params bool
	stop   bool
}

// path builds a parameter path only when the visitor wants paths.
func (t *texts) path(build func() string) string {
	if !t.params {
		return ""
	}
	return build()
}

func (t *texts) walk(root Value) {
	t.content(root.Get("system"), func() string { return "system" })
	root.Get("messages").Elems(func(i int, m Value) bool {
		p := func() string { return "messages[" + strconv.Itoa(i) + "]" }
		t.str(m.Get("name"), func() string { return p() + ".name" })
		t.str(m.Get("refusal"), func() string { return p() + ".refusal" })
		t.content(m.Get("content"), func() string { return p() + ".content" })
		m.Get("tool_calls").Elems(func(j int, tc Value) bool {
			f := tc.Get("function")
			tp := func() string { return p() + ".tool_calls[" + strconv.Itoa(j) + "].function" }
			t.str(f.Get("name"), func() string { return tp() + ".name" })
			t.str(f.Get("arguments"), func() string { return tp() + ".arguments" })
			return !t.stop
		})
		fc := m.Get("function_call")
		t.str(fc.Get("name"), func() string { return p() + ".function_call.name" })
		t.str(fc.Get("arguments"), func() string { return p() + ".function_call.arguments" })
		return !t.stop
	})
	for _, k := range [...]string{"prompt", "input"} {
		v := root.Get(k)
		if v.kind == String {
			t.str(v, func() string { return k })
			continue
		}
		v.Elems(func(i int, e Value) bool {
			t.str(e, func() string { return k + "[" + strconv.Itoa(i) + "]" })
			return !t.stop
		})
	}
	t.str(root.Get("suffix"), func() string { return "suffix" })
}

func (t *texts) str(v Value, param func() string) {
	if !t.stop && v.kind == String && !t.fn(t.path(param), v) {
		t.stop = true
	}
}

// content reads a string or an array of parts; a tool_result part's own
// content is read one level down, never deeper.
func (t *texts) content(c Value, param func() string) {
	if c.kind == String {
		t.str(c, param)
		return
	}
	c.Elems(func(j int, part Value) bool {
		pp := func() string { return param() + "[" + strconv.Itoa(j) + "]" }
		t.part(part, pp)
		if part.Get("type").View() == "tool_result" {
			inner := part.Get("content")
			if inner.kind == String {
				t.str(inner, func() string { return pp() + ".content" })
			} else {
				inner.Elems(func(k int, ip Value) bool {
					t.part(ip, func() string { return pp() + ".content[" + strconv.Itoa(k) + "]" })
					return !t.stop
				})
			}
		}
		return !t.stop
	})
}

func (t *texts) part(part Value, param func() string) {
	if part.kind == String {
		t.str(part, param)
		return
	}
	t.str(part.Get("text"), func() string { return param() + ".text" })
	t.str(part.Get("refusal"), func() string { return param() + ".refusal" })
	t.str(part.Get("thinking"), func() string { return param() + ".thinking" })
	if part.Get("type").View() == "tool_use" {
		t.str(part.Get("name"), func() string { return param() + ".name" })
	}
}
