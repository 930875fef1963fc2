// Package guard_test runs the guard filter end to end in real Envoy: the
// shipped chain of examples/envoy/gateway.yaml (apikey → quota → modelroute
// → tokencount, with the keystore) with guard inserted after modelroute,
// in front of the mock model server, and a moderation service speaking
// OpenAI's /v1/moderations (mockllm's, which can be switched off).
package guard_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/e2e/stacktest"
	"github.com/tollgate/tollgate/filters/guard/policy"
	"github.com/tollgate/tollgate/mockllm"
)

func TestMain(m *testing.M) { os.Exit(keystoretest.Main(m)) }

// Test hooks of the upstream.
const (
	// headerEmailStream makes the upstream stream a fixed answer that holds
	// an e-mail address, one byte per event, flushing after each ("json":
	// answer it as JSON; "ssn": stream ssnAnswer instead).
	headerEmailStream = "X-Test-Email-Stream"
	// streamedAnswer is that answer.
	streamedAnswer = "Sure, write to jane.doe@example.com and I will reply."
	// streamedUsage is the usage chunk the upstream sends after it.
	streamedPrompt, streamedCompletion = 11, 17
)

// upstream is the model server behind the chain: mockllm, with the fixed
// answers of the test hooks.
func upstream() http.Handler {
	mock := mockllm.New(mockllm.Options{Models: append(mockllm.DefaultModels(), "*")})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get(headerEmailStream) {
		case "":
			mock.ServeHTTP(w, r)
		case "json":
			answerJSON(w)
		case "ssn":
			streamText(w, ssnAnswer)
		case "anthropic":
			streamAnthropic(w, streamedAnswer)
		default:
			streamText(w, streamedAnswer)
		}
	})
}

// streamAnthropic writes text as an Anthropic Messages stream, one byte
// per content_block_delta event.
func streamAnthropic(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	ev := func(name, data string) {
		io.WriteString(w, "event: "+name+"\ndata: "+data+"\n\n")
		_ = rc.Flush()
	}
	ev("message_start", fmt.Sprintf(`{"type":"message_start","message":{"id":"msg_guard","type":"message","role":"assistant","model":"llama-3.1-8b","content":[],"stop_reason":null,"usage":{"input_tokens":%d,"output_tokens":1}}}`, streamedPrompt))
	ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
	for i := 0; i < len(text); i++ {
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":`+strconv.Quote(text[i:i+1])+`}}`)
	}
	ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
	ev("message_delta", fmt.Sprintf(`{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":%d}}`, streamedCompletion))
	ev("message_stop", `{"type":"message_stop"}`)
}

// ssnAnswer is a streamed answer that a blocking response rule stops.
const ssnAnswer = "Your number is 536-22-1234, keep it safe."

// answerJSON writes a chat completion whose content holds an e-mail.
func answerJSON(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"id":"chatcmpl-guard","object":"chat.completion","created":1767225600,"model":"llama-3.1-8b",`+
		`"choices":[{"index":0,"message":{"role":"assistant","content":"Mail \"jane.doe@example.com\" today."},"finish_reason":"stop"}],`+
		`"usage":{"prompt_tokens":11,"completion_tokens":17,"total_tokens":28}}`)
}

// streamText writes text one byte per SSE event, then a finish chunk, a
// usage chunk and [DONE].
func streamText(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	ev := func(data string) {
		io.WriteString(w, "data: "+data+"\n\n")
		_ = rc.Flush()
	}
	const head = `{"id":"chatcmpl-guard","object":"chat.completion.chunk","created":1767225600,"model":"llama-3.1-8b","choices":`
	ev(head + `[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`)
	for i := 0; i < len(text); i++ {
		ev(head + `[{"index":0,"delta":{"content":` + strconv.Quote(text[i:i+1]) + `},"finish_reason":null}]}`)
	}
	ev(head + `[{"index":0,"delta":{},"finish_reason":"stop"}]}`)
	ev(head + fmt.Sprintf(`[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`,
		streamedPrompt, streamedCompletion, streamedPrompt+streamedCompletion))
	ev("[DONE]")
}

// moderator is the moderation service: mockllm's /v1/moderations, or 503
// while down; it counts the checks it answered.
type moderator struct {
	srv  *httptest.Server
	down atomic.Bool
	hits atomic.Int64
}

func startModerator(t testing.TB) *moderator {
	t.Helper()
	m := &moderator{}
	mock := mockllm.New(mockllm.Options{})
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.down.Load() {
			http.Error(w, "moderation is down", http.StatusServiceUnavailable)
			return
		}
		m.hits.Add(1)
		mock.ServeHTTP(w, r)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

// stack is the running gateway and the moderation service.
type stack struct {
	*stacktest.Stack
	mod *moderator
}

// startStack starts the shipped chain with guard after modelroute, a
// moderation cluster, the guard's stats tags and its access-log field.
func startStack(t testing.TB) *stack {
	t.Helper()
	mod := startModerator(t)
	guardCfg, err := os.ReadFile(filepath.Join("testdata", "guard.json"))
	require.NoError(t, err)
	st := stacktest.Start(t, stacktest.Options{
		Upstream: upstream(),
		Products: filepath.Join("testdata", "products.yaml"),
		Apps:     map[string][]string{"g": {"guarded"}, "go": {"guarded-open"}},
		Modules:  []string{"guard"},
		Edit: func(t testing.TB, doc map[string]any) {
			stacktest.InsertFilter(t, doc, "modelroute",
				stacktest.WasmFilter(t, doc, "guard", "guard", string(guardCfg), true))
			stacktest.AddCluster(t, doc, "moderation", mod.srv.Listener.Addr().String())
			stacktest.AddStatsTags(t, doc, policy.StatsTags())
			stacktest.AddAccessLogField(t, doc, "guard", "%FILTER_STATE(wasm.tollgate.guard.decisions:PLAIN)%")
		},
	})
	return &stack{Stack: st, mod: mod}
}
