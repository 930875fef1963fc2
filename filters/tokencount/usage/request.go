// Package usage is the pure logic of the tokencount filter: it reads
// OpenAI-compatible and Anthropic request bodies, estimates prompt tokens,
// computes the reservation, extracts the real usage from JSON and streamed
// responses, prices it, and rewrites streamed chat requests so that the
// upstream reports usage. Nothing here calls the proxy.
package usage

import (
	"errors"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tollgate/tollgate/shared/reqview"
)

// API identifies the request and response dialect of an endpoint.
type API uint8

// Supported endpoints.
const (
	APIUnknown           API = iota // not a metered endpoint
	APIChatCompletions              // OpenAI-compatible POST /v1/chat/completions
	APICompletions                  // OpenAI-compatible POST /v1/completions
	APIEmbeddings                   // OpenAI-compatible POST /v1/embeddings
	APIAnthropicMessages            // Anthropic POST /v1/messages
)

// String names the API for logs and metric tags.
func (a API) String() string {
	switch a {
	case APIChatCompletions:
		return "chat_completions"
	case APICompletions:
		return "completions"
	case APIEmbeddings:
		return "embeddings"
	case APIAnthropicMessages:
		return "messages"
	}
	return "unknown"
}

// APIForPath maps a request path (query string allowed, any prefix before
// /v1/) to its API, so that gateways mounted under a prefix still match.
func APIForPath(path string) API {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	path = strings.TrimRight(path, "/")
	switch {
	case strings.HasSuffix(path, "/v1/chat/completions"):
		return APIChatCompletions
	case strings.HasSuffix(path, "/v1/completions"):
		return APICompletions
	case strings.HasSuffix(path, "/v1/embeddings"):
		return APIEmbeddings
	case strings.HasSuffix(path, "/v1/messages"):
		return APIAnthropicMessages
	}
	return APIUnknown
}

// ErrMalformedRequest is wrapped by every request parsing error, so the
// filter can answer 400 for all of them with errors.Is.
var ErrMalformedRequest = errors.New("malformed request body")

// RequestError names the malformed field (in OpenAI's "param" style) and
// says what is wrong with it.
type RequestError struct {
	Param string // e.g. "messages[1].content[0].image_url.url"; empty for the whole body
	Msg   string
	// Code and Status are the canonical view's refusal (reqview.Code*,
	// 400 or 413); empty and 0 for the filter's own shape checks.
	Code   string
	Status int
}

// Error formats the problem for the client's error message.
func (e *RequestError) Error() string {
	if e.Param == "" {
		return ErrMalformedRequest.Error() + ": " + e.Msg
	}
	return ErrMalformedRequest.Error() + ": " + e.Param + ": " + e.Msg
}

// Unwrap lets errors.Is match ErrMalformedRequest.
func (e *RequestError) Unwrap() error { return ErrMalformedRequest }

func bad(param, msg string) error { return &RequestError{Param: param, Msg: msg} }

// prefixParam prepends the path of the enclosing element to a
// *RequestError built relative to it.
func prefixParam(err error, prefix string) {
	var re *RequestError
	if errors.As(err, &re) {
		re.Param = prefix + re.Param
	}
}

// lazyParam formats "name[i]" only when an error needs it.
type lazyParam struct {
	name string
	i    int
}

func (l lazyParam) String() string { return l.name + "[" + strconv.Itoa(l.i) + "]" }

// ImageRule selects a vendor's documented image token rule.
type ImageRule uint8

// Image token rules.
const (
	ImageOpenAI    ImageRule = iota // 85 base + 170 per 512 px tile (detail high/auto), 85 (low)
	ImageAnthropic                  // width × height / 750 after fitting 1568 px, at most 1600
)

// ImagePart is one image of a prompt. Its pixel size comes from the image
// header when the image is inline (base64); it is 0 × 0 when unknown.
type ImagePart struct {
	Rule   ImageRule
	Detail string // OpenAI detail: "low", "high", "auto" or ""
	Width  int
	Height int
}

