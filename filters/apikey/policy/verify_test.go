package policy

import (
	"encoding/json"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/identity"
	"github.com/tollgate/tollgate/window"
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func TestVerifyRequest(t *testing.T) {
	p := mustParse(t, `{"keystore":{"cluster":"ks","headers":{"x-token":"t"}}}`)
	h, body := p.VerifyRequest(HashKey("foo"))
	assert.Equal(t, [][2]string{
		{":method", "POST"}, {":path", "/v1/verify"}, {":authority", "ks"},
		{"content-type", "application/json"}, {"accept", "application/json"}, {"x-token", "t"},
	}, h)
	var req model.VerifyRequest
	require.NoError(t, json.Unmarshal(body, &req))
	assert.Equal(t, model.VerifyRequest{KeyHash: HashKey("foo")}, req)

	p = mustParse(t, `{"keystore":{"cluster":"ks","token":"data-plane-token"}}`)
	h, _ = p.VerifyRequest(HashKey("foo"))
	assert.Equal(t, [2]string{"authorization", "Bearer data-plane-token"}, h[len(h)-1])
}

func TestDecodeVerify(t *testing.T) {
	ok := DecodeVerify(200, fixture(t, "verify_ok.json"))
	require.Equal(t, Granted, ok.Kind)
	assert.Equal(t, 30*time.Second, ok.TTL)
	g := ok.Grant
	assert.Equal(t, "demo", g.App)
	assert.Equal(t, "ada@example.com", g.Developer)
	assert.Equal(t, "key_AbCdEfGh12345678", g.KeyID)
	assert.Equal(t, []string{"chat", "embed"}, g.Products)
	assert.True(t, g.ExpiresAt.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)))
	require.Len(t, g.Entitlements, 2)
	chat := g.Entitlements[0]
	assert.Equal(t, []string{"gemma-3-1b-it", "llama-*"}, chat.AllowedModels)
	require.Len(t, chat.Operations, 2)
	assert.Equal(t, &model.QuotaSpec{Limit: 60, Interval: 1, TimeUnit: "minute", Window: "calendar", Scope: "chat"}, chat.Operations[0].RequestQuota)
	assert.Equal(t, "total", chat.Operations[0].TokenQuota.Counted)
	assert.Nil(t, chat.Operations[1].RequestQuota)

	tests := []struct {
		name   string
		status int
		body   string
		kind   Kind
		reason string
	}{
		{"revoked", 401, string(fixture(t, "verify_revoked.json")), Denied, model.ReasonRevoked},
		{"unknown on 200", 200, `{"valid":false,"reason":"unknown_key"}`, Denied, model.ReasonUnknownKey},
		{"expired", 401, `{"valid":false,"reason":"expired"}`, Denied, model.ReasonExpired},
		{"no response", 0, ``, Failed, "keystore unreachable"},
		{"server error", 503, `{"valid":false,"reason":"unknown_key"}`, Failed, "keystore answered 503"},
		{"not json", 200, `<html>`, Failed, "keystore answered 200"},
		{"no valid field", 200, `{"app":"x"}`, Failed, "without a verify result"},
		{"valid is a string", 200, `{"valid":"true","app":"x"}`, Failed, "without a verify result"},
		{"array", 200, `[true]`, Failed, "without a verify result"},
		{"bad request", 400, `{"error":{"message":"bad"}}`, Failed, "without a verify result"},
		{"odd reason", 401, `{"valid":false,"reason":"sunspots"}`, Failed, `unexpected reason "sunspots"`},
		{"valid without app", 200, `{"valid":true}`, Failed, "names no app"},
		{"valid with error status", 302, `{"valid":true,"app":"a"}`, Failed, "with a valid key"},
		{"bad expiry", 200, `{"valid":true,"app":"a","expires_at":"tomorrow"}`, Failed, "expires_at"},
		{"path denial is a grant", 403, `{"valid":false,"reason":"operation_not_allowed","app":"a"}`, Granted, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := DecodeVerify(tt.status, []byte(tt.body))
			assert.Equal(t, tt.kind, a.Kind)
			assert.Contains(t, a.Reason, tt.reason)
		})
	}
	big := make([]byte, MaxVerifyBody+1)
	assert.Equal(t, Failed, DecodeVerify(200, big).Kind)
}

