package meter

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/window"
)

func TestParseDefaults(t *testing.T) {
	for _, cfg := range []string{"", "  ", "{}"} {
		p := mustParse(t, cfg)
		assert.Equal(t, DefaultCluster, p.Cluster)
		assert.Equal(t, DefaultAuthority, p.Authority)
		assert.Equal(t, DefaultTimeout, p.Timeout)
		assert.Equal(t, DefaultReservationTTL, p.ReservationTTL)
		assert.Equal(t, usage.MetricTotal, p.Metric)
		assert.True(t, p.InjectIncludeUsage)
		assert.True(t, p.StripAcceptEncoding)
		assert.False(t, p.FailOpen)
		assert.False(t, p.ReleaseOnAbort)
		assert.Nil(t, p.Static)
		assert.Equal(t, HeaderNames{DefaultLimitHeader, DefaultRemainingHeader, DefaultResetHeader}, p.Headers)
		assert.Equal(t, int64(DefaultMaxRequestBytes), p.MaxRequestBytes)
		assert.Equal(t, int64(DefaultHoldResponseBytes), p.HoldResponseBytes)
		assert.Equal(t, int64(DefaultMaxResponseBytes), p.MaxResponseBytes)
		assert.Equal(t, "x-tollgate-token-quota", p.Identity.TokenQuota)
		assert.True(t, p.TrustIdentity)
		assert.Equal(t, DefaultPublicModelHeader, p.PublicModelHeader)
		assert.Equal(t, apierror.StyleOpenAI, p.Style)
	}
}

func TestParseFull(t *testing.T) {
	p := mustParse(t, `{
	  "keystore": {"cluster": "ks", "authority": "ks.local", "timeout": "250ms", "reservation_ttl": "1m"},
	  "counted": "cost",
	  "pricing": {"models": {"gpt-4o*": {"input": 2.5, "output": 10}}, "default": {"input": 1, "output": 2}},
	  "default_max_output_tokens": 512, "max_output_tokens_cap": 2048,
	  "inject_include_usage": false, "strip_accept_encoding": false,
	  "identity_headers": {"app": "X-App"},
	  "static_quota": {"header": "X-Team", "limit": 1000, "time_unit": "hour", "window": "rolling",
	                   "overrides": {"gold": {"limit": 5000, "time_unit": "hour", "window": "rolling", "counted": "total"}}},
	  "rate_limit_headers": {"limit": "X-Tokens-Limit"},
	  "failure_mode": "open", "on_abort": "release",
	  "max_request_bytes": 1024, "hold_response_bytes": -1, "max_response_bytes": 2048,
	  "metric_models": ["gpt-4o"], "max_metric_models": 5, "max_metric_apps": 7,
	  "error_style": "apigee"
	}`)
	assert.Equal(t, "ks", p.Cluster)
	assert.Equal(t, "ks.local", p.Authority)
	assert.Equal(t, 250*time.Millisecond, p.Timeout)
	assert.Equal(t, time.Minute, p.ReservationTTL)
	assert.Equal(t, usage.MetricCost, p.Metric)
	assert.Equal(t, 2.5, p.Pricing.For("gpt-4o-mini").Input)
	assert.Equal(t, int64(512), p.Estimator.DefaultMaxOutput)
	assert.Equal(t, int64(2048), p.Estimator.MaxOutputCap)
	assert.False(t, p.InjectIncludeUsage)
	assert.False(t, p.StripAcceptEncoding)
	assert.Equal(t, "x-app", p.Identity.App)
	require.NotNil(t, p.Static)
	assert.Equal(t, "x-team", p.Static.Header)
	assert.Equal(t, DefaultStaticProduct, p.Static.Product)
	assert.Equal(t, window.Spec{Limit: 1000, Interval: 1, Unit: window.Hour, Kind: window.Rolling}, p.Static.Default.Spec)
	assert.Equal(t, usage.MetricCost, p.Static.Default.Metric, "static quota inherits counted")
	assert.Equal(t, int64(5000), p.Static.Overrides["gold"].Spec.Limit)
	assert.Equal(t, usage.MetricTotal, p.Static.Overrides["gold"].Metric)
	assert.Equal(t, "x-tokens-limit", p.Headers.Limit)
	assert.Equal(t, DefaultRemainingHeader, p.Headers.Remaining)
	assert.True(t, p.FailOpen)
	assert.True(t, p.ReleaseOnAbort)
	assert.Equal(t, int64(1024), p.MaxRequestBytes)
	assert.Equal(t, int64(0), p.HoldResponseBytes)
	assert.Equal(t, int64(2048), p.MaxResponseBytes)
	assert.True(t, p.MetricModels["gpt-4o"])
	assert.Equal(t, 5, p.MaxMetricModels)
	assert.Equal(t, 7, p.MaxMetricApps)
	assert.Equal(t, apierror.StyleApigee, p.Style)
}

