package guard_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// post sends a chat request through the gateway and returns status and body.
func (s *stack) post(t *testing.T, app, path, body string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL(path), strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.Keys[app])
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.Envoy.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func chat(prompt string, extra string) string {
	p, _ := json.Marshal(prompt)
	return `{"model":"llama-3.1-8b","max_tokens":64,"messages":[{"role":"user","content":` + string(p) + `}]` + extra + `}`
}

// errorCode reads an OpenAI-shaped error body.
func errorCode(t *testing.T, body []byte) (code, param, msg string) {
	t.Helper()
	var e struct {
		Error struct {
			Code    string  `json:"code"`
			Param   *string `json:"param"`
			Message string  `json:"message"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &e), string(body))
	if e.Error.Param != nil {
		param = *e.Error.Param
	}
	return e.Error.Code, param, e.Error.Message
}

func TestGuard(t *testing.T) {
	s := startStack(t)

	blocked := func(t *testing.T, app, path, body, code, param string) {
		t.Helper()
		before := s.Upstream.Count()
		status, b := s.post(t, app, path, body, nil)
		require.Equal(t, 400, status, string(b))
		c, p, _ := errorCode(t, b)
		assert.Equal(t, code, c)
		if param != "" {
			assert.Equal(t, param, p)
		}
		assert.Equal(t, before, s.Upstream.Count(), "the upstream must not be reached")
	}

	t.Run("threats in a query parameter are refused before the upstream", func(t *testing.T) {
		blocked(t, "g", "/v1/chat/completions?q="+url.QueryEscape("1' OR '1'='1"), chat("hi", ""), "guard_sqli", "")
		blocked(t, "g", "/v1/chat/completions?next="+url.QueryEscape("<script>alert(1)</script>"), chat("hi", ""), "guard_xss", "")
	})

	t.Run("threats in configured JSON fields are refused before the upstream", func(t *testing.T) {
		blocked(t, "g", "/v1/chat/completions", chat("hi", `,"user":"<img src=x onerror=alert(1)>"`), "guard_xss", "user")
		blocked(t, "g", "/v1/chat/completions", chat("hi", `,"metadata":{"note":"x'; DROP TABLE users; --"}`), "guard_sqli", "metadata.note")
	})

	t.Run("a prompt that discusses SQL and HTML passes untouched", func(t *testing.T) {
		prompt := "Explain SELECT * FROM users WHERE name = '' OR '1'='1'; -- and what <script>alert(1)</script> does"
		status, b := s.post(t, "g", "/v1/chat/completions", chat(prompt, ""), nil)
		require.Equal(t, 200, status, string(b))
		var got struct {
			Messages []struct{ Content string } `json:"messages"`
		}
		last, ok := s.Upstream.Last()
		require.True(t, ok)
		require.NoError(t, json.Unmarshal(last.Body, &got))
		require.Len(t, got.Messages, 1)
		assert.Equal(t, prompt, got.Messages[0].Content)
	})

	t.Run("a payment card reaches the upstream as a placeholder", func(t *testing.T) {
		status, b := s.post(t, "g", "/v1/chat/completions", chat("Charge my card 4111 1111 1111 1111 please", ""), nil)
		require.Equal(t, 200, status, string(b))
		last, ok := s.Upstream.Last()
		require.True(t, ok)
		up := string(last.Body)
		assert.True(t, json.Valid([]byte(up)), up)
		assert.Contains(t, up, `"Charge my card [PAYMENT_CARD] please"`)
		assert.NotContains(t, up, "4111")
		var line string
		envoytest.Eventually(t, 10*time.Second, func() bool {
			for _, l := range s.AccessLines(t) {
				if strings.Contains(l, "request:payment_card:mask:1") {
					line = l
					return true
				}
			}
			return false
		}, "the access log names the decision")
		assert.NotContains(t, line, "4111")
		s.Envoy.WaitPromMetric(t, "tollgate_guard_decisions_total", map[string]string{
			"detector": "payment_card", "action": "mask", "product": "guarded", "direction": "request"}, 10*time.Second,
			func(v float64) bool { return v >= 1 })
	})

	t.Run("an e-mail streamed byte by byte reaches the client masked, usage unchanged", func(t *testing.T) {
		status, b := s.post(t, "g", "/v1/chat/completions",
			chat("Who do I write to?", `,"stream":true,"stream_options":{"include_usage":true}`), map[string]string{headerEmailStream: "1"})
		require.Equal(t, 200, status, string(b))
		var content strings.Builder
		var usage *struct{ PromptTokens, CompletionTokens, TotalTokens int64 }
		events, done := 0, false
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := sc.Text()
			data, ok := strings.CutPrefix(line, "data: ")
			if !ok {
				continue
			}
			events++
			if data == "[DONE]" {
				done = true
				continue
			}
			require.True(t, json.Valid([]byte(data)), "event is not valid JSON: %q", data)
			var ch struct {
				Choices []struct {
					Delta struct{ Content string } `json:"delta"`
				} `json:"choices"`
				Usage *struct {
					PromptTokens     int64 `json:"prompt_tokens"`
					CompletionTokens int64 `json:"completion_tokens"`
					TotalTokens      int64 `json:"total_tokens"`
				} `json:"usage"`
			}
			require.NoError(t, json.Unmarshal([]byte(data), &ch))
			for _, c := range ch.Choices {
				content.WriteString(c.Delta.Content)
			}
			if ch.Usage != nil {
				usage = &struct{ PromptTokens, CompletionTokens, TotalTokens int64 }{ch.Usage.PromptTokens, ch.Usage.CompletionTokens, ch.Usage.TotalTokens}
			}
		}
		require.NoError(t, sc.Err())
		assert.True(t, done, "the stream ends with [DONE]")
		assert.Equal(t, strings.Replace(streamedAnswer, "jane.doe@example.com", "[EMAIL]", 1), content.String())
		assert.NotContains(t, content.String(), "jane")
		assert.Greater(t, events, 10, "the answer still streams as many events")
		require.NotNil(t, usage, "the usage chunk passes")
		assert.Equal(t, int64(streamedPrompt), usage.PromptTokens)
		assert.Equal(t, int64(streamedCompletion), usage.CompletionTokens)
		// tokencount metered the upstream's usage, unchanged by the masking.
		envoytest.Eventually(t, 10*time.Second, func() bool {
			for _, l := range s.AccessLines(t) {
				if strings.Contains(l, "response:email:mask:1") {
					var f struct {
						Prompt     string `json:"prompt_tokens"`
						Completion string `json:"completion_tokens"`
					}
					_ = json.Unmarshal([]byte(l), &f)
					return f.Prompt == "11" && f.Completion == "17"
				}
			}
			return false
		}, "access log with the guard decision and tokencount's usage 11/17")
	})

	t.Run("a moderation flag refuses the prompt naming the category", func(t *testing.T) {
		hits := s.mod.hits.Load()
		blocked(t, "g", "/v1/chat/completions", chat("Tell me how to build a bomb", ""), "guard_moderation_violence", "")
		_, _, msg := func() (string, string, string) {
			_, b := s.post(t, "g", "/v1/chat/completions", chat("Tell me how to build a bomb", ""), nil)
			return errorCode(t, b)
		}()
		assert.Contains(t, msg, `"violence"`)
		assert.Equal(t, hits+1, s.mod.hits.Load(), "the second verdict comes from the shared cache")
	})

	t.Run("moderation down: fail closed refuses, fail open passes", func(t *testing.T) {
		s.mod.down.Store(true)
		defer s.mod.down.Store(false)
		before := s.Upstream.Count()
		status, b := s.post(t, "g", "/v1/chat/completions", chat("A fresh question while the checker is down", ""), nil)
		require.Equal(t, 503, status, string(b))
		code, _, _ := errorCode(t, b)
		assert.Equal(t, "guard_moderation_unavailable", code)
		assert.Equal(t, before, s.Upstream.Count())
		status, b = s.post(t, "go", "/v1/chat/completions", chat("Another fresh question while the checker is down", ""), nil)
		require.Equal(t, 200, status, string(b))
		assert.Equal(t, before+1, s.Upstream.Count())
	})

	t.Run("pathological input does not slow the gateway", func(t *testing.T) {
		for name, prompt := range map[string]string{
			"backtracking bait": strings.Repeat("x", 256<<10),
			"digit groups":      strings.Repeat("1 ", 128<<10),
			"pem openers":       strings.Repeat("-----BEGIN ", 16<<10),
			"at signs":          strings.Repeat("a@", 128<<10),
		} {
			start := time.Now()
			status, b := s.post(t, "g", "/v1/chat/completions", chat(prompt, ""), nil)
			took := time.Since(start)
			require.Equal(t, 200, status, "%s: %.200s", name, b)
			// A backtracking engine would need years for the bait; a
			// linear one needs well under a second (bound generous for a
			// loaded CI machine).
			assert.Less(t, took, 20*time.Second, name)
		}
		start := time.Now()
		status, _ := s.post(t, "g", "/v1/chat/completions", chat("quick one after", ""), nil)
		assert.Equal(t, 200, status)
		assert.Less(t, time.Since(start), 10*time.Second)
	})

	t.Run("the OpenAI SDK sees a BadRequestError with the policy code", func(t *testing.T) {
		c := openai.NewClient(option.WithBaseURL(s.URL("/v1")), option.WithAPIKey(s.Keys["g"]),
			option.WithMaxRetries(0), option.WithRequestTimeout(30*time.Second))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "llama-3.1-8b",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("my key is AKIAIOSFODNN7EXAMPLE")},
		})
		var e *openai.Error
		require.True(t, errors.As(err, &e), "want *openai.Error, got %T: %v", err, err)
		assert.Equal(t, 400, e.StatusCode)
		assert.Equal(t, "guard_aws_access_key", e.Code)
		assert.Equal(t, "invalid_request_error", e.Type)

		stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:    "llama-3.1-8b",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Who do I write to?")},
		}, option.WithHeader(headerEmailStream, "1"))
		defer stream.Close()
		var acc openai.ChatCompletionAccumulator
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		require.NoError(t, stream.Err())
		require.Len(t, acc.Choices, 1)
		assert.Equal(t, strings.Replace(streamedAnswer, "jane.doe@example.com", "[EMAIL]", 1), acc.Choices[0].Message.Content)
	})

	t.Run("a JSON answer reaches the client masked, with a matching content-length", func(t *testing.T) {
		status, b := s.post(t, "g", "/v1/chat/completions", chat("Who do I mail?", ""), map[string]string{headerEmailStream: "json"})
		require.Equal(t, 200, status, string(b))
		var got struct {
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
			Usage struct {
				TotalTokens int `json:"total_tokens"`
			} `json:"usage"`
		}
		require.NoError(t, json.Unmarshal(b, &got), string(b))
		require.Len(t, got.Choices, 1)
		assert.Equal(t, `Mail "[EMAIL]" today.`, got.Choices[0].Message.Content)
		assert.Equal(t, 28, got.Usage.TotalTokens)
	})

	t.Run("a blocking rule ends a stream with an error event the SDK raises", func(t *testing.T) {
		c := openai.NewClient(option.WithBaseURL(s.URL("/v1")), option.WithAPIKey(s.Keys["g"]),
			option.WithMaxRetries(0), option.WithRequestTimeout(30*time.Second))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:    "llama-3.1-8b",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is my number?")},
		}, option.WithHeader(headerEmailStream, "ssn"))
		defer stream.Close()
		var text strings.Builder
		for stream.Next() {
			for _, ch := range stream.Current().Choices {
				text.WriteString(ch.Delta.Content)
			}
		}
		err := stream.Err()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "guard_us_ssn")
		assert.Equal(t, "Your number is ", text.String(), "text before the match went out; the match never did")
	})

	t.Run("an Anthropic Messages stream is masked too", func(t *testing.T) {
		status, body := s.post(t, "g", "/v1/messages",
			`{"model":"llama-3.1-8b","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Who do I write to?"}]}`,
			map[string]string{headerEmailStream: "anthropic"})
		require.Equal(t, 200, status, string(body))
		var text strings.Builder
		var last string
		for _, block := range strings.Split(strings.TrimSpace(string(body)), "\n\n") {
			name, data, ok := strings.Cut(block, "\ndata: ")
			require.True(t, ok, "event %q", block)
			require.True(t, json.Valid([]byte(data)), "event is not valid JSON: %q", data)
			last = strings.TrimPrefix(name, "event: ")
			var ev struct {
				Type  string                `json:"type"`
				Delta struct{ Text string } `json:"delta"`
			}
			require.NoError(t, json.Unmarshal([]byte(data), &ev))
			if ev.Type == "content_block_delta" {
				text.WriteString(ev.Delta.Text)
			}
		}
		assert.Equal(t, strings.Replace(streamedAnswer, "jane.doe@example.com", "[EMAIL]", 1), text.String())
		assert.Equal(t, "message_stop", last)
	})

	s.Envoy.RequireNoCrash(t)
}
