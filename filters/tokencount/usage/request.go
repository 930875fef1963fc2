// Package usage is the pure logic of the tokencount filter: it reads
// OpenAI-compatible and Anthropic request bodies, estimates prompt tokens,
// computes the reservation, extracts the real usage from JSON and streamed
// responses, prices it, and rewrites streamed chat requests so that the
// upstream reports usage. Nothing here calls the proxy.
package usage

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tidwall/gjson"
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
}

// Error formats the problem for the client's error message.
func (e *RequestError) Error() string {
	if e.Param == "" {
		return ErrMalformedRequest.Error() + ": " + e.Msg
	}
	return fmt.Sprintf("%s: %s: %s", ErrMalformedRequest, e.Param, e.Msg)
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

func (l lazyParam) String() string { return fmt.Sprintf("%s[%d]", l.name, l.i) }

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
}

// maxN bounds n and best_of so reservations cannot overflow.
const maxN = 1024

// ParseRequest reads a request body of the given API. Every malformed
// body gives a *RequestError wrapping ErrMalformedRequest. Each object is
// walked once (a large image payload is not rescanned per field), and a
// repeated key takes its last value, as the JSON parsers of the upstream
// servers do; a repeated key that drives metering is refused.
func ParseRequest(api API, body []byte) (*Request, error) {
	if !gjson.ValidBytes(body) {
		return nil, bad("", "the body is not valid JSON")
	}
	// The body is only read while parsing; strings kept are cloned.
	root := gjson.Parse(unsafeString(body))
	if !root.IsObject() {
		return nil, bad("", "the body must be a JSON object")
	}
	var o object
	o.index(root)
	// A client must not show the gateway one value and the upstream another.
	if k, ok := o.duplicate("model", "stream", "stream_options", "max_tokens", "max_completion_tokens",
		"n", "best_of", "messages", "prompt", "input", "system"); ok {
		return nil, bad(k, "must not appear more than once")
	}
	req := &Request{API: api, N: 1}
	var err error
	if req.Model, err = o.optString("model"); err != nil {
		return nil, err
	}
	req.Model = strings.Clone(req.Model)
	if req.Stream, err = o.optBool("stream"); err != nil {
		return nil, err
	}
	so := o.get("stream_options")
	req.StreamOptions = so.Exists()
	if so.Exists() && so.Type != gjson.Null {
		if !so.IsObject() {
			return nil, bad("stream_options", "must be an object")
		}
		var sop object
		sop.index(so)
		if req.IncludeUsage, err = sop.optBool("include_usage"); err != nil {
			return nil, err
		}
	}
	switch api {
	case APIChatCompletions:
		err = parseChat(&o, req)
	case APICompletions:
		err = parseCompletions(&o, req)
	case APIEmbeddings:
		err = parseEmbeddings(&o, req)
	case APIAnthropicMessages:
		err = parseAnthropic(&o, req)
	default:
		err = bad("", "unsupported endpoint")
	}
	if err != nil {
		return nil, err
	}
	return req, nil
}

func parseChat(o *object, req *Request) error {
	if err := parseMaxOutput(o, req, "max_completion_tokens", "max_tokens"); err != nil {
		return err
	}
	n, _, err := o.optCount("n")
	if err != nil {
		return err
	}
	if n > 0 {
		req.N = n
	}
	msgs := o.get("messages")
	if !msgs.IsArray() {
		return bad("messages", "must be an array of messages")
	}
	p := &req.Prompt
	p.Inputs = 1
	var perr error
	i := 0
	msgs.ForEach(func(_, m gjson.Result) bool {
		perr = chatMessage(m, i, p)
		i++
		return perr == nil
	})
	if perr != nil {
		return perr
	}
	if i == 0 {
		return bad("messages", "must not be empty")
	}
	for _, key := range []string{"tools", "functions"} {
		if t := o.get(key); t.Exists() && t.Type != gjson.Null {
			if !t.IsArray() {
				return bad(key, "must be an array")
			}
			p.TextTokens += TextTokens(t.Raw)
		}
	}
	return nil
}