func TestParseDisabledHeaders(t *testing.T) {
	p := mustParse(t, `{"rate_limit_headers": {"disabled": true}}`)
	assert.Empty(t, p.RateLimitHeaders(State{Limit: 10, Remaining: 5}))
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, cfg, want string
	}{
		{"not json", `{`, "unexpected EOF"},
		{"trailing", `{} {}`, "trailing data"},
		{"trailing brace", `{}}`, "trailing data"},
		{"unknown field", `{"countd": "total"}`, `unknown field "countd"`},
		{"wrong type", `{"counted": 3}`, "cannot unmarshal"},
		{"counted", `{"counted": "words"}`, "counted"},
		{"timeout in milliseconds", `{"keystore": {"timeout_ms": 500}}`, "unknown field"},
		{"timeout negative", `{"keystore": {"timeout": "-1s"}}`, "keystore.timeout"},
		{"timeout big", `{"keystore": {"timeout": "61s"}}`, "keystore.timeout"},
		{"ttl", `{"keystore": {"reservation_ttl": "24h0m0.001s"}}`, "reservation_ttl"},
		{"price", `{"pricing": {"default": {"input": -1}}}`, "pricing"},
		{"max output", `{"default_max_output_tokens": -1}`, "default_max_output_tokens"},
		{"identity", `{"identity_headers": {"app": "x-tollgate-product"}}`, "used twice"},
		{"static no limit", `{"static_quota": {"time_unit": "hour"}}`, "limit is required"},
		{"static unit", `{"static_quota": {"limit": 5, "time_unit": "fortnight"}}`, "static_quota"},
		{"static window", `{"static_quota": {"limit": 5, "time_unit": "hour", "window": "tumbling"}}`, "static_quota"},
		{"static limit", `{"static_quota": {"limit": -5, "time_unit": "hour"}}`, "limit"},
		{"static header", `{"static_quota": {"limit": 5, "time_unit": "hour", "header": "x team"}}`, "header"},
		{"overrides no header", `{"static_quota": {"limit": 5, "time_unit": "hour", "overrides": {"a": {"limit": 1, "time_unit": "hour"}}}}`, "overrides need a header"},
		{"override bad", `{"static_quota": {"limit": 5, "time_unit": "hour", "header": "x-t", "overrides": {"a": {"time_unit": "hour"}}}}`, `overrides["a"]`},
		{"override counted", `{"static_quota": {"limit": 5, "time_unit": "hour", "header": "x-t", "overrides": {"a": {"limit": 1, "time_unit": "hour", "counted": "x"}}}}`, `overrides["a"]`},
		{"rl header", `{"rate_limit_headers": {"reset": "x reset"}}`, "rate_limit_headers"},
		{"failure", `{"failure_mode": "maybe"}`, "failure_mode"},
		{"abort", `{"on_abort": "ignore"}`, "on_abort"},
		{"max req", `{"max_request_bytes": -1}`, "max_request_bytes"},
		{"hold", `{"hold_response_bytes": 2000000}`, "hold_response_bytes"},
		{"hold neg", `{"hold_response_bytes": -2}`, "hold_response_bytes"},
		{"max resp", `{"max_response_bytes": -1}`, "max_response_bytes"},
		{"metric bounds", `{"max_metric_apps": -1}`, "max_metric"},
		{"style", `{"error_style": "xml"}`, "error_style"},
		{"public model header", `{"public_model_header": "x public"}`, "public_model_header"},
		{"public model header pseudo", `{"public_model_header": ":path"}`, "public_model_header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.cfg))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), "tokencount config")
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"static_quota": {"header": "x-t", "limit": 5, "time_unit": "hour", "overrides": {"a": {"limit": 1, "time_unit": "minute"}}}}`))
	f.Add([]byte(`{"counted": "cost", "pricing": {"models": {"a*": {"input": 1, "output": 2}}}}`))
	f.Add([]byte(`{"keystore": {"timeout": "5ms", "reservation_ttl": "1s"}, "hold_response_bytes": -1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			require.Nil(t, p)
			return
		}
		// A valid policy is usable: every derived value is in range.
		require.Positive(t, p.Timeout)
		require.Positive(t, p.ReservationTTL)
		require.LessOrEqual(t, p.ReservationTTL, MaxReservationTTL)
		require.Positive(t, p.MaxRequestBytes)
		require.GreaterOrEqual(t, p.HoldResponseBytes, int64(0))
		if p.Static != nil {
			require.NoError(t, p.Static.Default.Spec.Validate())
		}
	})
}
