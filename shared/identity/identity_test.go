package identity

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/window"
)

func TestQueryRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		q    Quota
		text string
	}{
		{"request", Quota{Limit: 60, Interval: 1, TimeUnit: "minute", Window: "calendar", Scope: "chat"}, "60/1minute/calendar;scope=chat"},
		{"token", Quota{Limit: 1000, Interval: 5, TimeUnit: "hour", Window: "rolling", Counted: "total", Scope: "chat:POST:/v1/a;b=c"}, "1000/5hour/rolling;counted=total;scope=chat:POST:/v1/a;b=c"},
		{"empty scope", Quota{Limit: 0, Interval: 1, TimeUnit: "month", Window: "flexi"}, "0/1month/flexi;scope="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.text, tt.q.String())
			back, err := ParseQuota(tt.text)
			require.NoError(t, err)
			assert.Equal(t, tt.q, back)
			spec, _, _ := cutSpec(tt.text)
			_, err = window.ParseCompact(spec)
			require.NoError(t, err, "the window package reads the spec part")
		})
	}
}

func cutSpec(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ';' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func TestParseQuotaErrors(t *testing.T) {
	for _, bad := range []string{
		"", "60", "60/minute/calendar;scope=x", "x/1minute/calendar;scope=a", "-1/1minute/calendar;scope=a",
		"60/1/calendar;scope=a", "60/0minute/calendar;scope=a", "60/1minute/;scope=a", "60/1minute/calendar",
		"60/1minute/calendar;counted", "60/1minute/calendar/x;scope=a", "60/1234567890123456789minute/calendar;scope=a",
	} {
		_, err := ParseQuota(bad)
		require.ErrorIs(t, err, ErrInvalidQuota, bad)
	}
	q, err := ParseQuota("1/1day/calendar;future=1;scope=s")
	require.NoError(t, err, "unknown parameters are skipped")
	assert.Equal(t, "s", q.Scope)
}

func TestHeaders(t *testing.T) {
	h := Headers{App: "X-App"}.WithDefaults()
	assert.Equal(t, "x-app", h.App)
	assert.Equal(t, HeaderTokenQuota, h.TokenQuota)
	require.NoError(t, h.Validate())
	assert.Len(t, h.All(), 7)
	require.Error(t, Headers{App: "a", Developer: "a"}.WithDefaults().Validate())
	require.Error(t, Headers{App: "a b"}.WithDefaults().Validate())
	require.Error(t, Headers{App: ":authority"}.WithDefaults().Validate())
}

func TestPairsAndParse(t *testing.T) {
	h := DefaultHeaders()
	id := Identity{
		App: "demo", Developer: "ada@example.com", Product: "chat", KeyID: "key_1",
		AllowedModels: []string{"gemma-*", "llama-3"},
		RequestQuota:  &Quota{Limit: 60, Interval: 1, TimeUnit: "minute", Window: "calendar", Scope: "chat"},
		TokenQuota:    &Quota{Limit: 9, Interval: 1, TimeUnit: "day", Window: "calendar", Counted: "prompt", Scope: "chat"},
	}
	pairs := id.Pairs(h)
	assert.Equal(t, [][2]string{
		{HeaderApp, "demo"}, {HeaderDeveloper, "ada@example.com"}, {HeaderProduct, "chat"}, {HeaderKeyID, "key_1"},
		{HeaderAllowedModels, "gemma-*,llama-3"},
		{HeaderRequestQuota, "60/1minute/calendar;scope=chat"},
		{HeaderTokenQuota, "9/1day/calendar;counted=prompt;scope=chat"},
	}, pairs)
	m := map[string]string{}
	for _, p := range pairs {
		m[p[0]] = p[1]
	}
	back, ok, err := Parse(h, func(n string) string { return m[n] })
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, id, back)

	_, ok, err = Parse(h, func(string) string { return "" })
	require.NoError(t, err)
	assert.False(t, ok)

	m[HeaderTokenQuota] = "garbage"
	_, ok, err = Parse(h, func(n string) string { return m[n] })
	assert.True(t, ok)
	require.ErrorIs(t, err, ErrInvalidQuota)

	assert.Equal(t, [][2]string{{HeaderApp, "a"}}, Identity{App: "a", Developer: "bad\r\nvalue"}.Pairs(h), "control characters are never sent")
}

// FuzzParseQuota: any header value parses or errors; what parses re-renders
// to a value that parses to the same quota.
func FuzzParseQuota(f *testing.F) {
	f.Add("60/1minute/calendar;scope=chat")
	f.Add("1/2hour/rolling;counted=total;scope=a;b")
	f.Add("5/1x/y;z=1;scope=")
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuota(s)
		if err != nil {
			return
		}
		again, err := ParseQuota(q.String())
		require.NoError(t, err)
		require.Equal(t, q, again)
	})
}
