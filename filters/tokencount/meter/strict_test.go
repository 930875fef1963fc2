package meter

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tollgate/tollgate/internal/jsontest"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/shared/table"
)

func TestHardeningConfigErrors(t *testing.T) {
	for _, cfg := range []string{
		`{"strict": {"clamp_max_tokens": true}}`,
		`{"strict": {"enabled": true, "unbounded_inputs": "guess"}}`,
		`{"strict": {"enabled": true, "min_output_tokens": -1}}`,
		`{"prompt_bound": {"per_message_tokens": -1}}`,
		`{"prompt_bound": {"tool_bytes_factor": 17}}`,
		`{"context_tokens": {"default": -5}}`,
		`{"context_tokens": {"models": {"m": 0}}}`,
		`{"context_tokens": {"models": {"*": 10}}}`,
		`{"unmetered_paths": ["v1/moderations"]}`,
		`{"unmetered_paths": ["/v1/a%2fb"]}`,
		`{"settle_retry": {"max_entries": -1}}`,
		`{"settle_retry": {"interval": "60.001s"}}`,
		`{"max_json_depth": 5000}`,
	} {
		_, err := Parse([]byte(cfg))
		assert.Error(t, err, cfg)
	}
	p := mustParse(t, `{}`)
	assert.False(t, p.Strict)
	assert.Equal(t, usage.Bounds{}.WithDefaults(), p.Bounds)
	assert.Equal(t, int64(DefaultContextTokens), p.Context.For("anything"))
	assert.Equal(t, DefaultSettleQueueEntries, p.SettleQueueEntries)
	assert.Equal(t, time.Second, p.SettleRetryInterval)
}

func TestContextLimits(t *testing.T) {
	p := mustParse(t, `{"context_tokens": {"default": 1000, "models": {"gpt-4o": 128000, "gpt-4*": 8192, "gpt-4o-*": 64000}}}`)
	for model, want := range map[string]int64{"gpt-4o": 128000, "gpt-4o-mini": 64000, "gpt-4-turbo": 8192, "llama": 1000} {
		assert.Equal(t, want, p.Context.For(model), model)
	}
}

const strictChat = `{"model":"m","messages":[{"role":"user","content":"Hello there"}]`

