package mockllm

import (
	"bytes"
	"encoding/json"
	tcusage "github.com/tollgate/tollgate/filters/tokencount/usage"
	"net/http"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/shared/apierror"
)

// Chat prompt accounting, following OpenAI's cookbook for chat models.
const (
	tokensPerMessage = 3
	tokensPerName    = 1
	replyPriming     = 3
	// imagePartTokens is a low-detail image's documented cost.
	imagePartTokens = 85
	// mediaPartTokens prices an audio or file part.
	mediaPartTokens = 100
)

// chatRequest is the part of a chat completion request the mock reads.
type chatRequest struct {
	Model               string          `json:"model"`
	Messages            []chatMessage   `json:"messages"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	N                   *int            `json:"n"`
	Seed                *int64          `json:"seed"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	Tools               json.RawMessage `json:"tools"`
}

// chatMessage is one input message.
type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Name    string          `json:"name"`
}

// contentPart is one element of an array content.
type contentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// chatMessageOut is the assistant message of a JSON response.
type chatMessageOut struct {
	Role    string  `json:"role"`
	Content string  `json:"content"`
	Refusal *string `json:"refusal"`
}

// chatChoice is one choice of a JSON response.
type chatChoice struct {
	Index        int            `json:"index"`
	Message      chatMessageOut `json:"message"`
	Logprobs     *struct{}      `json:"logprobs"`
	FinishReason string         `json:"finish_reason"`
}

// chatResponse is a JSON chat completion.
type chatResponse struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	Choices           []chatChoice `json:"choices"`
	Usage             *usage       `json:"usage"`
	SystemFingerprint string       `json:"system_fingerprint"`
}

// chatDelta is the delta of a stream chunk.
type chatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