func TestAnswerEncoding(t *testing.T) {
	ok := DecodeVerify(200, fixture(t, "verify_ok.json"))
	answers := []Answer{
		{Kind: Granted, Grant: ok.Grant},
		{Kind: Denied, Reason: model.ReasonRevoked},
		{Kind: Failed, Reason: "keystore unreachable"},
	}
	for _, a := range answers {
		b, err := a.Encode()
		require.NoError(t, err)
		back, err := DecodeAnswer(b)
		require.NoError(t, err)
		assert.Equal(t, a.Kind, back.Kind)
		assert.Equal(t, a.Reason, back.Reason)
		if a.Grant != nil {
			assert.Equal(t, a.Grant.App, back.Grant.App)
			assert.Equal(t, a.Grant.Entitlements, back.Grant.Entitlements)
			assert.True(t, a.Grant.ExpiresAt.Equal(back.Grant.ExpiresAt))
		}
	}
	_, err := Answer{Kind: Granted}.Encode()
	require.ErrorIs(t, err, ErrBadEntry)
	_, err = Answer{Kind: 'Z'}.Encode()
	require.ErrorIs(t, err, ErrBadEntry)
	for _, bad := range []string{"", "Z", "G{", `G{"k":"x"}`} {
		_, err := DecodeAnswer([]byte(bad))
		require.ErrorIs(t, err, ErrBadEntry, bad)
	}
}

func TestExpiry(t *testing.T) {
	p := mustParse(t, `{"cache":{"ttl":"60s","negative_ttl":"5s","error_ttl":"1s"}}`)
	g := &Grant{App: "a"}
	soon := &Grant{App: "a", ExpiresAt: now.Add(10 * time.Second)}
	gone := &Grant{App: "a", ExpiresAt: now}
	tests := []struct {
		name string
		a    Answer
		want time.Duration // 0: not cached
	}{
		{"granted", Answer{Kind: Granted, Grant: g}, time.Minute},
		{"keystore hint shorter", Answer{Kind: Granted, Grant: g, TTL: 30 * time.Second}, 30 * time.Second},
		{"keystore hint longer", Answer{Kind: Granted, Grant: g, TTL: time.Hour}, time.Minute},
		{"key expires first", Answer{Kind: Granted, Grant: soon}, 10 * time.Second},
		{"key already expired", Answer{Kind: Granted, Grant: gone}, 0},
		{"denied", Answer{Kind: Denied}, 5 * time.Second},
		{"failed", Answer{Kind: Failed, TTL: 30 * time.Second}, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp := p.Expiry(tt.a, now)
			if tt.want == 0 {
				assert.True(t, exp.IsZero())
				return
			}
			assert.Equal(t, tt.want, exp.Sub(now))
		})
	}
	noNeg := mustParse(t, `{"cache":{"negative_ttl":"0s"}}`)
	assert.True(t, noNeg.Expiry(Answer{Kind: Denied}, now).IsZero())
	noPos := mustParse(t, `{"cache":{"ttl":"0s"}}`)
	assert.True(t, noPos.Expiry(Answer{Kind: Granted, Grant: g}, now).IsZero())
}

