package mockllm

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tcusage "github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/internal/jsontest"
)

const modeChat = `{"model":"gemma-3-1b-it","max_tokens":40,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Tell me about the sea."}]}`

// The worst mode reports the most the request permits: the tokencount
// filter's prompt bound and the whole output cap, generated in full.
func TestUsageWorst(t *testing.T) {
	req, err := tcusage.ParseRequest(tcusage.APIChatCompletions, []byte(modeChat))
	require.NoError(t, err)
	bound := tcusage.Bounds{}.Prompt(req, tcusage.Estimator{})
	for _, viaHeader := range []bool{false, true} {
		opts, hdr := Options{Usage: UsageWorst}, map[string]string(nil)
		if viaHeader {
			opts, hdr = Options{}, map[string]string{HeaderUsage: UsageWorst}
		}
		srv := newTestServer(t, opts)
		status, _, body := post(t, srv, "/v1/chat/completions", modeChat, hdr)
		require.Equal(t, 200, status, "%s", body)
		assert.Equal(t, bound, jsontest.Get(body, "usage.prompt_tokens").Int())
		assert.Equal(t, int64(40), jsontest.Get(body, "usage.completion_tokens").Int())
		assert.Equal(t, 40, Tokens(jsontest.Get(body, "choices.0.message.content").Str()), "the whole cap is generated")
		assert.Equal(t, "length", jsontest.Get(body, "choices.0.finish_reason").Str())

		stream := strings.TrimSuffix(modeChat, "}") + `,"stream":true,"stream_options":{"include_usage":true},"n":2}`
		status, _, body = post(t, srv, "/v1/chat/completions", stream, hdr)
		require.Equal(t, 200, status)
		evs := events(t, bytes.NewReader(body))
		last := evs[len(evs)-2]
		assert.Equal(t, bound, jsontest.Get([]byte(last), "usage.prompt_tokens").Int())
		assert.Equal(t, int64(80), jsontest.Get([]byte(last), "usage.completion_tokens").Int(), "two choices × 40")
	}
	srv := newTestServer(t, Options{Usage: UsageWorst})
	status, _, body := post(t, srv, "/v1/completions", `{"model":"gemma-3-1b-it","prompt":["a b","c"],"max_tokens":7}`, nil)
	require.Equal(t, 200, status, "%s", body)
	assert.Equal(t, int64(14), jsontest.Get(body, "usage.completion_tokens").Int())
	assert.Equal(t, int64(4+2+2*4), jsontest.Get(body, "usage.prompt_tokens").Int(), "4 bytes + 2 texts + 2 prompts × 4")
}

func TestUsageHostileModes(t *testing.T) {
	srv := newTestServer(t, Options{})
	stream := strings.TrimSuffix(modeChat, "}") + `,"stream":true,"stream_options":{"include_usage":true}}`
	tests := []struct {
		mode  string
		check func(t *testing.T, usage jsontest.Field, raw string)
	}{
		{UsageAbsurd, func(t *testing.T, u jsontest.Field, _ string) {
			assert.Equal(t, int64(1e18), u.Int())
		}},
		{UsageNegative, func(t *testing.T, u jsontest.Field, _ string) { assert.Negative(t, u.Int()) }},
		{UsageFraction, func(t *testing.T, _ jsontest.Field, raw string) {
			assert.Contains(t, raw, `.5`)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			status, _, body := post(t, srv, "/v1/chat/completions", modeChat, map[string]string{HeaderUsage: tc.mode})
			require.Equal(t, 200, status, "%s", body)
			tc.check(t, jsontest.Get(body, "usage.prompt_tokens"), jsontest.Get(body, "usage").Raw())
			status, _, body = post(t, srv, "/v1/chat/completions", stream, map[string]string{HeaderUsage: tc.mode})
			require.Equal(t, 200, status)
			evs := events(t, bytes.NewReader(body))
			last := []byte(evs[len(evs)-2])
			tc.check(t, jsontest.Get(last, "usage.prompt_tokens"), jsontest.Get(last, "usage").Raw())
		})
	}
	t.Run(UsageMissing, func(t *testing.T) {
		status, _, body := post(t, srv, "/v1/chat/completions", modeChat, map[string]string{HeaderUsage: UsageMissing})
		require.Equal(t, 200, status)
		assert.Equal(t, "null", jsontest.Get(body, "usage").Raw())
		status, _, body = post(t, srv, "/v1/completions", `{"model":"gemma-3-1b-it","prompt":"x","stream":true,"stream_options":{"include_usage":true}}`, map[string]string{HeaderUsage: UsageMissing})
		require.Equal(t, 200, status)
		for _, ev := range events(t, bytes.NewReader(body)) {
			assert.NotContains(t, ev, `"prompt_tokens"`, "no usage chunk")
		}
	})
	status, _, body := post(t, srv, "/v1/chat/completions", modeChat, map[string]string{HeaderUsage: "huge"})
	assert.Equal(t, 400, status)
	assert.Contains(t, jsontest.Get(body, "error.message").Str(), HeaderUsage)
	_, err := ParseUsageMode("huge")
	assert.Error(t, err)
}