// chatChunkChoice is one choice of a stream chunk.
type chatChunkChoice struct {
	Index        int       `json:"index"`
	Delta        chatDelta `json:"delta"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

// chatChunk is one chat.completion.chunk event.
type chatChunk struct {
	ID                string            `json:"id"`
	Object            string            `json:"object"`
	Created           int64             `json:"created"`
	Model             string            `json:"model"`
	SystemFingerprint string            `json:"system_fingerprint"`
	Choices           []chatChunkChoice `json:"choices"`
	Usage             json.RawMessage   `json:"usage,omitempty"`
}

// chatPrompt validates the messages and returns their token count and a
// canonical key that seeds the reply.
func chatPrompt(msgs []chatMessage) (int, string, *apierror.Error) {
	if len(msgs) == 0 {
		return 0, "", badRequest("messages", "'messages' must contain at least one message.")
	}
	var key strings.Builder
	tokens := replyPriming
	for i, m := range msgs {
		param := "messages[" + strconv.Itoa(i) + "]"
		switch m.Role {
		case "system", "developer", "user", "assistant", "tool", "function":
		case "":
			return 0, "", badRequest(param+".role", "Missing required parameter: '%s.role'.", param)
		default:
			return 0, "", badRequest(param+".role", "Invalid value: '%s'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool' and 'function'.", m.Role)
		}
		tokens += tokensPerMessage + Tokens(m.Role)
		if m.Name != "" {
			tokens += tokensPerName + Tokens(m.Name)
		}
		n, err := contentTokens(m.Content, param+".content")
		if err != nil {
			return 0, "", err
		}
		tokens += n
		key.WriteString(m.Role)
		key.WriteByte(0)
		key.Write(m.Content)
		key.WriteByte(0)
	}
	return tokens, key.String(), nil
}

// contentTokens counts a message content: a string, null, or an array of parts.
func contentTokens(raw json.RawMessage, param string) (int, *apierror.Error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, badRequest(param, "Invalid string in '%s'.", param)
		}
		return Tokens(s), nil
	case '[':
		var parts []json.RawMessage
		if err := json.Unmarshal(raw, &parts); err != nil {
			return 0, badRequest(param, "Invalid array in '%s'.", param)
		}
		n := 0
		for i, p := range parts {
			var part contentPart
			pp := param + "[" + strconv.Itoa(i) + "]"
			if err := json.Unmarshal(p, &part); err != nil {
				return 0, badRequest(pp, "Invalid content part '%s': expected an object with a 'type'.", pp)
			}
			switch part.Type {
			case "text":
				n += Tokens(part.Text)
			case "image_url":
				n += imagePartTokens
			case "input_audio", "file":
				n += mediaPartTokens
			case "":
				return 0, badRequest(pp+".type", "Missing required parameter: '%s.type'.", pp)
			default:
				return 0, badRequest(pp+".type", "Invalid value: '%s'. Supported values are: 'text', 'image_url', 'input_audio' and 'file'.", part.Type)
			}
		}
		return n, nil
	}
	return 0, badRequest(param, "Invalid type for '%s': expected a string or an array of content parts.", param)
}

// outputLimit checks the client's maximum output and the choice count.
func outputLimit(maxTokens *int, param string, n *int) (int, int, *apierror.Error) {
	limit := 0
	if maxTokens != nil {
		if *maxTokens < 1 {
			return 0, 0, badRequest(param, "Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d instead.", param, *maxTokens)
		}
		limit = *maxTokens
	}
	choices := 1
	if n != nil {
		if *n < 1 || *n > maxChoices {
			return 0, 0, badRequest("n", "Invalid 'n': expected a value between 1 and %d, but got %d instead.", maxChoices, *n)
		}
		choices = *n
	}
	return limit, choices, nil
}

// chat answers POST /v1/chat/completions.
func (s *Server) chat(w http.ResponseWriter, r *http.Request, body []byte) {
	var req chatRequest
	if !s.decodeRequest(w, body, &req, &req.Model) {
		return
	}
	prompt, key, e := chatPrompt(req.Messages)
	if e != nil {
		writeError(w, e)
		return
	}
	if len(req.Tools) > 0 && string(req.Tools) != "null" {
		prompt += Tokens(string(req.Tools))
	}
	maxParam, maxTokens := "max_tokens", req.MaxTokens
	if req.MaxCompletionTokens != nil {
		maxParam, maxTokens = "max_completion_tokens", req.MaxCompletionTokens
	}
	limit, n, e := outputLimit(maxTokens, maxParam, req.N)
	if e != nil {
		writeError(w, e)
		return
	}
	if req.StreamOptions != nil && !req.Stream {
		writeError(w, badRequest("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled."))
		return
	}
	abortAt, ok := abortAfter(r)
	if !ok {
		writeError(w, badRequest("", "%s must be a non-negative integer.", HeaderAbortAfter))
		return
	}

	mode, e := s.usageMode(r)
	if e != nil {
		writeError(w, e)
		return
	}

	seed := seedOf("chat", req.Model, key)
	if req.Seed != nil {
		seed = seedWith(seed, *req.Seed)
	}
	replies := s.simReplies(seed, n, limit)
	reported := prompt
	if mode == UsageWorst {
		if limit > 0 {
			replies = worstReplies(seed, n, limit)
		}
		reported = worstPrompt(tcusage.APIChatCompletions, body, prompt)
	}
	completion, longest := 0, 0
	for _, rep := range replies {
		completion += len(rep.pieces)
		longest = max(longest, len(rep.pieces))
	}
	id := responseID("chatcmpl-", seed)
	created := s.opts.Now().Unix()
	u := newUsage(reported, completion)

	pace, e := s.schedule(r.Context(), req.Model, key, prompt, completion)
	if e != nil {
		writeError(w, e)
		return
	}
	if pace == nil {
		return // the client went away while queued
	}
	finish := "abort"
	defer func() { pace.done(finish) }()
	u.PromptTokensDetails.CachedTokens = pace.cached

	if !req.Stream {
		if !wait(r.Context(), pace.generation(longest)) {
			return
		}
		finish = replies[0].finish
		resp := chatResponse{ID: id, Object: "chat.completion", Created: created, Model: req.Model,
			Usage: reportedUsage(mode, u), SystemFingerprint: systemFingerprint, Choices: make([]chatChoice, n)}
		for i, rep := range replies {
			resp.Choices[i] = chatChoice{Index: i, Message: chatMessageOut{Role: "assistant", Content: rep.text()}, FinishReason: rep.finish}
		}
		w.Header().Set("X-Request-Id", id)
		writeJSON(w, http.StatusOK, resp)
		return
	}

	include := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	chunk := func(choices []chatChunkChoice, usageRaw json.RawMessage) chatChunk {
		return chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: req.Model,
			SystemFingerprint: systemFingerprint, Choices: choices, Usage: usageRaw}
	}
	nullUsage := usageField(include, nil)
	sw := startStream(w, id)
	if !wait(r.Context(), pace.ttft) {
		return
	}
	empty := ""
	for i := range replies {
		if sw.event(chunk([]chatChunkChoice{{Index: i, Delta: chatDelta{Role: "assistant", Content: &empty}}}, nullUsage)) != nil {
			return
		}
	}
	if abortAt == 0 {
		abort()
	}
	if !s.tokenStream(r, replies, pace.itl, abortAt, func(i int, piece string) error {
		return sw.event(chunk([]chatChunkChoice{{Index: i, Delta: chatDelta{Content: &piece}}}, nullUsage))
	}) {
		return
	}
	finish = replies[0].finish
	for i, rep := range replies {
		finish := rep.finish
		if sw.event(chunk([]chatChunkChoice{{Index: i, FinishReason: &finish}}, nullUsage)) != nil {
			return
		}
	}
	if ru := reportedUsage(mode, u); include && ru != nil {
		if sw.event(chunk([]chatChunkChoice{}, usageField(true, ru))) != nil {
			return
		}
	}
	_ = sw.done()
}
