package route

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/reqview"
)

// fixedRand always returns v (clamped below n), to choose targets in tests.
type fixedRand uint64

func (f fixedRand) Uint64N(n uint64) uint64 { return min(uint64(f), n-1) }

func TestBegin(t *testing.T) {
	p := seedPolicy(t)
	scoped, err := Parse([]byte(`{"paths":["/v1/chat/completions","/v1/embeddings"],"require_identity":true,"max_body_bytes":100}`))
	require.NoError(t, err)
	jsonCT := HeaderMap{"content-type": "application/json"}

	tests := []struct {
		name     string
		p        *Policy
		path     string
		h        HeaderMap
		eos      bool
		want     Step
		wantCode string
		status   int
	}{
		{"json body buffers", p, "/v1/chat/completions", jsonCT, false, Buffer, "", 0},
		{"no body skips", p, "/v1/models", HeaderMap{}, true, Skip, "", 0},
		{"no body skips even with bad type", p, "/v1/chat/completions", HeaderMap{"content-type": "text/plain"}, true, Skip, "", 0},
		{"form body", p, "/v1/chat/completions", HeaderMap{"content-type": "application/x-www-form-urlencoded"}, false, Reject, CodeInvalidContentType, 400},
		{"missing type", p, "/v1/chat/completions", HeaderMap{}, false, Reject, CodeInvalidContentType, 400},
		{"content-length over", p, "/v1/chat/completions", HeaderMap{"content-type": "application/json", "content-length": "1048577"}, false, Reject, CodeTooLarge, 413},
		{"content-length at limit", p, "/v1/chat/completions", HeaderMap{"content-type": "application/json", "content-length": "1048576"}, false, Buffer, "", 0},
		{"path outside scope", scoped, "/v1/files", HeaderMap{"content-type": "text/plain"}, false, Skip, "", 0},
		{"path in scope with query", scoped, "/v1/embeddings?x=1", HeaderMap{"content-type": "application/json", "x-tollgate-allowed-models": "*"}, false, Buffer, "", 0},
		{"identity required", scoped, "/v1/chat/completions", jsonCT, false, Reject, CodeNoIdentity, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.p.Begin(tt.path, tt.h, tt.eos)
			assert.Equal(t, tt.want, s.Step)
			if tt.wantCode == "" {
				assert.Nil(t, s.Err)
				return
			}
			require.NotNil(t, s.Err)
			assert.Equal(t, tt.wantCode, s.Err.Code)
			assert.Equal(t, tt.status, s.Err.Status)
		})
	}
}

func TestClientHeaders(t *testing.T) {
	p := seedPolicy(t)
	assert.Equal(t, []string{"x-tollgate-model", "x-tollgate-priority", "x-tollgate-public-model"}, p.ClientHeaders())
}

