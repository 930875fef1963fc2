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

// completionRequest is the part of a legacy completion request the mock reads.
type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	MaxTokens     *int            `json:"max_tokens"`
	N             *int            `json:"n"`
	Seed          *int64          `json:"seed"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
}

// completionChoice is one choice of a response or stream chunk.
type completionChoice struct {
	Text         string    `json:"text"`
	Index        int       `json:"index"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

// completionResponse is a JSON completion or one stream chunk.
type completionResponse struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	Created           int64              `json:"created"`
	Model             string             `json:"model"`
	SystemFingerprint string             `json:"system_fingerprint"`
	Choices           []completionChoice `json:"choices"`
	Usage             json.RawMessage    `json:"usage,omitempty"`
}

// prompts is a parsed prompt or input: texts, or token-id arrays.
type prompts struct {
	texts  []string
	tokens [][]int
}

// count is the number of prompts.
func (p prompts) count() int { return len(p.texts) + len(p.tokens) }

// key returns the seed key and token count of prompt i.
func (p prompts) at(i int) (string, int) {
	if i < len(p.texts) {
		return p.texts[i], Tokens(p.texts[i])
	}
	t := p.tokens[i-len(p.texts)]
	raw, _ := json.Marshal(t)
	return string(raw), len(t)
}

// parsePrompts reads a string, an array of strings, an array of token ids or
// an array of token-id arrays, as prompt and input accept.
func parsePrompts(raw json.RawMessage, param string) (prompts, *apierror.Error) {
	raw = bytes.TrimSpace(raw)
	missing := badRequest(param, "Missing required parameter: '%s'.", param)
	invalid := badRequest(param, "Invalid type for '%s': expected a string, an array of strings, an array of integers or an array of integer arrays.", param)
	if len(raw) == 0 || string(raw) == "null" {
		return prompts{}, missing
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return prompts{texts: []string{one}}, nil
	}
	var texts []string
	if json.Unmarshal(raw, &texts) == nil {
		if len(texts) == 0 {
			return prompts{}, badRequest(param, "'%s' must not be empty.", param)
		}
		return prompts{texts: texts}, nil
	}
	var ids []int
	if json.Unmarshal(raw, &ids) == nil {
		if len(ids) == 0 {
			return prompts{}, badRequest(param, "'%s' must not be empty.", param)
		}
		return prompts{tokens: [][]int{ids}}, nil
	}
	var lists [][]int
	if json.Unmarshal(raw, &lists) == nil {
		if len(lists) == 0 {
			return prompts{}, badRequest(param, "'%s' must not be empty.", param)
		}
		for i, l := range lists {
			if len(l) == 0 {
				return prompts{}, badRequest(param, "'%s[%d]' must not be empty.", param, i)
			}
		}
		return prompts{tokens: lists}, nil
	}
	return prompts{}, invalid
}

// completions answers POST /v1/completions.
func (s *Server) completions(w http.ResponseWriter, r *http.Request, body []byte) {
	var req completionRequest
	if !s.decodeRequest(w, body, &req, &req.Model) {
		return
	}
	ps, e := parsePrompts(req.Prompt, "prompt")
	if e != nil {
		writeError(w, e)
		return
	}
	maxTokens := req.MaxTokens
	if maxTokens == nil {
		def := DefaultCompletionsMaxTokens
		maxTokens = &def
	}
	limit, n, e := outputLimit(maxTokens, "max_tokens", req.N)
	if e != nil {
		writeError(w, e)
		return
	}
	if ps.count()*n > maxChoices {
		writeError(w, badRequest("n", "At most %d choices per request: %d prompts × n=%d.", maxChoices, ps.count(), n))
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

	base := seedOf("completions", req.Model)
	if req.Seed != nil {
		base = seedWith(base, *req.Seed)
	}
	replies := make([]reply, 0, ps.count()*n)
	prompt, completion, longest := 0, 0, 0
	for p := 0; p < ps.count(); p++ {
		key, t := ps.at(p)
		prompt += t
		seed := seedOf(strconv.FormatUint(base, 16), key)
		reps := s.simReplies(seed, n, limit)
		if mode == UsageWorst {
			reps = worstReplies(seed, n, limit)
		}
		for _, rep := range reps {
			replies = append(replies, rep)
			completion += len(rep.pieces)
			longest = max(longest, len(rep.pieces))
		}
	}
	first, _ := ps.at(0)
	id := responseID("cmpl-", seedOf(strconv.FormatUint(base, 16), first, strconv.Itoa(ps.count())))
	created := s.opts.Now().Unix()
	reported := prompt
	if mode == UsageWorst {
		reported = worstPrompt(tcusage.APICompletions, body, prompt)
	}
	u := newUsage(reported, completion)
	u.PromptTokensDetails, u.CompletionTokensDetails = nil, nil

	var text strings.Builder
	for p := 0; p < ps.count(); p++ {
		key, _ := ps.at(p)
		text.WriteString(key)
	}
	pace, e := s.schedule(r.Context(), req.Model, text.String(), prompt, completion)
	if e != nil {
		writeError(w, e)
		return
	}
	if pace == nil {
		return // the client went away while queued
	}
	finish := "abort"
	defer func() { pace.done(finish) }()

	resp := func(choices []completionChoice, usageRaw json.RawMessage) completionResponse {
		return completionResponse{ID: id, Object: "text_completion", Created: created, Model: req.Model,
			SystemFingerprint: systemFingerprint, Choices: choices, Usage: usageRaw}
	}
	if !req.Stream {
		if !wait(r.Context(), pace.generation(longest)) {
			return
		}
		finish = replies[0].finish
		choices := make([]completionChoice, len(replies))
		for i, rep := range replies {
			finish := rep.finish
			choices[i] = completionChoice{Text: rep.text(), Index: i, FinishReason: &finish}
		}
		w.Header().Set("X-Request-Id", id)
		writeJSON(w, http.StatusOK, resp(choices, usageField(true, reportedUsage(mode, u))))
		return
	}

	include := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	nullUsage := usageField(include, nil)
	sw := startStream(w, id)
	if !wait(r.Context(), pace.ttft) {
		return
	}
	if abortAt == 0 {
		abort()
	}
	if !s.tokenStream(r, replies, pace.itl, abortAt, func(i int, piece string) error {
		return sw.event(resp([]completionChoice{{Text: piece, Index: i}}, nullUsage))
	}) {
		return
	}
	finish = replies[0].finish
	for i, rep := range replies {
		finish := rep.finish
		if sw.event(resp([]completionChoice{{Index: i, FinishReason: &finish}}, nullUsage)) != nil {
			return
		}
	}
	if ru := reportedUsage(mode, u); include && ru != nil {
		if sw.event(resp([]completionChoice{}, usageField(true, ru))) != nil {
			return
		}
	}
	_ = sw.done()
}
