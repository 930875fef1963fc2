package meter

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
)

func TestRateLimitHeaders(t *testing.T) {
	p := mustParse(t, `{}`)
	tests := []struct {
		name string
		st   State
		want [][2]string
	}{
		{"ordinary", State{Limit: 1000, Remaining: 929, ResetAfter: 61 * time.Second},
			[][2]string{{DefaultLimitHeader, "1000"}, {DefaultRemainingHeader, "929"}, {DefaultResetHeader, "1m1s"}}},
		{"sub-second reset rounded to ms", State{Limit: 10, Remaining: 0, ResetAfter: 1500*time.Millisecond + 300*time.Microsecond},
			[][2]string{{DefaultLimitHeader, "10"}, {DefaultRemainingHeader, "0"}, {DefaultResetHeader, "1.5s"}}},
		{"remaining clamped to the limit", State{Limit: 10, Remaining: 50},
			[][2]string{{DefaultLimitHeader, "10"}, {DefaultRemainingHeader, "10"}, {DefaultResetHeader, "0s"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, p.RateLimitHeaders(tt.st))
		})
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "1", time.Millisecond: "1", time.Second: "1", 1001 * time.Millisecond: "2", time.Minute: "60",
	} {
		assert.Equal(t, want, RetryAfterSeconds(d), d)
	}
}

func TestReleased(t *testing.T) {
	st := Released(State{Limit: 100, Used: 90, Remaining: 10}, 30)
	assert.Equal(t, State{Limit: 100, Used: 60, Remaining: 40}, st)
	st = Released(State{Limit: 100, Used: 10, Remaining: 90}, 30)
	assert.Equal(t, State{Limit: 100, Used: 0, Remaining: 100}, st)
}

func TestRefusal(t *testing.T) {
	p := mustParse(t, `{"error_style": "apigee"}`)
	pl := &Plan{Amount: 500, Quota: quota(1000, usage.MetricTotal)}
	e, h := p.Refusal(pl, State{Limit: 1000, Used: 900, Remaining: 100, ResetAfter: 30 * time.Second, RetryAfter: 2500 * time.Millisecond})
	assert.Equal(t, 429, e.Status)
	assert.Equal(t, CodeQuotaExceeded, e.Code)
	assert.Equal(t, "policies.ratelimit.QuotaViolation", e.Apigee)
	assert.Contains(t, e.Message, "needs 500 tokens")
	assert.Contains(t, e.Message, "100 of 1000 remain in this minute")
	assert.Equal(t, [][2]string{{DefaultLimitHeader, "1000"}, {DefaultRemainingHeader, "100"}, {DefaultResetHeader, "30s"}, {"retry-after", "3"}}, h)
	assert.Contains(t, string(e.Body(p.Style)), `"faultstring"`)

	// No retry time (it never fits now): the window's reset.
	_, h = p.Refusal(pl, State{Limit: 1000, Used: 1000, ResetAfter: 42 * time.Second})
	assert.Contains(t, h, [2]string{"retry-after", "42"})
}

func TestKeystoreUnavailable(t *testing.T) {
	e := KeystoreUnavailable()
	assert.Equal(t, 503, e.Status)
	assert.Equal(t, "server_error", e.Type)
}