func TestDecide(t *testing.T) {
	p := seedPolicy(t)
	hidden, err := Parse([]byte(`{"hide_forbidden":true,"models":[{"name":"a"},{"name":"b"}]}`))
	require.NoError(t, err)
	pass, err := Parse([]byte(`{"unknown_models":"passthrough","models":[{"name":"a","route":"ra"}]}`))
	require.NoError(t, err)
	strict, err := Parse([]byte(`{"require_identity":true,"models":[{"name":"a"}]}`))
	require.NoError(t, err)

	tests := []struct {
		name     string
		p        *Policy
		body     string
		h        HeaderMap
		rnd      fixedRand
		want     Decision // Body compared via wantModel
		wantBody string   // model in the body the upstream gets ("" = unchanged)
		wantCode string
		status   int
	}{
		{name: "canonical name is rewritten to backend", p: p, body: `{"model":"gemma-3-1b-it"}`,
			want:     Decision{Requested: "gemma-3-1b-it", Model: "gemma-3-1b-it", Target: "gemma", BackendModel: "/gcs/google/gemma-3-1b-it", Priority: "standard", MapResponse: true},
			wantBody: "/gcs/google/gemma-3-1b-it"},
		{name: "alias", p: p, body: `{"model":"gemma"}`,
			want:     Decision{Requested: "gemma", Model: "gemma-3-1b-it", Target: "gemma", BackendModel: "/gcs/google/gemma-3-1b-it", Priority: "standard", MapResponse: true},
			wantBody: "/gcs/google/gemma-3-1b-it"},
		{name: "split first target, no rewrite", p: p, body: `{"model":"llama-3.1-8b"}`, rnd: 0,
			want: Decision{Requested: "llama-3.1-8b", Model: "llama-3.1-8b", Target: "llama-stable", BackendModel: "llama-3.1-8b", Priority: "sheddable"}},
		{name: "split last stable bucket", p: p, body: `{"model":"llama-3.1-8b"}`, rnd: 89,
			want: Decision{Requested: "llama-3.1-8b", Model: "llama-3.1-8b", Target: "llama-stable", BackendModel: "llama-3.1-8b", Priority: "sheddable"}},
		{name: "split canary with its own backend", p: p, body: `{"model":"llama-3.1-8b"}`, rnd: 90,
			want:     Decision{Requested: "llama-3.1-8b", Model: "llama-3.1-8b", Target: "llama-canary", BackendModel: "llama-3.1-8b-canary", Priority: "sheddable"},
			wantBody: "llama-3.1-8b-canary"},
		{name: "product priority wins over model", p: p, body: `{"model":"llama-3.1-8b"}`, h: HeaderMap{"x-tollgate-product": "gold"},
			want: Decision{Requested: "llama-3.1-8b", Model: "llama-3.1-8b", Target: "llama-stable", BackendModel: "llama-3.1-8b", Priority: "critical"}},
		{name: "product per-model priority", p: p, body: `{"model":"text-embedding-small"}`, h: HeaderMap{"x-tollgate-product": "gold"},
			want: Decision{Requested: "text-embedding-small", Model: "text-embedding-small", Target: "embed", BackendModel: "text-embedding-small", Priority: "standard"}},
		{name: "app priority wins over product", p: p, body: `{"model":"text-embedding-small"}`, h: HeaderMap{"x-tollgate-product": "gold", "x-tollgate-app": "batch-job"},
			want: Decision{Requested: "text-embedding-small", Model: "text-embedding-small", Target: "embed", BackendModel: "text-embedding-small", Priority: "sheddable"}},
		{name: "unknown product falls back", p: p, body: `{"model":"llama-3.1-8b"}`, h: HeaderMap{"x-tollgate-product": "silver"},
			want: Decision{Requested: "llama-3.1-8b", Model: "llama-3.1-8b", Target: "llama-stable", BackendModel: "llama-3.1-8b", Priority: "sheddable"}},
		{name: "allowed by exact name", p: p, body: `{"model":"gemma"}`, h: HeaderMap{"x-tollgate-allowed-models": "llama-3.1-8b, gemma-3-1b-it"},
			want:     Decision{Requested: "gemma", Model: "gemma-3-1b-it", Target: "gemma", BackendModel: "/gcs/google/gemma-3-1b-it", Priority: "standard", MapResponse: true},
			wantBody: "/gcs/google/gemma-3-1b-it"},
		{name: "allowed by alias pattern", p: p, body: `{"model":"google/gemma-3-1b-it"}`, h: HeaderMap{"x-tollgate-allowed-models": "google/*"},
			want:     Decision{Requested: "google/gemma-3-1b-it", Model: "gemma-3-1b-it", Target: "gemma", BackendModel: "/gcs/google/gemma-3-1b-it", Priority: "standard", MapResponse: true},
			wantBody: "/gcs/google/gemma-3-1b-it"},
		{name: "not allowed", p: p, body: `{"model":"gemma"}`, h: HeaderMap{"x-tollgate-allowed-models": "llama-*", "x-tollgate-product": "starter"},
			wantCode: CodeModelNotAllowed, status: 403},
		{name: "empty allow list allows nothing", p: p, body: `{"model":"gemma"}`, h: HeaderMap{"x-tollgate-allowed-models": ""},
			wantCode: CodeModelNotAllowed, status: 403},
		{name: "hidden forbidden model looks unknown", p: hidden, body: `{"model":"b"}`, h: HeaderMap{"x-tollgate-allowed-models": "a"},
			wantCode: CodeModelNotFound, status: 404},
		{name: "unknown model", p: p, body: `{"model":"gpt-4o"}`, wantCode: CodeModelNotFound, status: 404},
		{name: "unknown beats forbidden", p: p, body: `{"model":"gpt-4o"}`, h: HeaderMap{"x-tollgate-allowed-models": "gemma"}, wantCode: CodeModelNotFound, status: 404},
		{name: "passthrough unknown", p: pass, body: `{"model":"gpt-4o"}`,
			want: Decision{Requested: "gpt-4o", Target: "gpt-4o", BackendModel: "gpt-4o"}},
		{name: "passthrough still checks access", p: pass, body: `{"model":"gpt-4o"}`, h: HeaderMap{"x-tollgate-allowed-models": "a"}, wantCode: CodeModelNotAllowed, status: 403},
		{name: "passthrough refuses header-unsafe names", p: pass, body: `{"model":"a\u0000b"}`, wantCode: CodeInvalidModel, status: 400},
		{name: "identity required", p: strict, body: `{"model":"a"}`, wantCode: CodeNoIdentity, status: 403},
		{name: "missing model", p: p, body: `{"messages":[]}`, wantCode: CodeMissingModel, status: 400},
		{name: "malformed", p: p, body: `{"model":`, wantCode: CodeInvalidJSON, status: 400},
		{name: "too large", p: p, body: `{"model":"gemma","pad":"` + strings.Repeat("x", 1<<20) + `"}`, wantCode: CodeTooLarge, status: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.h
			if h == nil {
				h = HeaderMap{}
			}
			d, aerr := tt.p.Decide([]byte(tt.body), h, tt.rnd)
			if tt.wantCode != "" {
				require.NotNil(t, aerr, "decision %+v", d)
				assert.Equal(t, tt.wantCode, aerr.Code)
				assert.Equal(t, tt.status, aerr.Status)
				assert.NotEmpty(t, aerr.Message)
				return
			}
			require.Nil(t, aerr)
			body := d.Body
			d.Body = nil
			assert.Equal(t, tt.want, d)
			if tt.wantBody == "" {
				assert.Nil(t, body, "body unchanged")
				return
			}
			require.True(t, json.Valid(body))
			bm, aerr := ExtractModel(body, reqview.Limits{})
			require.Nil(t, aerr)
			assert.Equal(t, tt.wantBody, bm.Name)
		})
	}
}