// Strict mode reserves the prompt bound, never the estimate, and forwards
// the output cap it reserved.
func TestStrictPlan(t *testing.T) {
	p := mustParse(t, `{"strict": {"enabled": true}, "default_max_output_tokens": 50, "max_output_tokens_cap": 80}`)
	// "user" (4) + "Hello there" (11) = 15 bytes, 2 texts, 1 message.
	const bound = 15 + 2*1 + 128 + 8
	tests := []struct {
		name      string
		body      string
		wantOut   int64
		wantBody  string // the cap members the upstream sees
		rewritten bool
	}{
		{"no cap: the default is forwarded", strictChat + `}`, 50, `{"max_completion_tokens":50}`, true},
		{"cap above the limit is lowered", strictChat + `,"max_tokens":500}`, 80, `{"max_tokens":80}`, true},
		{"both caps set: both lowered", strictChat + `,"max_tokens":500,"max_completion_tokens":400}`, 80, `{"max_tokens":80,"max_completion_tokens":80}`, true},
		{"client cap within the limit: untouched", strictChat + `,"max_tokens":30}`, 30, `{"max_tokens":30}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pl, aerr := p.PlanRequest(usage.APIChatCompletions, []byte(tc.body), quota(100000, usage.MetricTotal))
			require.Nil(t, aerr)
			assert.True(t, pl.Strict)
			assert.Equal(t, int64(bound), pl.PromptEstimate, "the bound is reserved")
			assert.Equal(t, int64(bound), pl.PromptBound)
			assert.Equal(t, tc.wantOut, pl.OutputReserve)
			assert.Equal(t, tc.wantOut, pl.CompletionBound)
			assert.True(t, pl.OutputEnforced)
			assert.Equal(t, bound+tc.wantOut, pl.Amount)
			sent := []byte(tc.body)
			if tc.rewritten {
				require.NotNil(t, pl.Body)
				sent = pl.Body
			} else {
				assert.Nil(t, pl.Body)
			}
			got := map[string]string{}
			for _, k := range []string{"max_tokens", "max_completion_tokens"} {
				if v := jsontest.Get(sent, k); v.Exists() {
					got[k] = v.Raw()
				}
			}
			want := map[string]string{}
			for k, v := range jsontest.Get([]byte(tc.wantBody), "").Members() {
				want[k] = string(v)
			}
			assert.Equal(t, want, got)
		})
	}
}

// Without strict mode the estimate is reserved, but the bounds are still
// computed (they judge the upstream's usage).
func TestEstimatePlanStillBounded(t *testing.T) {
	p := mustParse(t, `{"context_tokens": {"models": {"m": 1000}}}`)
	pl, aerr := p.PlanRequest(usage.APIChatCompletions, []byte(strictChat+`,"n":2}`), quota(100000, usage.MetricTotal))
	require.Nil(t, aerr)
	assert.False(t, pl.Strict)
	assert.Less(t, pl.PromptEstimate, pl.PromptBound)
	assert.False(t, pl.OutputEnforced, "no client cap: the upstream may generate up to its context")
	assert.Equal(t, int64(2000), pl.CompletionBound, "context × choices")
	assert.Nil(t, pl.Body)
	pl, aerr = p.PlanRequest(usage.APIChatCompletions, []byte(strictChat+`,"max_tokens":7}`), nil)
	require.Nil(t, aerr)
	assert.True(t, pl.OutputEnforced)
	assert.Equal(t, int64(7), pl.CompletionBound)
}

func TestStrictUnboundedInputs(t *testing.T) {
	image := `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`
	tools := `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}]}`
	refuse := mustParse(t, `{"strict": {"enabled": true, "unbounded_inputs": "refuse"}}`)
	for _, body := range []string{image, tools} {
		_, aerr := refuse.PlanRequest(usage.APIChatCompletions, []byte(body), quota(100000, usage.MetricTotal))
		require.NotNil(t, aerr, body)
		assert.Equal(t, 400, aerr.Status)
		assert.Equal(t, CodeUnboundedInput, aerr.Code)
	}
	tmpl := `{"model":"m","max_tokens":5,"chat_template":"{{ messages }}","messages":[{"role":"user","content":"x"}]}`
	reserve := mustParse(t, `{"strict": {"enabled": true}, "prompt_bound": {"image_tokens": 5000}}`)
	for _, p := range []*Policy{refuse, reserve} {
		_, aerr := p.PlanRequest(usage.APIChatCompletions, []byte(tmpl), quota(100000, usage.MetricTotal))
		require.NotNil(t, aerr, "a client chat template is always refused in strict mode")
		assert.Equal(t, CodeUnboundedInput, aerr.Code)
		assert.Contains(t, aerr.Message, "chat_template")
	}
	_, aerr := mustParse(t, `{}`).PlanRequest(usage.APIChatCompletions, []byte(tmpl), nil)
	assert.Nil(t, aerr, "outside strict mode it is metered as before")
	pl, aerr := reserve.PlanRequest(usage.APIChatCompletions, []byte(image), quota(100000, usage.MetricTotal))
	require.Nil(t, aerr)
	assert.Greater(t, pl.PromptEstimate, int64(5000), "the image reserves its configured maximum")
}

func TestCheckUsage(t *testing.T) {
	pl := &Plan{PromptBound: 100, CompletionBound: 50}
	bound := usage.Usage{PromptTokens: 100, CompletionTokens: 50, TotalTokens: 150}
	tests := []struct {
		name string
		u    usage.Usage
		want Violation
	}{
		{"within", usage.Usage{PromptTokens: 100, CompletionTokens: 50, TotalTokens: 150, CachedTokens: 20, ReasoningTokens: 10}, ""},
		{"zero", usage.Usage{}, ""},
		{"invalid", usage.Usage{PromptTokens: 3, Invalid: true}, ViolationInvalid},
		{"absurd prompt", usage.Usage{PromptTokens: 1e18, TotalTokens: 1e18}, ViolationPrompt},
		{"completion above max_tokens", usage.Usage{PromptTokens: 10, CompletionTokens: 51, TotalTokens: 61}, ViolationCompletion},
		{"total above both", usage.Usage{PromptTokens: 10, CompletionTokens: 10, TotalTokens: 151}, ViolationTotal},
		{"cached above prompt", usage.Usage{PromptTokens: 10, CachedTokens: 11, TotalTokens: 10}, ViolationDetails},
		{"reasoning above completion", usage.Usage{CompletionTokens: 5, ReasoningTokens: 6, TotalTokens: 5}, ViolationDetails},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, v := pl.Check(tc.u)
			assert.Equal(t, tc.want, v)
			if tc.want == "" {
				assert.Equal(t, tc.u, got)
			} else {
				assert.Equal(t, bound, got, "a violation charges the bound")
			}
		})
	}
}

// The response path applies Check: an upstream reporting 10^18 or a
// negative count is charged the bound, never its number.
func TestResponseDistrustsUpstream(t *testing.T) {
	p := mustParse(t, `{}`)
	body := []byte(strictChat + `,"max_tokens":20}`)
	for _, tc := range []struct {
		name, resp string
		src        Source
		v          Violation
	}{
		{"absurd", `{"usage":{"prompt_tokens":1000000000000000000,"completion_tokens":3,"total_tokens":1000000000000000003}}`, SourceBound, ViolationInvalid},
		{"negative", `{"usage":{"prompt_tokens":-40,"completion_tokens":3,"total_tokens":-37}}`, SourceBound, ViolationInvalid},
		{"completion above max_tokens", `{"usage":{"prompt_tokens":5,"completion_tokens":21,"total_tokens":26}}`, SourceBound, ViolationCompletion},
		{"honest", `{"usage":{"prompt_tokens":5,"completion_tokens":20,"total_tokens":25}}`, SourceUpstream, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl, aerr := p.PlanRequest(usage.APIChatCompletions, body, quota(100000, usage.MetricTotal))
			require.Nil(t, aerr)
			r := p.NewResponse(pl, 200, "application/json", "")
			r.Feed([]byte(tc.resp), true)
			u, src := r.Usage()
			assert.Equal(t, tc.src, src)
			assert.Equal(t, tc.v, r.Violation())
			if tc.v != "" {
				assert.Equal(t, pl.Bound(), u)
				assert.LessOrEqual(t, pl.Charge(u), pl.PromptBound+20)
			}
		})
	}
}

// Strict mode charges the reservation when the upstream reports nothing.
func TestStrictMissingUsageChargesReservation(t *testing.T) {
	p := mustParse(t, `{"strict": {"enabled": true}}`)
	pl, aerr := p.PlanRequest(usage.APIChatCompletions, []byte(strictChat+`,"max_tokens":20}`), quota(100000, usage.MetricTotal))
	require.Nil(t, aerr)
	r := p.NewResponse(pl, 200, "application/json", "")
	r.Feed([]byte(`{"choices":[{"message":{"content":"hi"}}]}`), true)
	u, src := r.Usage()
	assert.Equal(t, SourceReservation, src)
	assert.Equal(t, pl.Amount, pl.Charge(u))
}

func TestClampOutput(t *testing.T) {
	p := mustParse(t, `{"strict": {"enabled": true, "clamp_max_tokens": true, "min_output_tokens": 10}}`)
	body := []byte(strictChat + `,"max_tokens":1000,"n":2}`)
	pl, aerr := p.PlanRequest(usage.APIChatCompletions, body, quota(100000, usage.MetricTotal))
	require.Nil(t, aerr)
	prompt := pl.PromptEstimate
	require.Equal(t, prompt+2000, pl.Amount)
	require.NotNil(t, pl.Sent)

	per, ok := p.ClampOutput(pl, prompt+2*300+1)
	require.True(t, ok)
	assert.Equal(t, int64(300), per, "the largest cap whose charge fits")
	_, ok = p.ClampOutput(pl, prompt+2*10-1)
	assert.False(t, ok, "below min_output_tokens: refused")

	out, err := p.Clamp(pl, pl.Sent, per)
	require.NoError(t, err)
	assert.Equal(t, int64(300), jsontest.Get(out, "max_tokens").Int())
	assert.Equal(t, prompt+600, pl.Amount)
	assert.Equal(t, int64(600), pl.CompletionBound)

	// Over the whole limit: the plan is clamped to it instead of a 429.
	pl, aerr = p.PlanRequest(usage.APIChatCompletions, body, quota(prompt+2*100, usage.MetricTotal))
	require.Nil(t, aerr)
	assert.Equal(t, int64(200), pl.OutputReserve)
	assert.Equal(t, int64(100), jsontest.Get(pl.Body, "max_tokens").Int())

	// Without the option the same request is a 429.
	plain := mustParse(t, `{"strict": {"enabled": true}}`)
	_, aerr = plain.PlanRequest(usage.APIChatCompletions, body, quota(prompt+2*100, usage.MetricTotal))
	require.NotNil(t, aerr)
	assert.Equal(t, 429, aerr.Status)
	_, ok = plain.ClampOutput(pl, 1<<40)
	assert.False(t, ok)
}

func TestUnmeteredPaths(t *testing.T) {
	p := mustParse(t, `{"unmetered_paths": ["/v1/moderations", "/v1/files/*"]}`)
	q := quota(1000, usage.MetricTotal)
	for path, refused := range map[string]bool{
		"/v1/responses":                true,
		"/v1/audio/transcriptions":     true,
		"/v1/images/generations":       true,
		"/v1/chat%2Fcompletions":       true,
		"/v1/moderations":              false,
		"/v1/moderations?x=1":          false,
		"/v1/moderations/../responses": true,
		"/v1/files/abc":                false,
		"/v1/Moderations":              true,
	} {
		e := p.Unmetered(path, q)
		if refused {
			require.NotNil(t, e, path)
			assert.Equal(t, 403, e.Status, path)
			assert.Equal(t, CodeUnmeteredPath, e.Code, path)
		} else {
			assert.Nil(t, e, path)
		}
	}
	assert.Nil(t, p.Unmetered("/v1/responses", nil), "no token quota: nothing to protect")
}

func TestSettleQueue(t *testing.T) {
	store := table.NewMemStore()
	q, err := NewSettleQueue(store, 64, time.Minute, 100*time.Millisecond)
	require.NoError(t, err)
	require.NoError(t, q.Init())
	other, err := NewSettleQueue(store, 64, time.Minute, 100*time.Millisecond) // another worker
	require.NoError(t, err)
	t0 := time.UnixMilli(1_000_000)

	_, err = q.Push(OpSettle, Callout{Path: PathConsume, Body: []byte(`{}`)}, t0)
	require.Error(t, err, "only callouts of a reservation are queued")
	for _, id := range []string{"r1", "r2"} {
		_, err := q.Push(OpSettle, Settle(id, 42), t0)
		require.NoError(t, err)
	}
	_, err = q.Push(OpRelease, Release("r1"), t0)
	require.NoError(t, err)

	got, live, err := q.Claim(t0, time.Second, 10)
	require.NoError(t, err)
	assert.Equal(t, 2, live)
	require.Len(t, got, 2)
	byID := map[string]Pending{}
	for _, pd := range got {
		byID[pd.ID] = pd
	}
	assert.Equal(t, OpSettle, byID["r1"].Op, "the first queued outcome of a reservation wins")
	assert.Equal(t, Settle("r1", 42), byID["r1"].Callout)

	again, live, err := other.Claim(t0, time.Second, 10)
	require.NoError(t, err)
	assert.Empty(t, again, "claimed entries are not sent twice")
	assert.Equal(t, 2, live)

	require.NoError(t, q.Delivered("r1", t0))
	require.NoError(t, q.Retry("r2", t0))
	again, live, err = other.Claim(t0.Add(50*time.Millisecond), time.Second, 10)
	require.NoError(t, err)
	assert.Empty(t, again, "backing off")
	assert.Equal(t, 1, live)
	again, _, err = other.Claim(t0.Add(100*time.Millisecond), time.Second, 10)
	require.NoError(t, err)
	require.Len(t, again, 1)
	assert.Equal(t, "r2", again[0].ID)
	assert.Equal(t, 1, again[0].Attempts)

	// Unanswered claims expire and the entry is retried.
	again, _, err = q.Claim(t0.Add(1200*time.Millisecond), time.Second, 10)
	require.NoError(t, err)
	assert.Len(t, again, 1)

	// Entries die with their reservation.
	_, live, err = q.Claim(t0.Add(time.Minute), time.Second, 10)
	require.NoError(t, err)
	assert.Zero(t, live)
}

func TestSettleQueueBounded(t *testing.T) {
	q, err := NewSettleQueue(table.NewMemStore(), 8, time.Minute, time.Second)
	require.NoError(t, err)
	require.NoError(t, q.Init())
	evictions := 0
	for i := range 40 {
		ev, err := q.Push(OpSettle, Settle(string(rune('a'+i%26))+string(rune('A'+i/26)), 1), time.UnixMilli(int64(1000+i)))
		require.NoError(t, err)
		if ev {
			evictions++
		}
	}
	_, live, err := q.Claim(time.UnixMilli(2000), time.Second, 100)
	require.NoError(t, err)
	assert.LessOrEqual(t, live, 8)
	assert.Equal(t, 40-live, evictions, "every entry beyond the bound is reported dropped")
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		failed bool
		status int
		want   bool
	}{{true, 0, true}, {false, 503, true}, {false, 500, true}, {false, 429, true}, {false, 408, true}, {false, 400, false}, {false, 401, false}, {false, 404, false}} {
		assert.Equal(t, tc.want, Retryable(tc.failed, tc.status), "%+v", tc)
	}
}

// Queue entries come from shared data: any bytes decode or fail cleanly,
// and what encode writes decodes back.
func FuzzSettleQueueEntry(f *testing.F) {
	f.Add((&entry{op: 1, attempts: 3, next: 10, claim: 20, path: PathSettle, body: []byte(`{"items":[]}`)}).encode())
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		again, err := decodeEntry(e.encode())
		require.NoError(t, err)
		require.Equal(t, e, again)
	})
}