// AudioPart is one audio input. Seconds comes from the WAV header or the
// MP3 frame bit rate; Known is false when neither could be read.
type AudioPart struct {
	Format  string
	Seconds float64
	Known   bool
}

// Prompt is the countable content of a request.
type Prompt struct {
	Messages   int         // chat / Anthropic messages, system prompt included
	Names      int         // messages carrying a "name"
	Inputs     int         // prompts of /v1/completions or inputs of /v1/embeddings (1 for chat)
	TextTokens int64       // heuristic tokens of all text: contents, roles, tool definitions
	TokenIDs   int64       // tokens given as token-id arrays, counted exactly
	Images     []ImagePart // images, counted by their vendor's rule
	Audio      []AudioPart // audio inputs, counted by duration
	Files      int         // documents (PDF and other files), counted by a configured default

	// The strict bound's inputs (Bounds.Prompt): exact byte counts of what
	// reaches the model, never estimates.
	TextBytes int64 // UTF-8 bytes of every text field (contents, roles, names, prompts)
	Texts     int   // text fields counted in TextBytes
	ToolBytes int64 // JSON bytes of tool definitions, tool-call arguments and tool inputs
	Tools     int   // tool definitions and tool calls
	HasTools  bool  // the request defines tools (a template adds its tool preamble)
	// ExtraBytes are the JSON bytes of members the filter does not read
	// but an upstream's template might render (unknown top-level, message
	// and content-part members): counted whole in the bound, so no field
	// reaches the model unbounded.
	ExtraBytes int64
	// Template is true when the request carries its own chat template
	// (vLLM's chat_template), which can expand a prompt without bound.
	Template bool
}

// nonPrompt are top-level members that steer generation but never reach
// the model as prompt text (OpenAI, vLLM and Anthropic parameters).
var nonPrompt = map[string]bool{
	"model": true, "stream": true, "stream_options": true, "max_tokens": true, "max_completion_tokens": true,
	"max_output_tokens": true, "n": true, "best_of": true, "temperature": true, "top_p": true, "top_k": true,
	"min_p": true, "frequency_penalty": true, "presence_penalty": true, "repetition_penalty": true,
	"length_penalty": true, "logit_bias": true, "logprobs": true, "top_logprobs": true, "prompt_logprobs": true,
	"seed": true, "stop": true, "stop_token_ids": true, "stop_sequences": true, "user": true, "metadata": true,
	"store": true, "service_tier": true, "parallel_tool_calls": true, "echo": true, "ignore_eos": true,
	"min_tokens": true, "skip_special_tokens": true, "spaces_between_special_tokens": true,
	"include_stop_str_in_output": true, "add_generation_prompt": true, "continue_final_message": true,
	"add_special_tokens": true, "priority": true, "request_id": true, "encoding_format": true,
	"dimensions": true, "truncate_prompt_tokens": true, "reasoning_effort": true, "modalities": true,
	"use_beam_search": true, "guided_decoding_backend": true,
}

// promptMembers are the top-level members the API readers count themselves.
var promptMembers = map[string]bool{
	"messages": true, "tools": true, "functions": true, "prompt": true, "suffix": true, "input": true, "system": true,
}

// rawLen is what a member counts in ExtraBytes: a string's unescaped
// bytes, any other value's JSON bytes (never fewer than its strings').
func rawLen(v reqview.Value) int64 {
	if isString(v) {
		return int64(v.StrLen())
	}
	return int64(len(v.Raw()))
}

// extraMembers adds the members of o that are not in known (nor skipped)
// to the prompt's ExtraBytes.
func (p *Prompt) extraMembers(o reqview.Value, known, skip map[string]bool) {
	o.Members(func(k string, v reqview.Value) bool {
		if !known[k] && !skip[k] && !v.IsNull() {
			p.ExtraBytes += rawLen(v)
		}
		return true
	})
}