func TestDecisionHeaders(t *testing.T) {
	p := seedPolicy(t)
	d := Decision{Target: "gemma", Priority: "critical"}
	assert.Equal(t, [][2]string{{"x-tollgate-model", "gemma"}, {"x-tollgate-priority", "critical"}}, d.Headers(p))
	d.Priority = ""
	assert.Equal(t, [][2]string{{"x-tollgate-model", "gemma"}}, d.Headers(p))
}

func TestDecisionPublicModelHeader(t *testing.T) {
	p := seedPolicy(t)
	pass, err := Parse([]byte(`{"unknown_models":"passthrough","public_model_header":"X-Public","models":[{"name":"a","route":"ra"}]}`))
	require.NoError(t, err)
	tests := []struct {
		name string
		p    *Policy
		body string
		want [][2]string
	}{
		{name: "alias carries the canonical name", p: p, body: `{"model":"gemma"}`,
			want: [][2]string{{"x-tollgate-model", "gemma"}, {"x-tollgate-public-model", "gemma-3-1b-it"}, {"x-tollgate-priority", "standard"}}},
		{name: "canonical name rewritten to backend", p: p, body: `{"model":"gemma-3-1b-it"}`,
			want: [][2]string{{"x-tollgate-model", "gemma"}, {"x-tollgate-public-model", "gemma-3-1b-it"}, {"x-tollgate-priority", "standard"}}},
		{name: "canary backend keeps the public name", p: p, body: `{"model":"llama-3.1-8b"}`,
			want: [][2]string{{"x-tollgate-model", "llama-stable"}, {"x-tollgate-public-model", "llama-3.1-8b"}, {"x-tollgate-priority", "sheddable"}}},
		{name: "passthrough names the client's model, custom header", p: pass, body: `{"model":"gpt-4o"}`,
			want: [][2]string{{"x-tollgate-model", "gpt-4o"}, {"x-public", "gpt-4o"}}},
		{name: "known model, custom header", p: pass, body: `{"model":"a"}`,
			want: [][2]string{{"x-tollgate-model", "ra"}, {"x-public", "a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, aerr := tt.p.Decide([]byte(tt.body), HeaderMap{}, fixedRand(0))
			require.Nil(t, aerr)
			assert.Equal(t, tt.want, d.Headers(tt.p))
		})
	}
}

func TestErrorMessages(t *testing.T) {
	p := seedPolicy(t)
	_, aerr := p.Decide([]byte(`{"model":"gpt-4o"}`), HeaderMap{}, fixedRand(0))
	require.NotNil(t, aerr)
	assert.JSONEq(t, `{"error":{"message":"The model \"gpt-4o\" does not exist or you do not have access to it.","type":"not_found_error","param":"model","code":"model_not_found"}}`,
		string(aerr.Body(p.Style)))

	_, aerr = p.Decide([]byte(`{"model":"gemma"}`), HeaderMap{"x-tollgate-allowed-models": "llama-*", "x-tollgate-product": "starter"}, fixedRand(0))
	require.NotNil(t, aerr)
	assert.JSONEq(t, `{"error":{"message":"The model \"gemma\" is not available to API product \"starter\"","type":"permission_error","param":"model","code":"model_not_allowed"}}`,
		string(aerr.Body(p.Style)))
}

func TestAllowedBy(t *testing.T) {
	tests := []struct {
		list, name string
		want       bool
	}{
		{"*", "anything", true},
		{"a,b,c", "b", true},
		{" a , b ", "b", true},
		{"a,b", "c", false},
		{"gemma-*", "gemma-3-1b-it", true},
		{"gemma-*", "gemma", false},
		{"gemma*", "gemma", true},
		{"", "a", false},
		{",,", "a", false},
		{"ab", "a", false},
		{"a", "ab", false},
		{"*a", "xa", false}, // only suffix wildcards
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s", tt.list, tt.name), func(t *testing.T) {
			assert.Equal(t, tt.want, AllowedBy(tt.list, tt.name))
		})
	}
}