func TestDecide(t *testing.T) {
	grant := DecodeVerify(200, fixture(t, "verify_ok.json"))
	p := mustParse(t, ``)
	bearer := mustParse(t, `{"key_sources":[{"bearer":true}]}`)
	open := mustParse(t, `{"failure_mode":"open"}`)
	expired := Answer{Kind: Granted, Grant: &Grant{App: "a", ExpiresAt: now.Add(-time.Second)}}

	tests := []struct {
		name      string
		p         *Policy
		a         Answer
		method    string
		path      string
		outcome   Outcome
		pass      bool
		status    int
		code      string
		challenge string
	}{
		{"allowed", p, grant, "POST", "/v1/chat/completions?x=1", Allowed, true, 0, "", ""},
		{"allowed second product", p, grant, "PUT", "/v1/embeddings", Allowed, true, 0, "", ""},
		{"wrong method", p, grant, "GET", "/v1/chat/completions", Forbidden, false, 403, "operation_not_allowed", ""},
		{"wrong path", p, grant, "POST", "/v1/admin", Forbidden, false, 403, "operation_not_allowed", ""},
		{"traversal", p, grant, "GET", "/v1/models/../admin", Forbidden, false, 403, "operation_not_allowed", ""},
		{"forbidden bearer", bearer, grant, "POST", "/nope", Forbidden, false, 403, "operation_not_allowed", `Bearer realm="tollgate", error="insufficient_scope"`},
		{"revoked", p, Answer{Kind: Denied, Reason: model.ReasonRevoked}, "GET", "/", Invalid, false, 401, "revoked_api_key", `ApiKey realm="tollgate", header="x-api-key"`},
		{"unknown", p, Answer{Kind: Denied, Reason: model.ReasonUnknownKey}, "GET", "/", Invalid, false, 401, "invalid_api_key", `ApiKey realm="tollgate", header="x-api-key"`},
		{"unknown bearer", bearer, Answer{Kind: Denied, Reason: model.ReasonUnknownKey}, "GET", "/", Invalid, false, 401, "invalid_api_key", `Bearer realm="tollgate", error="invalid_token", error_description="Invalid API key provided."`},
		{"expired by keystore", p, Answer{Kind: Denied, Reason: model.ReasonExpired}, "GET", "/", Invalid, false, 401, "expired_api_key", `ApiKey realm="tollgate", header="x-api-key"`},
		{"expired in cache", p, expired, "GET", "/", Invalid, false, 401, "expired_api_key", `ApiKey realm="tollgate", header="x-api-key"`},
		{"keystore down", p, Answer{Kind: Failed}, "GET", "/", KeystoreError, false, 503, "keystore_unavailable", ""},
		{"keystore down fail open", open, Answer{Kind: Failed}, "GET", "/", KeystoreError, true, 0, "", ""},
		{"granted without grant", p, Answer{Kind: Granted}, "GET", "/", KeystoreError, false, 503, "keystore_unavailable", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.p.Decide(tt.a, 0, tt.method, tt.path, now)
			assert.Equal(t, tt.outcome, d.Outcome)
			assert.Equal(t, tt.pass, d.Pass)
			if tt.status == 0 {
				assert.Nil(t, d.Error)
				return
			}
			require.NotNil(t, d.Error)
			assert.Equal(t, tt.status, d.Error.Status)
			assert.Equal(t, tt.code, d.Error.Code)
			if tt.challenge == "" {
				for _, h := range d.Headers {
					assert.NotEqual(t, "www-authenticate", h[0])
				}
			} else {
				assert.Contains(t, d.Headers, [2]string{"www-authenticate", tt.challenge})
			}
		})
	}

	d := p.Decide(grant, 0, "POST", "/v1/chat/completions", now)
	assert.Equal(t, identity.Identity{
		App: "demo", Developer: "ada@example.com", Product: "chat", KeyID: "key_AbCdEfGh12345678",
		AllowedModels: []string{"gemma-3-1b-it", "llama-*"},
		RequestQuota:  &identity.Quota{Limit: 60, Interval: 1, TimeUnit: "minute", Window: "calendar", Scope: "chat"},
		TokenQuota:    &identity.Quota{Limit: 10000, Interval: 1, TimeUnit: "hour", Window: "rolling", Counted: "total", Scope: "chat:POST:/v1/chat/completions"},
	}, d.Identity)
	spec, err := window.ParseCompact(d.Identity.RequestQuota.String()[:len("60/1minute/calendar")])
	require.NoError(t, err, "the quota header's spec part is what the window package reads")
	assert.Equal(t, int64(60), spec.Limit)
}