var (
	chatMessageMembers      = map[string]bool{"role": true, "content": true, "name": true, "refusal": true, "tool_calls": true, "function_call": true}
	anthropicMessageMembers = map[string]bool{"role": true, "content": true}
)

// text counts one text field: its heuristic tokens and its exact bytes.
func (p *Prompt) text(s string) {
	p.TextTokens += TextTokens(s)
	p.TextBytes += int64(len(s))
	p.Texts++
}

// tools counts a tools / functions array for the strict bound (the
// heuristic estimate counts its JSON as text).
func (p *Prompt) tools(t reqview.Value) {
	p.HasTools = true
	p.ToolBytes += int64(len(t.Raw()))
	p.Tools += t.Len()
}

// toolCall counts one tool call (name and arguments) for the strict bound:
// templates may re-serialise its arguments, so they count as tool bytes.
func (p *Prompt) toolCall(name, args reqview.Value) {
	p.TextTokens += TextTokens(name.View()) + TextTokens(raw(args))
	p.Tools++
	p.ToolBytes += int64(name.StrLen())
	if isString(args) {
		p.ToolBytes += int64(args.StrLen())
	} else {
		p.ToolBytes += int64(len(args.Raw()))
	}
}

// raw is a string's unescaped text, or another value's JSON text, without
// a copy where possible; it must not outlive the body.
func raw(v reqview.Value) string {
	if v.Kind() == reqview.String {
		return v.View()
	}
	return unsafeString(v.Raw())
}

// unsafeString views bytes as a string without copying; the caller must
// not keep the string (or substrings of it) past the bytes' lifetime.
func unsafeString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// Request is what the tokencount filter needs from a request body.
type Request struct {
	API   API
	Model string
	// Stream is true for a streamed (SSE) response.
	Stream bool
	// IncludeUsage is stream_options.include_usage as the client sent it.
	IncludeUsage bool
	// StreamOptions reports a stream_options member (null included), so a
	// caller adding one knows whether it may simply insert the key.
	StreamOptions bool
	// MaxOutput is the client's output cap (max_completion_tokens, else
	// max_tokens); MaxOutputSet is false when the client gave none.
	MaxOutput    int64
	MaxOutputSet bool
	// N is the number of choices per prompt (best_of when larger, for
	// /v1/completions); at least 1.
	N      int64
	Prompt Prompt
	// View is the canonical view the request was read from (its spans
	// serve in-place rewrites of the same body).
	View *reqview.Request
}

// ParseRequest reads a request body of the given API through the
// canonical request view (shared/reqview) with its default limits: a body
// the view refuses (invalid or ambiguous JSON, too deep, too large) gives
// a *RequestError with its code; a body whose shape the filter cannot meter gives a
// *RequestError wrapping ErrMalformedRequest.
func ParseRequest(api API, body []byte) (*Request, error) {
	rv, err := reqview.ParseRequest(body, reqview.Limits{})
	if err != nil {
		return nil, ViewError(err)
	}
	return FromView(api, rv)
}

// ViewError turns a refusal of the canonical request view into a
// *RequestError (keeping its code, status and param), so every body the
// filter refuses reads alike; other errors come back unchanged.
func ViewError(err error) error {
	var ve *reqview.Error
	if errors.As(err, &ve) {
		return &RequestError{Param: ve.Param, Msg: ve.Msg, Code: ve.Code, Status: ve.Status}
	}
	return err
}