func chatMessage(m gjson.Result, i int, p *Prompt) error {
	if !m.IsObject() {
		return bad(fmt.Sprintf("messages[%d]", i), "must be an object")
	}
	var mo object
	mo.index(m)
	role := mo.get("role")
	if role.Type != gjson.String {
		return bad(fmt.Sprintf("messages[%d].role", i), "must be a string")
	}
	p.Messages++
	p.TextTokens += TextTokens(role.Str)
	if name := mo.get("name"); name.Exists() && name.Type != gjson.Null {
		if name.Type != gjson.String {
			return bad(fmt.Sprintf("messages[%d].name", i), "must be a string")
		}
		p.Names++
		p.TextTokens += TextTokens(name.Str)
	}
	if err := chatContent(mo.get("content"), i, p); err != nil {
		return err
	}
	if r := mo.get("refusal"); r.Type == gjson.String {
		p.TextTokens += TextTokens(r.Str)
	}
	if tc := mo.get("tool_calls"); tc.IsArray() {
		tc.ForEach(func(_, c gjson.Result) bool {
			f := c.Get("function")
			p.TextTokens += TextTokens(f.Get("name").Str) + TextTokens(f.Get("arguments").Str)
			return true
		})
	}
	if fc := mo.get("function_call"); fc.IsObject() {
		p.TextTokens += TextTokens(fc.Get("name").Str) + TextTokens(fc.Get("arguments").Str)
	}
	return nil
}

func chatContent(c gjson.Result, i int, p *Prompt) error {
	switch {
	case !c.Exists() || c.Type == gjson.Null:
		return nil // an assistant message with tool calls only
	case c.Type == gjson.String:
		p.TextTokens += TextTokens(c.Str)
		return nil
	case !c.IsArray():
		return bad(fmt.Sprintf("messages[%d].content", i), "must be a string or an array of content parts")
	}
	var err error
	j := 0
	c.ForEach(func(_, part gjson.Result) bool {
		if err = chatPart(part, p); err != nil {
			prefixParam(err, fmt.Sprintf("messages[%d].content[%d]", i, j))
		}
		j++
		return err == nil
	})
	return err
}

