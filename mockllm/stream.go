package mockllm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// streamOptions is the request's stream_options object.
type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// usage is the token accounting of a response, in OpenAI's shape.
type usage struct {
	PromptTokens            int                `json:"prompt_tokens"`
	fraction                bool               // UsageFraction: rendered with a half token
	CompletionTokens        int                `json:"completion_tokens"`
	TotalTokens             int                `json:"total_tokens"`
	PromptTokensDetails     *promptDetails     `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails *completionDetails `json:"completion_tokens_details,omitempty"`
}

// promptDetails breaks prompt tokens down; the mock never caches.
type promptDetails struct {
	CachedTokens int `json:"cached_tokens"`
	AudioTokens  int `json:"audio_tokens"`
}

// completionDetails breaks completion tokens down; the mock never reasons.
type completionDetails struct {
	ReasoningTokens          int `json:"reasoning_tokens"`
	AudioTokens              int `json:"audio_tokens"`
	AcceptedPredictionTokens int `json:"accepted_prediction_tokens"`
	RejectedPredictionTokens int `json:"rejected_prediction_tokens"`
}

// newUsage returns the usage of a response with details, as chat and
// completions report it.
func newUsage(prompt, completion int) *usage {
	return &usage{
		PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion,
		PromptTokensDetails:     &promptDetails{},
		CompletionTokensDetails: &completionDetails{},
	}
}

// usageField renders the "usage" member of a stream chunk: absent unless the
// client asked for usage, null on every chunk but the last, then the totals.
func usageField(include bool, u *usage) json.RawMessage {
	if !include {
		return nil
	}
	if u == nil {
		return json.RawMessage("null")
	}
	raw, err := json.Marshal(u)
	if err != nil { // plain ints: cannot happen
		return json.RawMessage("null")
	}
	return raw
}

// sseWriter writes Server-Sent Events, flushing each one so clients see
// tokens as they are produced.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// startStream sends the headers of an event stream.
func startStream(w http.ResponseWriter, requestID string) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Request-Id", requestID)
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	_ = s.rc.Flush()
	return s
}

// event writes one `data: <json>` event.
func (s *sseWriter) event(v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	buf := make([]byte, 0, len(raw)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, raw...)
	buf = append(buf, "\n\n"...)
	if _, err := s.w.Write(buf); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("flush event: %w", err)
	}
	return nil
}

// done writes the terminating `data: [DONE]` event.
func (s *sseWriter) done() error {
	if _, err := s.w.Write([]byte("data: [DONE]\n\n")); err != nil {
		return fmt.Errorf("write [DONE]: %w", err)
	}
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("flush [DONE]: %w", err)
	}
	return nil
}

// abortAfter reads the X-Mock-Abort-After hook: the number of streamed
// tokens after which the connection is dropped, or -1.
func abortAfter(r *http.Request) (int, bool) {
	v := r.Header.Get(HeaderAbortAfter)
	if v == "" {
		return -1, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// abort drops the connection mid-response, as a crashed model server would;
// net/http recovers this panic and closes the connection without logging.
func abort() {
	panic(http.ErrAbortHandler)
}

// tokenStream emits the pieces of several replies in lock step, one token
// per choice per step, itl apart. emit writes one event for
// choice i and piece p. It returns false when the client went away.
func (s *Server) tokenStream(r *http.Request, replies []reply, itl time.Duration, abortAt int, emit func(i int, piece string) error) bool {
	ctx := r.Context()
	longest := 0
	for _, rep := range replies {
		longest = max(longest, len(rep.pieces))
	}
	sent := 0
	for k := 0; k < longest; k++ {
		if k > 0 && !wait(ctx, itl) {
			return false
		}
		for i, rep := range replies {
			if k >= len(rep.pieces) {
				continue
			}
			if abortAt >= 0 && sent >= abortAt {
				abort()
			}
			if emit(i, rep.pieces[k]) != nil {
				return false
			}
			sent++
		}
	}
	if abortAt >= 0 && sent >= abortAt {
		abort()
	}
	return true
}