func TestStickyKeepsTarget(t *testing.T) {
	p := seedPolicy(t)
	// Many sessions: each one keeps its target whatever the random source says,
	// and the sessions together follow the weights.
	counts := map[string]int{}
	const sessions = 4000
	for i := range sessions {
		h := HeaderMap{"x-session-id": fmt.Sprintf("session-%d", i)}
		first, aerr := p.Decide([]byte(`{"model":"llama-3.1-8b"}`), h, fixedRand(0))
		require.Nil(t, aerr)
		require.True(t, first.Sticky)
		for _, r := range []fixedRand{50, 95, 99} {
			again, aerr := p.Decide([]byte(`{"model":"llama-3.1-8b"}`), h, r)
			require.Nil(t, aerr)
			require.Equal(t, first.Target, again.Target, "session %d", i)
		}
		counts[first.Target]++
	}
	canary := float64(counts["llama-canary"]) / sessions
	assert.InDelta(t, 0.10, canary, 0.02, "sticky keys spread by weight: %v", counts)

	// An empty key is no key: the random source decides.
	d, aerr := p.Decide([]byte(`{"model":"llama-3.1-8b"}`), HeaderMap{"x-session-id": ""}, fixedRand(95))
	require.Nil(t, aerr)
	assert.False(t, d.Sticky)
	assert.Equal(t, "llama-canary", d.Target)
}

func TestWeightedSplitDistribution(t *testing.T) {
	p := seedPolicy(t)
	rnd := rand.New(rand.NewPCG(1, 2)) // fixed seed: deterministic
	counts := map[string]int{}
	const n = 20000
	for range n {
		d, aerr := p.Decide([]byte(`{"model":"llama-3.1-8b"}`), HeaderMap{}, rnd)
		require.Nil(t, aerr)
		counts[d.Target]++
	}
	assert.InDelta(t, 0.9, float64(counts["llama-stable"])/n, 0.01, "%v", counts)
}

func TestStickyBucket(t *testing.T) {
	assert.Equal(t, StickyBucket("m", "k", 100), StickyBucket("m", "k", 100), "deterministic")
	for i := range 1000 {
		b := StickyBucket("m", fmt.Sprint(i), 7)
		require.Less(t, b, uint64(7))
	}
	// The model is part of the key, so one session does not pin every model alike.
	differ := 0
	for i := range 100 {
		if StickyBucket("a", fmt.Sprint(i), 1000) != StickyBucket("b", fmt.Sprint(i), 1000) {
			differ++
		}
	}
	assert.Greater(t, differ, 90)
	// The separator keeps ("ab","c") and ("a","bc") apart.
	assert.NotEqual(t, StickyBucket("ab", "c", 1<<32), StickyBucket("a", "bc", 1<<32))
}

func TestOwns(t *testing.T) {
	p, err := Parse([]byte(`{"paths":["/v1/chat/completions"]}`))
	require.NoError(t, err)
	assert.True(t, p.Owns("/v1/chat/completions"))
	assert.True(t, p.Owns("/v1/chat/completions?a=b"))
	assert.False(t, p.Owns("/v1/completions"))
	all, err := Parse(nil)
	require.NoError(t, err)
	assert.True(t, all.Owns("/anything"))
}

func FuzzAllowedBy(f *testing.F) {
	f.Add("a,b*,*", "bc")
	f.Add(" , ,x", "x")
	f.Fuzz(func(t *testing.T, list, name string) {
		got := AllowedBy(list, name)
		if strings.Contains(list, name) && name != "" && !strings.ContainsAny(name, ", *") {
			// an exact item equal to name must allow it
			for _, it := range strings.Split(list, ",") {
				if strings.TrimSpace(it) == name {
					require.True(t, got)
				}
			}
		}
		if got {
			require.NotEmpty(t, strings.TrimSpace(strings.ReplaceAll(list, ",", "")))
		}
	})
}