// chatPart reads one content part; error params are relative to the part.
func chatPart(part gjson.Result, p *Prompt) error {
	if !part.IsObject() {
		return bad("", "must be an object")
	}
	var po object
	po.index(part)
	typ := po.get("type")
	if typ.Type != gjson.String {
		return bad(".type", "must be a string")
	}
	switch typ.Str {
	case "text", "input_text", "output_text":
		t := po.get("text")
		if t.Type != gjson.String {
			return bad(".text", "must be a string")
		}
		p.TextTokens += TextTokens(t.Str)
	case "refusal":
		p.TextTokens += TextTokens(po.get("refusal").Str)
	case "image_url":
		iu := po.get("image_url")
		var url, detail gjson.Result
		if iu.Type == gjson.String {
			url = iu // some clients send the URL string directly
		} else if iu.IsObject() {
			var io object
			io.index(iu)
			url, detail = io.get("url"), io.get("detail")
		}
		if url.Type != gjson.String || url.Str == "" {
			return bad(".image_url.url", "must be a non-empty string")
		}
		img := ImagePart{Rule: ImageOpenAI, Detail: canonicalDetail(detail.Str)}
		if (img.Detail == "" && detail.Str != "") || (detail.Exists() && detail.Type != gjson.String && detail.Type != gjson.Null) {
			return bad(".image_url.detail", `must be "low", "high" or "auto"`)
		}
		if _, payload, ok := dataURL(url.Str); ok {
			if b, ok := newB64(payload); ok {
				img.Width, img.Height, _ = imageSize(b)
			}
		}
		p.Images = append(p.Images, img)
	case "input_audio":
		var ao object
		ao.index(po.get("input_audio"))
		data := ao.get("data")
		if data.Type != gjson.String {
			return bad(".input_audio.data", "must be a base64 string")
		}
		a := AudioPart{Format: strings.Clone(ao.get("format").Str)}
		if b, ok := newB64(data.Str); ok {
			a.Seconds, a.Known = audioSeconds(b, a.Format)
		}
		p.Audio = append(p.Audio, a)
	case "file":
		p.Files++
	}
	// Unknown part types are left to the upstream to accept or refuse.
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

func parseCompletions(o *object, req *Request) error {
	if err := parseMaxOutput(o, req, "max_tokens"); err != nil {
		return err
	}
	for _, key := range []string{"n", "best_of"} {
		n, _, err := o.optCount(key)
		if err != nil {
			return err
		}
		req.N = max(req.N, n)
	}
	prompt := o.get("prompt")
	if !prompt.Exists() || prompt.Type == gjson.Null {
		return bad("prompt", "is required")
	}
	if err := inputs(prompt, "prompt", &req.Prompt); err != nil {
		return err
	}
	if s := o.get("suffix"); s.Type == gjson.String {
		req.Prompt.TextTokens += TextTokens(s.Str)
	}
	return nil
}

func parseEmbeddings(o *object, req *Request) error {
	in := o.get("input")
	if !in.Exists() || in.Type == gjson.Null {
		return bad("input", "is required")
	}
	return inputs(in, "input", &req.Prompt)
}

// inputs reads a prompt or input: a string, an array of strings, an array
// of token ids, or an array of token-id arrays.
func inputs(v gjson.Result, param string, p *Prompt) error {
	if v.Type == gjson.String {
		p.Inputs = 1
		p.TextTokens += TextTokens(v.Str)
		return nil
	}
	if !v.IsArray() {
		return bad(param, "must be a string, an array of strings or an array of token ids")
	}
	var err error
	ids := false
	i := 0
	v.ForEach(func(_, e gjson.Result) bool {
		switch {
		case e.Type == gjson.String:
			p.Inputs++
			p.TextTokens += TextTokens(e.Str)
		case e.Type == gjson.Number:
			ids = true
			p.TokenIDs++
		case e.IsArray():
			p.Inputs++
			e.ForEach(func(_, t gjson.Result) bool {
				if t.Type != gjson.Number {
					err = bad(fmt.Sprintf("%s[%d]", param, i), "token arrays must hold numbers only")
					return false
				}
				p.TokenIDs++
				return true
			})
		default:
			err = bad(fmt.Sprintf("%s[%d]", param, i), "must be a string, a token id or an array of token ids")
		}
		i++
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
	if i == 0 {
		return bad(param, "must not be empty")
	}
	return nil
}

func parseAnthropic(o *object, req *Request) error {
	if err := parseMaxOutput(o, req, "max_tokens"); err != nil {
		return err
	}
	p := &req.Prompt
	p.Inputs = 1
	if sys := o.get("system"); sys.Exists() && sys.Type != gjson.Null {
		p.Messages++
		if err := anthropicContent(sys, "system", p); err != nil {
			return err
		}
	}
	msgs := o.get("messages")
	if !msgs.IsArray() {
		return bad("messages", "must be an array of messages")
	}
	var err error
	i := 0
	msgs.ForEach(func(_, m gjson.Result) bool {
		param := lazyParam{"messages", i}
		i++
		if !m.IsObject() {
			err = bad(param.String(), "must be an object")
			return false
		}
		var mo object
		mo.index(m)
		role := mo.get("role")
		if role.Type != gjson.String {
			err = bad(param.String()+".role", "must be a string")
			return false
		}
		p.Messages++
		p.TextTokens += TextTokens(role.Str)
		if err = anthropicContent(mo.get("content"), ".content", p); err != nil {
			prefixParam(err, param.String())
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	if i == 0 {
		return bad("messages", "must not be empty")
	}
	if t := o.get("tools"); t.Exists() && t.Type != gjson.Null {
		if !t.IsArray() {
			return bad("tools", "must be an array")
		}
		p.TextTokens += TextTokens(t.Raw)
	}
	return nil
}

// anthropicContent reads a string or an array of content blocks.
func anthropicContent(c gjson.Result, param string, p *Prompt) error {
	if c.Type == gjson.String {
		p.TextTokens += TextTokens(c.Str)
		return nil
	}
	if !c.IsArray() {
		return bad(param, "must be a string or an array of content blocks")
	}
	var err error
	j := 0
	c.ForEach(func(_, b gjson.Result) bool {
		bp := lazyParam{param, j}
		j++
		if !b.IsObject() {
			err = bad(bp.String(), "must be an object")
			return false
		}
		var bo object
		bo.index(b)
		switch bo.get("type").Str {
		case "text":
			t := bo.get("text")
			if t.Type != gjson.String {
				err = bad(bp.String()+".text", "must be a string")
				return false
			}
			p.TextTokens += TextTokens(t.Str)
		case "thinking":
			p.TextTokens += TextTokens(bo.get("thinking").Str)
		case "image":
			img := ImagePart{Rule: ImageAnthropic}
			var so object
			so.index(bo.get("source"))
			if so.get("type").Str == "base64" {
				if d, ok := newB64(so.get("data").Str); ok {
					img.Width, img.Height, _ = imageSize(d)
				}
			}
			p.Images = append(p.Images, img)
		case "document":
			p.Files++
		case "tool_use":
			p.TextTokens += TextTokens(bo.get("name").Str) + TextTokens(bo.get("input").Raw)
		case "tool_result":
			if rc := bo.get("content"); rc.Exists() && rc.Type != gjson.Null {
				if err = anthropicContent(rc, ".content", p); err != nil {
					prefixParam(err, bp.String())
				}
			}
		case "":
			err = bad(bp.String()+".type", "must be a string")
		}
		return err == nil
	})
	return err
}

// parseMaxOutput takes the first present key as the client's output cap.
func parseMaxOutput(o *object, req *Request, keys ...string) error {
	for _, k := range keys {
		v, set, err := o.optCount(k)
		if err != nil {
			return err
		}
		if set {
			req.MaxOutput, req.MaxOutputSet = v, true
			return nil
		}
	}
	return nil
}