// FromView reads what the filter meters from a request already parsed
// with reqview.ParseRequest. The walk is iterative (no recursion on client
// data) and each object is indexed once by the view.
func FromView(api API, rv *reqview.Request) (*Request, error) {
	req := &Request{
		API:           api,
		Model:         rv.Model,
		Stream:        rv.Stream,
		IncludeUsage:  rv.IncludeUsage,
		StreamOptions: rv.StreamOptions.Exists(),
		N:             1,
		View:          rv,
	}
	o := rv.Root()
	if t := o.Get("chat_template"); !t.IsNull() {
		req.Prompt.Template = true
	}
	req.Prompt.extraMembers(o, promptMembers, nonPrompt)
	if req.Prompt.Template {
		req.Prompt.ExtraBytes -= rawLen(o.Get("chat_template"))
	}
	var err error
	switch api {
	case APIChatCompletions:
		err = parseChat(o, rv, req)
	case APICompletions:
		err = parseCompletions(o, rv, req)
	case APIEmbeddings:
		err = parseEmbeddings(o, req)
	case APIAnthropicMessages:
		err = parseAnthropic(o, rv, req)
	default:
		err = bad("", "unsupported endpoint")
	}
	if err != nil {
		return nil, err
	}
	return req, nil
}

// maxN bounds n and best_of so reservations cannot overflow.
const maxN = reqview.MaxCount

func isString(v reqview.Value) bool { return v.Kind() == reqview.String }
func isArray(v reqview.Value) bool  { return v.Kind() == reqview.Array }
func isObject(v reqview.Value) bool { return v.Kind() == reqview.Object }

func parseChat(o reqview.Value, rv *reqview.Request, req *Request) error {
	maxOutput(req, rv.MaxCompletionTokens, rv.MaxTokens)
	if n := reqview.Count(rv.N); n > 0 {
		req.N = n
	}
	msgs := o.Get("messages")
	if !isArray(msgs) {
		return bad("messages", "must be an array of messages")
	}
	p := &req.Prompt
	p.Inputs = 1
	var perr error
	msgs.Elems(func(i int, m reqview.Value) bool {
		perr = chatMessage(m, i, p)
		return perr == nil
	})
	if perr != nil {
		return perr
	}
	if msgs.Len() == 0 {
		return bad("messages", "must not be empty")
	}
	for _, key := range []string{"tools", "functions"} {
		if t := o.Get(key); !t.IsNull() {
			if !isArray(t) {
				return bad(key, "must be an array")
			}
			p.TextTokens += TextTokens(raw(t))
			p.tools(t)
		}
	}
	return nil
}

func chatMessage(m reqview.Value, i int, p *Prompt) error {
	if !isObject(m) {
		return bad("messages["+strconv.Itoa(i)+"]", "must be an object")
	}
	role := m.Get("role")
	if !isString(role) {
		return bad("messages["+strconv.Itoa(i)+"].role", "must be a string")
	}
	p.Messages++
	p.text(role.View())
	p.extraMembers(m, chatMessageMembers, nil)
	if name := m.Get("name"); !name.IsNull() {
		if !isString(name) {
			return bad("messages["+strconv.Itoa(i)+"].name", "must be a string")
		}
		p.Names++
		p.text(name.View())
	}
	if err := chatContent(m.Get("content"), i, p); err != nil {
		return err
	}
	if r := m.Get("refusal"); isString(r) {
		p.text(r.View())
	}
	m.Get("tool_calls").Elems(func(_ int, c reqview.Value) bool {
		f := c.Get("function")
		p.toolCall(f.Get("name"), f.Get("arguments"))
		return true
	})
	if fc := m.Get("function_call"); isObject(fc) {
		p.toolCall(fc.Get("name"), fc.Get("arguments"))
	}
	return nil
}

func chatContent(c reqview.Value, i int, p *Prompt) error {
	switch {
	case c.IsNull():
		return nil // an assistant message with tool calls only
	case isString(c):
		p.text(c.View())
		return nil
	case !isArray(c):
		return bad("messages["+strconv.Itoa(i)+"].content", "must be a string or an array of content parts")
	}
	var err error
	c.Elems(func(j int, part reqview.Value) bool {
		if err = chatPart(part, p); err != nil {
			prefixParam(err, "messages["+strconv.Itoa(i)+"].content["+strconv.Itoa(j)+"]")
		}
		return err == nil
	})
	return err
}

