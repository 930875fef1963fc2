package apierror

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBody(t *testing.T) {
	tests := []struct {
		name  string
		err   *Error
		style Style
		want  string
	}{
		{"openai 401", New(401, "invalid_api_key", "bad key"), StyleOpenAI,
			`{"error":{"message":"bad key","type":"authentication_error","param":null,"code":"invalid_api_key"}}`},
		{"openai param", &Error{Status: 400, Code: "missing_model", Message: "model is required", Param: "model"}, StyleOpenAI,
			`{"error":{"message":"model is required","type":"invalid_request_error","param":"model","code":"missing_model"}}`},
		{"apigee 429", New(429, "quota_exceeded", "over quota"), StyleApigee,
			`{"fault":{"faultstring":"over quota","detail":{"errorcode":"policies.ratelimit.QuotaViolation"}}}`},
		{"apigee explicit", &Error{Status: 401, Message: "expired", Apigee: "keymanagement.service.access_token_expired"}, StyleApigee,
			`{"fault":{"faultstring":"expired","detail":{"errorcode":"keymanagement.service.access_token_expired"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.err.Body(tt.style)
			require.True(t, json.Valid(got))
			assert.JSONEq(t, tt.want, string(got))
		})
	}
}

func TestParseStyle(t *testing.T) {
	for in, want := range map[string]Style{"": StyleOpenAI, "openai": StyleOpenAI, "apigee": StyleApigee} {
		got, ok := ParseStyle(in)
		assert.True(t, ok, in)
		assert.Equal(t, want, got, in)
	}
	_, ok := ParseStyle("xml")
	assert.False(t, ok)
}

func TestTypeFor(t *testing.T) {
	assert.Equal(t, "rate_limit_error", TypeFor(429))
	assert.Equal(t, "server_error", TypeFor(503))
	assert.Equal(t, "not_found_error", TypeFor(404))
	assert.Equal(t, "invalid_request_error", TypeFor(400))
}
