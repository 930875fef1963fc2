package meter

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/window"
)

func TestResolve(t *testing.T) {
	static := `{"counted": "prompt", "static_quota": {"header": "x-team", "limit": 1000, "time_unit": "hour", "window": "rolling",
	  "overrides": {"gold": {"limit": 9000, "time_unit": "day", "counted": "completion"}}}}`
	global := `{"static_quota": {"limit": 50, "time_unit": "minute"}}`
	hourly := window.Spec{Limit: 1000, Interval: 1, Unit: window.Hour, Kind: window.Rolling}
	tests := []struct {
		name    string
		cfg     string
		headers map[string]string
		want    *Quota
		wantID  Identity
		status  int
	}{
		{
			name: "apikey token quota, product scope",
			cfg:  `{}`,
			headers: map[string]string{"x-tollgate-app": "demo", "x-tollgate-product": "chat",
				"x-tollgate-token-quota": "100000/1hour/rolling;counted=total;scope=chat"},
			want: &Quota{Key: Key{App: "demo", Product: "chat", Kind: "tokens"},
				Spec: window.Spec{Limit: 100000, Interval: 1, Unit: window.Hour, Kind: window.Rolling}, Metric: usage.MetricTotal, App: "demo"},
			wantID: Identity{App: "demo", Verified: true},
		},
		{
			name: "apikey operation scope and counted cost",
			cfg:  `{}`,
			headers: map[string]string{"x-tollgate-app": "demo",
				"x-tollgate-token-quota": "5000/2day/calendar;counted=cost;scope=chat:POST:/v1/embeddings"},
			want: &Quota{Key: Key{App: "demo", Product: "chat", Operation: "POST:/v1/embeddings", Kind: "cost"},
				Spec: window.Spec{Limit: 5000, Interval: 2, Unit: window.Day, Kind: window.Calendar}, Metric: usage.MetricCost, App: "demo"},
			wantID: Identity{App: "demo", Verified: true},
		},
		{
			name:    "apikey quota without counted uses the filter default",
			cfg:     `{"counted": "completion"}`,
			headers: map[string]string{"x-tollgate-app": "demo", "x-tollgate-token-quota": "10/1minute/flexi;scope=p"},
			want: &Quota{Key: Key{App: "demo", Product: "p", Kind: "completion_tokens"},
				Spec: window.Spec{Limit: 10, Interval: 1, Unit: window.Minute, Kind: window.Flexi}, Metric: usage.MetricCompletion, App: "demo"},
			wantID: Identity{App: "demo", Verified: true},
		},
		{
			name:    "apikey identity without token quota and no static quota",
			cfg:     `{}`,
			headers: map[string]string{"x-tollgate-app": "demo"},
			wantID:  Identity{App: "demo", Verified: true},
		},
		{
			name:    "no identity, no static quota",
			cfg:     `{}`,
			headers: map[string]string{"x-team": "a"},
		},
		{
			name:    "static quota by header",
			cfg:     static,
			headers: map[string]string{"x-team": "blue"},
			want:    &Quota{Key: Key{App: "blue", Product: "tokencount", Kind: "prompt_tokens"}, Spec: hourly, Metric: usage.MetricPrompt, App: "blue"},
			wantID:  Identity{App: "blue"},
		},
		{
			name:    "static override",
			cfg:     static,
			headers: map[string]string{"x-team": "gold"},
			want: &Quota{Key: Key{App: "gold", Product: "tokencount", Kind: "completion_tokens"},
				Spec: window.Spec{Limit: 9000, Interval: 1, Unit: window.Day, Kind: window.Calendar}, Metric: usage.MetricCompletion, App: "gold"},
			wantID: Identity{App: "gold"},
		},
		{
			name:    "static quota, header absent: anonymous budget",
			cfg:     static,
			headers: map[string]string{},
			want:    &Quota{Key: Key{App: AnonymousApp, Product: "tokencount", Kind: "prompt_tokens"}, Spec: hourly, Metric: usage.MetricPrompt, App: AnonymousApp},
			wantID:  Identity{App: AnonymousApp},
		},
		{
			name:    "identity without token quota falls back to static",
			cfg:     static,
			headers: map[string]string{"x-tollgate-app": "demo", "x-team": "blue"},
			want:    &Quota{Key: Key{App: "blue", Product: "tokencount", Kind: "prompt_tokens"}, Spec: hourly, Metric: usage.MetricPrompt, App: "blue"},
			wantID:  Identity{App: "blue", Verified: true},
		},
		{
			name:    "untrusted identity headers are ignored",
			cfg:     `{"trust_identity_headers": false, "static_quota": {"header": "x-team", "limit": 1000, "time_unit": "hour", "window": "rolling"}}`,
			headers: map[string]string{"x-tollgate-app": "demo", "x-tollgate-token-quota": "999999999/1hour/rolling;scope=chat", "x-team": "blue"},
			want:    &Quota{Key: Key{App: "blue", Product: "tokencount", Kind: "tokens"}, Spec: hourly, Metric: usage.MetricTotal, App: "blue"},
			wantID:  Identity{App: "blue"},
		},
		{
			name:    "untrusted identity headers, no static quota: unmetered",
			cfg:     `{"trust_identity_headers": false}`,
			headers: map[string]string{"x-tollgate-app": "demo", "x-tollgate-token-quota": "garbage"},
		},
		{
			name:    "global static quota",
			cfg:     global,
			headers: map[string]string{"x-team": "blue"},
			want: &Quota{Key: Key{App: GlobalApp, Product: "tokencount", Kind: "tokens"},
				Spec: window.Spec{Limit: 50, Interval: 1, Unit: window.Minute, Kind: window.Calendar}, Metric: usage.MetricTotal, App: GlobalApp},
			wantID: Identity{App: GlobalApp},
		},
		{
			name:    "malformed identity quota",
			cfg:     `{}`,
			headers: map[string]string{"x-tollgate-app": "demo", "x-tollgate-token-quota": "lots"},
			status:  500,
		},
		{
			name:    "identity quota with an invalid unit",
			cfg:     `{}`,
			headers: map[string]string{"x-tollgate-app": "demo", "x-tollgate-token-quota": "10/1fortnight/calendar;scope=p"},
			status:  500,
		},
		{
			name:    "identity quota with an invalid counted",
			cfg:     `{}`,
			headers: map[string]string{"x-tollgate-app": "demo", "x-tollgate-token-quota": "10/1hour/calendar;counted=words;scope=p"},
			status:  500,
		},
		{
			name:    "static header value too long",
			cfg:     static,
			headers: map[string]string{"x-team": string(make([]byte, 300))},
			status:  400,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.cfg)
			q, id, aerr := p.Resolve(headerFunc(tt.headers))
			if tt.status != 0 {
				require.NotNil(t, aerr)
				assert.Equal(t, tt.status, aerr.Status)
				assert.Equal(t, CodeInvalidIdentity, aerr.Code)
				assert.Nil(t, q)
				return
			}
			require.Nil(t, aerr)
			assert.Equal(t, tt.want, q)
			assert.Equal(t, tt.wantID, id)
		})
	}
}

func TestKindFor(t *testing.T) {
	assert.Equal(t, "tokens", KindFor(usage.MetricTotal))
	assert.Equal(t, "prompt_tokens", KindFor(usage.MetricPrompt))
	assert.Equal(t, "completion_tokens", KindFor(usage.MetricCompletion))
	assert.Equal(t, "cost", KindFor(usage.MetricCost))
}