// chatPart reads one content part; error params are relative to the part.
func chatPart(part reqview.Value, p *Prompt) error {
	if !isObject(part) {
		return bad("", "must be an object")
	}
	typ := part.Get("type")
	if !isString(typ) {
		return bad(".type", "must be a string")
	}
	switch typ.View() {
	case "text", "input_text", "output_text":
		t := part.Get("text")
		if !isString(t) {
			return bad(".text", "must be a string")
		}
		p.text(t.View())
	case "refusal":
		p.text(part.Get("refusal").View())
	case "image_url":
		iu := part.Get("image_url")
		var url, detail reqview.Value
		if isString(iu) {
			url = iu // some clients send the URL string directly
		} else if isObject(iu) {
			url, detail = iu.Get("url"), iu.Get("detail")
		}
		if !isString(url) || url.StrLen() == 0 {
			return bad(".image_url.url", "must be a non-empty string")
		}
		img := ImagePart{Rule: ImageOpenAI, Detail: canonicalDetail(detail.View())}
		if (img.Detail == "" && detail.StrLen() > 0) || (!detail.IsNull() && !isString(detail)) {
			return bad(".image_url.detail", `must be "low", "high" or "auto"`)
		}
		if _, payload, ok := dataURL(url.View()); ok {
			if b, ok := newB64(payload); ok {
				img.Width, img.Height, _ = imageSize(b)
			}
		}
		p.Images = append(p.Images, img)
	case "input_audio":
		ao := part.Get("input_audio")
		data := ao.Get("data")
		if !isString(data) {
			return bad(".input_audio.data", "must be a base64 string")
		}
		a := AudioPart{Format: ao.Get("format").Str()}
		if b, ok := newB64(data.View()); ok {
			a.Seconds, a.Known = audioSeconds(b, a.Format)
		}
		p.Audio = append(p.Audio, a)
	case "file":
		p.Files++
	default:
		// Unknown part types are left to the upstream to accept or
		// refuse; if it renders one, the bound has counted all of it.
		p.ExtraBytes += int64(len(part.Raw()))
	}
	return nil
}

// canonicalDetail returns the detail as a constant, not a view of the body.
func canonicalDetail(d string) string {
	switch d {
	case "auto":
		return "auto"
	case "low":
		return "low"
	case "high":
		return "high"
	}
	return ""
}

func parseCompletions(o reqview.Value, rv *reqview.Request, req *Request) error {
	maxOutput(req, rv.MaxTokens)
	req.N = max(req.N, reqview.Count(rv.N), reqview.Count(rv.BestOf))
	prompt := o.Get("prompt")
	if prompt.IsNull() {
		return bad("prompt", "is required")
	}
	if err := inputs(prompt, "prompt", &req.Prompt); err != nil {
		return err
	}
	if s := o.Get("suffix"); isString(s) {
		req.Prompt.text(s.View())
	}
	return nil
}

func parseEmbeddings(o reqview.Value, req *Request) error {
	in := o.Get("input")
	if in.IsNull() {
		return bad("input", "is required")
	}
	return inputs(in, "input", &req.Prompt)
}

