package hostile

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/mockllm"
)

// headerMode picks a hostile answer of the stub upstream; any other request
// is served by mockllm. It is not an x-tollgate- header, so the gateway
// forwards it.
const headerMode = "X-Hostile-Upstream"

// Hostile upstream answers, by headerMode value.
const (
	modeUsageAbsurd   = "usage-absurd"   // JSON usage of 10^18 tokens
	modeUsageNegative = "usage-negative" // JSON usage below zero
	modeUsageMissing  = "usage-missing"  // JSON without usage
	modeUsageGarbage  = "usage-garbage"  // usage fields that are not integers
	modeStreamAbsurd  = "stream-absurd"  // SSE whose usage chunk reports 10^18
	modeStreamReset   = "stream-reset"   // SSE cut (connection reset) mid-stream
	modeStreamInvalid = "stream-invalid" // SSE with broken events and no [DONE]
	modeNotJSON       = "not-json"       // 200 application/json whose body is not JSON
)

// upstream is the model server behind the chain: mockllm, plus the hostile
// answers above when a request carries headerMode. stacktest records what
// it receives.
func upstream() http.Handler {
	mock := mockllm.New(mockllm.Options{Models: append(mockllm.DefaultModels(), "*")})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mode := r.Header.Get(headerMode); mode != "" {
			serveHostile(w, mode)
			return
		}
		mock.ServeHTTP(w, r)
	})
}

// completion is a chat completion JSON with the given raw usage member ("" omits it).
func completion(usage string) string {
	s := `{"id":"chatcmpl-hostile","object":"chat.completion","created":1,"model":"gemma-3-1b-it",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]`
	if usage != "" {
		s += `,"usage":` + usage
	}
	return s + "}"
}

func chunk(content string) string {
	return `data: {"id":"chatcmpl-hostile","object":"chat.completion.chunk","created":1,"model":"gemma-3-1b-it",` +
		`"choices":[{"index":0,"delta":{"content":` + strconv.Quote(content) + `},"finish_reason":null}]}` + "\n\n"
}

func serveHostile(w http.ResponseWriter, mode string) {
	const absurd = `{"prompt_tokens":1000000000000000000,"completion_tokens":1000000000000000000,"total_tokens":2000000000000000000}`
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	switch mode {
	case modeUsageAbsurd, modeUsageNegative, modeUsageMissing, modeUsageGarbage, modeNotJSON:
		body := map[string]string{
			modeUsageAbsurd:   completion(absurd),
			modeUsageNegative: completion(`{"prompt_tokens":-5000,"completion_tokens":-9223372036854775808,"total_tokens":-5000}`),
			modeUsageMissing:  completion(""),
			modeUsageGarbage:  completion(`{"prompt_tokens":"12","completion_tokens":1e400,"total_tokens":12.5}`),
			modeNotJSON:       `<html>upstream error</html>`,
		}[mode]
		w.Header().Set("content-type", "application/json")
		_, _ = io.WriteString(w, body)
	case modeStreamAbsurd, modeStreamReset, modeStreamInvalid:
		w.Header().Set("content-type", "text/event-stream")
		_, _ = io.WriteString(w, chunk("Hel"))
		flush()
		switch mode {
		case modeStreamAbsurd:
			_, _ = io.WriteString(w, chunk("lo"))
			_, _ = io.WriteString(w, `data: {"id":"chatcmpl-hostile","object":"chat.completion.chunk","created":1,"model":"gemma-3-1b-it","choices":[],"usage":`+absurd+"}\n\n")
			_, _ = io.WriteString(w, "data: [DONE]\n\n")
		case modeStreamReset:
			_, _ = io.WriteString(w, chunk("lo"))
			flush()
			panic(http.ErrAbortHandler) // drops the connection mid-stream
		case modeStreamInvalid:
			_, _ = io.WriteString(w, "data: {not json\n\n")
			_, _ = io.WriteString(w, "event: \x00\x01\n: comment\ndata: "+strings.Repeat("x", 256<<10)+"\n\n")
			_, _ = io.WriteString(w, `data: {"usage":{"prompt_tokens":[1],"completion_tokens":{"a":1}}}`+"\n\n")
			_, _ = fmt.Fprintf(w, "data: {\"choices\":[%s]}\n", strings.Repeat("[", 4096))
			// no [DONE], no final blank line
		}
		flush()
	default:
		http.Error(w, "unknown hostile mode "+mode, http.StatusBadRequest)
	}
}
