package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/mockllm"
)

// sdk returns an OpenAI client for the gateway with key; retries are off so
// a 429 surfaces at once instead of after the SDK's backoff.
func (s *stack) sdk(key string) openai.Client {
	return openai.NewClient(
		option.WithBaseURL(s.url()),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
		option.WithRequestTimeout(30*time.Second),
	)
}

// apiError unwraps the SDK's typed error.
func apiError(t *testing.T, err error) *openai.Error {
	t.Helper()
	require.Error(t, err)
	var e *openai.Error
	require.True(t, errors.As(err, &e), "want *openai.Error, got %T: %v", err, err)
	return e
}

// TestGatewayWithOpenAISDK runs the product's behaviour through both
// shipped compositions: the filters as separate Envoy filters sharing one
// VM, and the one fused filter of the suite module.
func TestGatewayWithOpenAISDK(t *testing.T) {
	for _, c := range compositions {
		t.Run(c.name, func(t *testing.T) { testGatewayWithOpenAISDK(t, c.fused) })
	}
}

func testGatewayWithOpenAISDK(t *testing.T, fused bool) {
	s := startStack(t, fused)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := s.sdk(s.keys["sdk"])
	hello := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello through the gateway")}

	var jsonContent string
	t.Run("chat JSON", func(t *testing.T) {
		var resp *http.Response
		got, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "gemma-3-1b-it", Messages: hello, MaxTokens: openai.Int(64),
		}, option.WithResponseInto(&resp))
		require.NoError(t, err)
		require.Len(t, got.Choices, 1)
		jsonContent = got.Choices[0].Message.Content
		assert.NotEmpty(t, jsonContent)
		assert.Equal(t, "gemma-3-1b-it", got.Model, "modelroute maps the backend name back")
		assert.Equal(t, int64(mockllm.Tokens(jsonContent)), got.Usage.CompletionTokens)
		assert.Equal(t, got.Usage.PromptTokens+got.Usage.CompletionTokens, got.Usage.TotalTokens)
		// Rate-limit headers of quota (requests) and tokencount (tokens).
		assert.NotEmpty(t, resp.Header.Get("x-ratelimit-remaining-requests"))
		assert.Equal(t, "100000000", resp.Header.Get("x-ratelimit-limit-tokens"))
		assert.NotEmpty(t, resp.Header.Get("x-ratelimit-remaining-tokens"))
	})

	t.Run("chat streaming arrives incrementally", func(t *testing.T) {
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		defer scancel()
		stream := c.Chat.Completions.NewStreaming(sctx, openai.ChatCompletionNewParams{
			Model: "gemma-3-1b-it", Messages: hello, MaxTokens: openai.Int(64),
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		}, option.WithHeader(gateHeader, "1"))
		defer stream.Close()
		var text strings.Builder
		// The upstream sends the role chunk and one token, then holds the
		// rest until the gate opens: the first delta must get through now.
		for text.Len() == 0 {
			require.True(t, stream.Next(), "stream ended before the first delta: %v", stream.Err())
			ch := stream.Current()
			if len(ch.Choices) > 0 {
				text.WriteString(ch.Choices[0].Delta.Content)
			}
		}
		select {
		case <-s.up.gate.held:
		default:
			t.Fatal("the first delta arrived but the upstream never reached the gate")
		}
		s.up.gate.release()
		var usage openai.CompletionUsage
		deltas := 1
		for stream.Next() {
			ch := stream.Current()
			if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
				text.WriteString(ch.Choices[0].Delta.Content)
				deltas++
			}
			if ch.Usage.TotalTokens > 0 {
				usage = ch.Usage
			}
		}
		require.NoError(t, stream.Err())
		assert.Equal(t, jsonContent, text.String(), "same deterministic reply as the JSON request")
		assert.Equal(t, int64(deltas), usage.CompletionTokens, "the usage chunk the client asked for arrives")
	})

	t.Run("chat streaming without usage", func(t *testing.T) {
		// tokencount injects include_usage upstream and removes the extra
		// chunk again, so the client sees the stream it asked for.
		stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model: "llama-3.1-8b", Messages: hello, MaxTokens: openai.Int(5),
		})
		defer stream.Close()
		var text strings.Builder
		for stream.Next() {
			ch := stream.Current()
			assert.Zero(t, ch.Usage.TotalTokens, "no usage chunk without include_usage")
			if len(ch.Choices) > 0 {
				text.WriteString(ch.Choices[0].Delta.Content)
			}
		}
		require.NoError(t, stream.Err())
		assert.Equal(t, 5, mockllm.Tokens(text.String()))
	})

	t.Run("completions", func(t *testing.T) {
		got, err := c.Completions.New(ctx, openai.CompletionNewParams{
			Model:     "llama-3.1-8b",
			Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Say this is a test")},
			MaxTokens: openai.Int(8),
		})
		require.NoError(t, err)
		require.Len(t, got.Choices, 1)
		assert.NotEmpty(t, got.Choices[0].Text)
		assert.Equal(t, int64(5), got.Usage.PromptTokens)
		assert.Equal(t, int64(mockllm.Tokens(got.Choices[0].Text)), got.Usage.CompletionTokens)
	})

	t.Run("embeddings", func(t *testing.T) {
		got, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
			Model: "text-embedding-3-small",
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello world", "bye"}},
		})
		require.NoError(t, err)
		require.Len(t, got.Data, 2)
		assert.Len(t, got.Data[0].Embedding, mockllm.DefaultEmbeddingDimensions)
		assert.Equal(t, int64(3), got.Usage.PromptTokens)
	})

	t.Run("models", func(t *testing.T) {
		page, err := c.Models.List(ctx)
		require.NoError(t, err)
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
		}
		assert.Contains(t, ids, "gemma-3-1b-it")
	})

	errorCases := []struct {
		name   string
		key    string
		call   func(c openai.Client) error
		status int
		typ    string
		code   string
		inMsg  string
	}{
		{"401 unknown key", "tg_notAKeyAtAll0000000000000000000000000", func(c openai.Client) error {
			_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gemma-3-1b-it", Messages: hello})
			return err
		}, 401, "authentication_error", "invalid_api_key", "API key"},
		{"403 model outside the product", s.keys["gemma"], func(c openai.Client) error {
			_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "llama-3.1-8b", Messages: hello})
			return err
		}, 403, "permission_error", "model_not_allowed", "llama-3.1-8b"},
		{"403 operation outside the product", s.keys["gemma"], func(c openai.Client) error {
			_, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "text-embedding-3-small",
				Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}})
			return err
		}, 403, "permission_error", "operation_not_allowed", "/v1/embeddings"},
		{"404 unknown model", s.keys["sdk"], func(c openai.Client) error {
			_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-9", Messages: hello})
			return err
		}, 404, "not_found_error", "model_not_found", "gpt-9"},
		{"429 token quota", s.keys["few"], func(c openai.Client) error {
			_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gemma-3-1b-it", Messages: hello,
				MaxTokens: openai.Int(1000)})
			return err
		}, 429, "rate_limit_error", "", "token"},
	}
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			e := apiError(t, tt.call(s.sdk(tt.key)))
			assert.Equal(t, tt.status, e.StatusCode)
			assert.Equal(t, tt.typ, e.Type)
			if tt.code != "" {
				assert.Equal(t, tt.code, e.Code)
			}
			assert.Contains(t, e.Message, tt.inMsg, "the gateway's message reaches the SDK")
		})
	}

	t.Run("429 request quota", func(t *testing.T) {
		two := s.sdk(s.keys["two"])
		for i := 0; i < 2; i++ {
			_, err := two.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gemma-3-1b-it", Messages: hello, MaxTokens: openai.Int(4)})
			require.NoError(t, err, "request %d of 2 is within the quota", i+1)
		}
		_, err := two.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gemma-3-1b-it", Messages: hello, MaxTokens: openai.Int(4)})
		e := apiError(t, err)
		assert.Equal(t, 429, e.StatusCode)
		assert.Equal(t, "rate_limit_exceeded", e.Code)
		assert.Contains(t, e.Message, "Request quota exceeded")
		require.NotNil(t, e.Response)
		assert.NotEmpty(t, e.Response.Header.Get("retry-after"))
		assert.Equal(t, "0", e.Response.Header.Get("x-ratelimit-remaining-requests"))
	})

	t.Run("metrics with labels", func(t *testing.T) {
		const wait = 20 * time.Second
		positive := func(v float64) bool { return v > 0 }
		s.envoy.WaitPromMetric(t, "tollgate_tokencount_prompt_tokens_total", map[string]string{"model": "llama-3_1-8b", "app": "sdk"}, wait, positive)
		// modelroute rewrote the body to /gcs/google/gemma-3-1b-it; tokencount
		// still labels by the public name it passed on in x-tollgate-public-model.
		s.envoy.WaitPromMetric(t, "tollgate_tokencount_completion_tokens_total", map[string]string{"model": "gemma-3-1b-it", "app": "sdk"}, wait, positive)
		s.envoy.WaitPromMetric(t, "tollgate_tokencount_reservations_refused_total", map[string]string{"app": "few"}, wait, positive)
		s.envoy.WaitPromMetric(t, "tollgate_apikey_requests_total", map[string]string{"outcome": "allowed"}, wait, positive)
		s.envoy.WaitPromMetric(t, "tollgate_apikey_requests_total", map[string]string{"outcome": "invalid"}, wait, positive)
		s.envoy.WaitPromMetric(t, "tollgate_quota_requests_total", map[string]string{"mode": "async", "outcome": "denied"}, wait, positive)
		s.envoy.WaitPromMetric(t, "tollgate_modelroute_rejections_total", map[string]string{"reason": "model_not_found"}, wait, positive)
		s.envoy.WaitPromMetric(t, "tollgate_modelroute_requests_total", map[string]string{"model": "gemma-3-1b-it", "target": "pool-a"}, wait, positive)
		samples, err := s.envoy.PromMetrics()
		require.NoError(t, err)
		for _, smp := range samples {
			if strings.HasPrefix(smp.Name, "tollgate_tokencount_") {
				assert.NotContains(t, smp.Labels["model"], "gcs", "%s is labelled with the backend name", smp.Name)
			}
		}
	})

	t.Run("alias is metered under the public name", func(t *testing.T) {
		got, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "gemma", Messages: hello, MaxTokens: openai.Int(8),
		}, option.WithHeader("X-Tollgate-Public-Model", "llama-3.1-8b"))
		require.NoError(t, err)
		assert.Equal(t, "gemma-3-1b-it", got.Model)
		var found *accessEntry
		envoytest.Eventually(t, 10*time.Second, func() bool {
			for _, e := range s.accessLog(t) {
				if e.App == "sdk" && e.Path == "/v1/chat/completions" && e.Status == 200 && e.PromptTokens == strconv.FormatInt(got.Usage.PromptTokens, 10) &&
					e.CompletionTokens == strconv.FormatInt(got.Usage.CompletionTokens, 10) && e.Target == "pool-a" {
					found = &e
				}
			}
			return found != nil
		}, "no access log line for the aliased request")
		assert.Equal(t, "gemma-3-1b-it", found.Model, "the access log names the public model, not the backend's or the client's header")
		for _, e := range s.accessLog(t) {
			assert.NotContains(t, e.Model, "gcs", "no access log line names the backend model")
		}
	})

	t.Run("access log carries app, model and tokens", func(t *testing.T) {
		var found *accessEntry
		envoytest.Eventually(t, 10*time.Second, func() bool {
			for _, e := range s.accessLog(t) {
				if e.App == "sdk" && e.Model == "llama-3.1-8b" && e.Path == "/v1/completions" && e.Status == 200 {
					found = &e
					return true
				}
			}
			return false
		}, "no access log line for the completions request")
		assert.Equal(t, "5", found.PromptTokens)
		assert.NotEmpty(t, found.CompletionTokens)
		assert.NotEmpty(t, found.TotalTokens)
	})

	t.Run("grafana dashboard queries existing metrics", func(t *testing.T) {
		root, err := envoytest.RepoRoot()
		require.NoError(t, err)
		raw, err := os.ReadFile(filepath.Join(root, "examples", "grafana", "tollgate-dashboard.json"))
		require.NoError(t, err)
		var dash struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		require.NoError(t, json.Unmarshal(raw, &dash))
		samples, err := s.envoy.PromMetrics()
		require.NoError(t, err)
		have := map[string]bool{
			// Exported once a response reports them (the mock never does).
			meter.MetricCachedTokens:    true,
			meter.MetricReasoningTokens: true,
		}
		for _, smp := range samples {
			have[smp.Name] = true
			for l := range smp.Labels {
				have[l] = true
			}
		}
		queried := 0
		for _, p := range dash.Panels {
			for _, tg := range p.Targets {
				for _, name := range metricName.FindAllString(tg.Expr, -1) {
					queried++
					assert.True(t, have[name], "panel %q queries %s, which Envoy does not export (as a metric or label)", p.Title, name)
				}
			}
		}
		assert.Greater(t, queried, 15)
	})

	s.envoy.RequireNoCrash(t)
}

// metricName finds the metric names in a PromQL expression.
var metricName = regexp.MustCompile(`\b(?:tollgate|envoy)_[a-z0-9_]+`)