func TestMissingAndStyles(t *testing.T) {
	p := mustParse(t, `{"key_sources":[{"query":"key"},{"bearer":true}],"realm":"ai"}`)
	d := p.Missing()
	assert.Equal(t, Missing, d.Outcome)
	assert.Equal(t, 401, d.Error.Status)
	assert.Contains(t, d.Error.Message, `the query parameter "key" or the Authorization header`)
	assert.Equal(t, [][2]string{{"www-authenticate", `ApiKey realm="ai", query="key"`}}, d.Headers)
	var fault struct {
		Fault struct {
			FaultString string `json:"faultstring"`
			Detail      struct {
				ErrorCode string `json:"errorcode"`
			} `json:"detail"`
		} `json:"fault"`
	}
	require.NoError(t, json.Unmarshal(d.Error.Body(apierror.StyleApigee), &fault))
	assert.Equal(t, d.Error.Message, fault.Fault.FaultString)
	assert.Equal(t, "steps.oauth.v2.FailedToResolveAPIKey", fault.Fault.Detail.ErrorCode)
	inv := p.Invalid(1, "")
	assert.Equal(t, "oauth.v2.InvalidApiKey", inv.Error.Apigee)
	assert.Equal(t, [][2]string{{"www-authenticate", `Bearer realm="ai", error="invalid_token", error_description="Invalid API key provided."`}}, inv.Headers)
	three := mustParse(t, `{"key_sources":[{"header":"a"},{"header":"b"},{"query":"k"}]}`)
	assert.Contains(t, three.Missing().Error.Message, `the "a" header, the "b" header or the query parameter "k"`)

	fo := mustParse(t, ``).KeystoreFailure()
	assert.Equal(t, [][2]string{{"retry-after", "1"}}, fo.Headers)
	for _, o := range Outcomes {
		assert.NotEqual(t, "unknown", o.String())
	}
	assert.Equal(t, "unknown", Outcome(99).String())
}

func TestLocalDecide(t *testing.T) {
	p, err := ParseConfig(fixture(t, "local.json"))
	require.NoError(t, err)
	g := p.Local[HashKey("foo")]
	d := p.Decide(Answer{Kind: Granted, Grant: g}, 0, "POST", "/v1/chat/completions", now)
	require.True(t, d.Pass)
	assert.Equal(t, "chat", d.Identity.Product)
	assert.Equal(t, "10/1minute/calendar;scope=chat:set:openai", d.Identity.RequestQuota.String())
	assert.Equal(t, "5000/1day/calendar;counted=total;scope=chat", d.Identity.TokenQuota.String())

	d = p.Decide(Answer{Kind: Granted, Grant: p.Local[HashKey("bar")]}, 0, "POST", "/v1/embeddings", now)
	assert.Equal(t, Invalid, d.Outcome, "an expired local key")
}

func TestMetricNames(t *testing.T) {
	assert.Equal(t, "tollgate_apikey_requests_total.outcome.keystore_error", RequestsMetric(KeystoreError))
	assert.Equal(t, "tollgate_apikey_cache_lookups_total.result.hit", CacheMetric("hit"))
	assert.Equal(t, "tollgate_apikey_callouts_total.result.error", CalloutsMetric("error"))
	tags := StatsTags()
	require.Len(t, tags, 2)
	for _, st := range tags {
		_, err := regexp.Compile(st.Regex)
		require.NoError(t, err)
	}
	m := regexp.MustCompile(tags[0].Regex).FindStringSubmatch("wasmcustom." + RequestsMetric(Allowed))
	require.Len(t, m, 3)
	assert.Equal(t, "allowed", m[2])
	m = regexp.MustCompile(tags[1].Regex).FindStringSubmatch("wasmcustom." + CalloutsMetric("ok"))
	require.Len(t, m, 3)
	assert.Equal(t, "ok", m[2])
}

func TestDecideRememberedRoutes(t *testing.T) {
	p := mustParse(t, ``)
	a := DecodeVerify(200, fixture(t, "verify_ok.json"))
	first := p.Decide(a, 0, "POST", "/v1/chat/completions?stream=1", now)
	require.True(t, first.Pass)
	again := p.Decide(a, 0, "POST", "/v1/chat/completions", now)
	assert.Equal(t, first.Identity, again.Identity, "query ignored, same operation")
	assert.Equal(t, first.Pairs, again.Pairs)
	assert.Equal(t, first.Identity.Pairs(p.Identity), again.Pairs, "pre-rendered pairs equal a fresh rendering")
	assert.Equal(t, Forbidden, p.Decide(a, 0, "GET", "/v1/chat/completions", now).Outcome)
	assert.Equal(t, Forbidden, p.Decide(a, 0, "GET", "/v1/chat/completions", now).Outcome, "remembered denial")
	for i := range 3 * maxRoutes {
		d := p.Decide(a, 0, "GET", "/v1/models/m"+strconv.Itoa(i), now)
		require.True(t, d.Pass)
	}
	assert.LessOrEqual(t, len(a.Grant.view.routes), maxRoutes)
	assert.Equal(t, "embed", p.Decide(a, 0, "PUT", "/v1/embeddings", now).Identity.Product)
}