// inputs reads a prompt or input: a string, an array of strings, an array
// of token ids, or an array of token-id arrays.
func inputs(v reqview.Value, param string, p *Prompt) error {
	if isString(v) {
		p.Inputs = 1
		p.text(v.View())
		return nil
	}
	if !isArray(v) {
		return bad(param, "must be a string, an array of strings or an array of token ids")
	}
	var err error
	ids := false
	v.Elems(func(i int, e reqview.Value) bool {
		switch {
		case isString(e):
			p.Inputs++
			p.text(e.View())
		case e.Kind() == reqview.Number:
			ids = true
			p.TokenIDs++
		case isArray(e):
			p.Inputs++
			e.Elems(func(_ int, t reqview.Value) bool {
				if t.Kind() != reqview.Number {
					err = bad(param+"["+strconv.Itoa(i)+"]", "token arrays must hold numbers only")
					return false
				}
				p.TokenIDs++
				return true
			})
		default:
			err = bad(param+"["+strconv.Itoa(i)+"]", "must be a string, a token id or an array of token ids")
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	if ids {
		if p.Inputs > 0 {
			return bad(param, "must not mix token ids with strings or token arrays")
		}
		p.Inputs = 1
	}
	if v.Len() == 0 {
		return bad(param, "must not be empty")
	}
	return nil
}

func parseAnthropic(o reqview.Value, rv *reqview.Request, req *Request) error {
	maxOutput(req, rv.MaxTokens)
	p := &req.Prompt
	p.Inputs = 1
	if sys := o.Get("system"); !sys.IsNull() {
		p.Messages++
		if err := anthropicContent(sys, "system", p); err != nil {
			return err
		}
	}
	msgs := o.Get("messages")
	if !isArray(msgs) {
		return bad("messages", "must be an array of messages")
	}
	var err error
	msgs.Elems(func(i int, m reqview.Value) bool {
		param := lazyParam{"messages", i}
		if !isObject(m) {
			err = bad(param.String(), "must be an object")
			return false
		}
		role := m.Get("role")
		if !isString(role) {
			err = bad(param.String()+".role", "must be a string")
			return false
		}
		p.Messages++
		p.text(role.View())
		p.extraMembers(m, anthropicMessageMembers, nil)
		if err = anthropicContent(m.Get("content"), ".content", p); err != nil {
			prefixParam(err, param.String())
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	if msgs.Len() == 0 {
		return bad("messages", "must not be empty")
	}
	if t := o.Get("tools"); !t.IsNull() {
		if !isArray(t) {
			return bad("tools", "must be an array")
		}
		p.TextTokens += TextTokens(raw(t))
		p.tools(t)
	}
	return nil
}

// anthropicContent reads a string or an array of content blocks; a
// tool_result block's own content is read one level down, without
// recursion (its blocks may not nest further tool results).
func anthropicContent(c reqview.Value, param string, p *Prompt) error {
	return anthropicBlocks(c, param, p, true)
}

func anthropicBlocks(c reqview.Value, param string, p *Prompt, outer bool) error {
	if isString(c) {
		p.text(c.View())
		return nil
	}
	if !isArray(c) {
		return bad(param, "must be a string or an array of content blocks")
	}
	var err error
	c.Elems(func(j int, b reqview.Value) bool {
		bp := lazyParam{param, j}
		if !isObject(b) {
			err = bad(bp.String(), "must be an object")
			return false
		}
		switch b.Get("type").View() {
		case "text":
			t := b.Get("text")
			if !isString(t) {
				err = bad(bp.String()+".text", "must be a string")
				return false
			}
			p.text(t.View())
		case "thinking":
			p.text(b.Get("thinking").View())
		case "image":
			img := ImagePart{Rule: ImageAnthropic}
			src := b.Get("source")
			if src.Get("type").View() == "base64" {
				if d, ok := newB64(src.Get("data").View()); ok {
					img.Width, img.Height, _ = imageSize(d)
				}
			}
			p.Images = append(p.Images, img)
		case "document":
			p.Files++
		case "tool_use":
			p.toolCall(b.Get("name"), b.Get("input"))
		case "tool_result":
			rc := b.Get("content")
			switch {
			case rc.IsNull():
			case !outer && !isString(rc):
				err = bad(bp.String()+".content", "must be a string: tool results do not nest")
			default:
				if err = anthropicBlocks(rc, ".content", p, false); err != nil {
					prefixParam(err, bp.String())
				}
			}
		case "":
			err = bad(bp.String()+".type", "must be a string")
		default:
			p.ExtraBytes += int64(len(b.Raw())) // unknown block: counted whole in the bound
		}
		return err == nil
	})
	return err
}

// maxOutput takes the first present value as the client's output cap
// (reqview validated them as positive integers).
func maxOutput(req *Request, vals ...reqview.Value) {
	for _, v := range vals {
		if n := reqview.Count(v); n > 0 {
			req.MaxOutput, req.MaxOutputSet = n, true
			return
		}
	}
}
