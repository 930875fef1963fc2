package policy

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/window"
)

func TestFormatReset(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{6 * time.Minute, "6m0s"},
		{time.Second, "1s"},
		{12 * time.Millisecond, "12ms"},
		{11*time.Millisecond + time.Microsecond, "12ms"},
		{45*time.Second + 123456*time.Microsecond, "45.124s"},
		{0, "0s"},
		{-time.Second, "0s"},
		{time.Nanosecond, "1ms"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, FormatReset(tt.d), "%v", tt.d)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	tests := map[time.Duration]string{0: "1", time.Millisecond: "1", time.Second: "1", 1001 * time.Millisecond: "2", 59 * time.Second: "59", time.Hour: "3600"}
	for d, want := range tests {
		assert.Equal(t, want, RetryAfterSeconds(d), "%v", d)
	}
}

func TestBinding(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	a := State{Allowed: true, Limit: 100, Remaining: 50, Reset: t0.Add(time.Minute)}
	b := State{Allowed: true, Limit: 1000, Remaining: 10, Reset: t0.Add(time.Hour)}
	c := State{Allowed: true, Limit: 10, Remaining: 10, Reset: t0.Add(time.Second)}
	d1 := State{Allowed: false, Limit: 100, RetryAfter: time.Second}
	d2 := State{Allowed: false, Limit: 1000, RetryAfter: time.Hour}
	assert.Equal(t, b, Binding([]State{a, b}), "least remaining")
	assert.Equal(t, c, Binding([]State{a, b, c}), "earliest reset on a tie")
	assert.Equal(t, d2, Binding([]State{a, d1, b, d2}), "the denial that lasts longest")
	assert.Equal(t, d1, Binding([]State{d1, a}))
	assert.Equal(t, State{}, Binding(nil))
}

func TestResponses(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := State{Limit: 100, Remaining: 0, Reset: now.Add(45 * time.Second), RetryAfter: 44500 * time.Millisecond}
	e, h := OverQuota(s, now)
	assert.Equal(t, 429, e.Status)
	assert.Equal(t, [][2]string{{HeaderLimit, "100"}, {HeaderRemaining, "0"}, {HeaderReset, "45s"}, {HeaderRetryAfter, "45"}}, h)
	var body struct {
		Error struct{ Message, Type, Code string }
	}
	require.NoError(t, json.Unmarshal(e.Body(apierror.StyleOpenAI), &body))
	assert.Equal(t, "rate_limit_error", body.Error.Type)
	assert.Equal(t, "rate_limit_exceeded", body.Error.Code)
	assert.Contains(t, body.Error.Message, "limit 100")
	assert.JSONEq(t, `{"fault":{"faultstring":"Request quota exceeded: limit 100 requests. Retry after 44.5s.","detail":{"errorcode":"policies.ratelimit.QuotaViolation"}}}`,
		string(e.Body(apierror.StyleApigee)))

	sp := &Spike{Rate: window.Rate{Count: 30, Per: time.Minute}, Burst: 1}
	e, h = SpikeArrested(sp, 1500*time.Millisecond)
	assert.Equal(t, 429, e.Status)
	assert.Equal(t, "spike_arrest_violation", e.Code)
	assert.Contains(t, e.Message, "one request every 2s")
	assert.Equal(t, [][2]string{{HeaderReset, "1.5s"}, {HeaderRetryAfter, "2"}}, h)

	e, h = Unavailable()
	assert.Equal(t, 503, e.Status)
	assert.Equal(t, "server_error", e.Type)
	assert.Equal(t, [][2]string{{HeaderRetryAfter, "1"}}, h)

	assert.Equal(t, [][2]string{{HeaderLimit, "10"}, {HeaderRemaining, "0"}, {HeaderReset, "0s"}},
		RateHeaders(State{Limit: 10, Remaining: -3, Reset: now.Add(-time.Second)}, now), "never negative")
}
