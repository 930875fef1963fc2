package window

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ts(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return v.UTC()
}

func mustSpec(t *testing.T, limit int64, interval int, unit, kind string) Spec {
	t.Helper()
	s, err := NewSpec(limit, interval, unit, kind)
	require.NoError(t, err)
	return s
}

func TestCalendarWindow(t *testing.T) {
	cases := []struct {
		name       string
		interval   int
		unit       string
		at         string
		start, end string
	}{
		{"second", 1, "second", "2024-03-10T12:34:56.789Z", "2024-03-10T12:34:56Z", "2024-03-10T12:34:57Z"},
		{"minute", 1, "minute", "2024-03-10T12:34:56Z", "2024-03-10T12:34:00Z", "2024-03-10T12:35:00Z"},
		{"5 minutes aligned to :05", 5, "minute", "2024-03-10T12:34:56Z", "2024-03-10T12:30:00Z", "2024-03-10T12:35:00Z"},
		{"5 minutes on boundary", 5, "minute", "2024-03-10T12:35:00Z", "2024-03-10T12:35:00Z", "2024-03-10T12:40:00Z"},
		{"15 minutes last ms", 15, "minute", "2024-03-10T12:44:59.999Z", "2024-03-10T12:30:00Z", "2024-03-10T12:45:00Z"},
		{"hour", 1, "hour", "2024-03-10T23:59:59Z", "2024-03-10T23:00:00Z", "2024-03-11T00:00:00Z"},
		{"6 hours", 6, "hour", "2024-03-10T13:00:00Z", "2024-03-10T12:00:00Z", "2024-03-10T18:00:00Z"},
		{"day", 1, "day", "2024-02-29T18:00:00Z", "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z"},
		{"week starts Monday", 1, "week", "2024-03-10T10:00:00Z", "2024-03-04T00:00:00Z", "2024-03-11T00:00:00Z"},
		{"week on Monday", 1, "week", "2024-03-11T00:00:00Z", "2024-03-11T00:00:00Z", "2024-03-18T00:00:00Z"},
		{"month 31 days", 1, "month", "2024-01-31T23:59:59.999Z", "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"},
		{"month leap February", 1, "month", "2024-02-29T12:00:00Z", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"},
		{"month common February", 1, "month", "2023-02-28T23:00:00Z", "2023-02-01T00:00:00Z", "2023-03-01T00:00:00Z"},
		{"month December rolls year", 1, "month", "2023-12-31T23:59:59Z", "2023-12-01T00:00:00Z", "2024-01-01T00:00:00Z"},
		{"quarter", 3, "month", "2024-05-15T00:00:00Z", "2024-04-01T00:00:00Z", "2024-07-01T00:00:00Z"},
		{"half year", 6, "month", "2024-12-31T00:00:00Z", "2024-07-01T00:00:00Z", "2025-01-01T00:00:00Z"},
		{"year as 12 months", 12, "month", "2024-02-29T00:00:00Z", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"},
		{"before epoch month", 1, "month", "1969-12-15T00:00:00Z", "1969-12-01T00:00:00Z", "1970-01-01T00:00:00Z"},
		{"before epoch minute", 1, "minute", "1969-12-31T23:59:30Z", "1969-12-31T23:59:00Z", "1970-01-01T00:00:00Z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSpec(t, 10, tc.interval, tc.unit, "calendar")
			start, end := s.CalendarWindow(ts(t, tc.at))
			assert.Equal(t, ts(t, tc.start), start, "start")
			assert.Equal(t, ts(t, tc.end), end, "end")
		})
	}
}

func TestFlexiEnd(t *testing.T) {
	cases := []struct {
		name     string
		interval int
		unit     string
		start    string
		end      string
	}{
		{"minute", 1, "minute", "2024-03-10T12:34:56.5Z", "2024-03-10T12:35:56.5Z"},
		{"day across leap day", 1, "day", "2024-02-28T10:00:00Z", "2024-02-29T10:00:00Z"},
		{"week", 2, "week", "2024-03-10T10:00:00Z", "2024-03-24T10:00:00Z"},
		{"month clamps to leap February", 1, "month", "2024-01-31T08:00:00Z", "2024-02-29T08:00:00Z"},
		{"month clamps to common February", 1, "month", "2023-01-31T08:00:00Z", "2023-02-28T08:00:00Z"},
		{"month keeps day", 1, "month", "2024-02-29T08:00:00Z", "2024-03-29T08:00:00Z"},
		{"leap day plus a year", 12, "month", "2024-02-29T08:00:00Z", "2025-02-28T08:00:00Z"},
		{"month over year end", 2, "month", "2023-12-31T00:00:00Z", "2024-02-29T00:00:00Z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSpec(t, 10, tc.interval, tc.unit, "flexi")
			assert.Equal(t, ts(t, tc.end), s.FlexiEnd(ts(t, tc.start)))
		})
	}
}

func TestRollingFrame(t *testing.T) {
	cases := []struct {
		name            string
		interval        int
		unit            string
		at              int64
		width           int64
		current, oldest int64
	}{
		{"minute has 1 s buckets", 1, "minute", 125_500, 1000, 125, 65},
		{"second has 16 ms buckets", 1, "second", 1000, 16, 62, 0},
		{"hour has 1 min buckets", 1, "hour", 3_600_000, 60_000, 60, 0},
		{"month is 30 days", 1, "month", 0, 30 * 24 * 3600 * 1000 / 60, 0, -60},
		{"negative instants floor", 1, "minute", -1, 1000, -1, -61},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSpec(t, 10, tc.interval, tc.unit, "rolling")
			assert.Equal(t, tc.width, s.BucketWidth())
			cur, old := s.RollingFrame(FromMs(tc.at))
			assert.Equal(t, tc.current, cur, "current")
			assert.Equal(t, tc.oldest, old, "oldest")
		})
	}
}

// TestRollingErrorBound checks the documented bound: usage at e is counted
// for at least the window length and at most one bucket width longer.
func TestRollingErrorBound(t *testing.T) {
	s := mustSpec(t, 10, 1, "minute", "rolling")
	l := s.Length().Milliseconds()
	for _, e := range []int64{0, 1, 999, 1000, 59_999, 123_456} {
		cur, _ := s.RollingFrame(FromMs(e))
		expiry := Ms(s.BucketExpiry(cur))
		assert.Greater(t, expiry, e+l-1, "counted for the full window (e=%d)", e)
		assert.LessOrEqual(t, expiry, e+l+s.BucketWidth(), "forgotten at most one bucket late (e=%d)", e)
		// At expiry-1 the bucket is still inside the frame, at expiry it is not.
		_, oldest := s.RollingFrame(FromMs(expiry - 1))
		assert.LessOrEqual(t, oldest, cur)
		_, oldest = s.RollingFrame(FromMs(expiry))
		assert.Greater(t, oldest, cur)
	}
}

func TestSpecValidation(t *testing.T) {
	cases := []struct {
		name     string
		limit    int64
		interval int
		unit     string
		kind     string
		wantErr  string
	}{
		{"ok", 100, 1, "minute", "calendar", ""},
		{"plural unit and default kind", 100, 2, "Hours", "", ""},
		{"zero limit blocks all", 0, 1, "day", "flexi", ""},
		{"negative limit", -1, 1, "minute", "calendar", "limit -1"},
		{"huge limit", MaxLimit + 1, 1, "minute", "calendar", "limit"},
		{"zero interval", 10, 0, "minute", "calendar", "interval 0"},
		{"bad unit", 10, 1, "fortnight", "calendar", "time unit \"fortnight\""},
		{"empty unit", 10, 1, "", "calendar", "time unit"},
		{"bad kind", 10, 1, "minute", "tumbling", "window \"tumbling\""},
		{"too long", 10, 1201, "month", "calendar", "longer than 100 years"},
		{"longest ok", 10, 1200, "month", "calendar", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSpec(tc.limit, tc.interval, tc.unit, tc.kind)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidSpec)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func TestSpecJSON(t *testing.T) {
	var s Spec
	require.NoError(t, json.Unmarshal([]byte(`{"limit":100,"interval":5,"timeUnit":"minute","window":"rolling"}`), &s))
	assert.Equal(t, Spec{Limit: 100, Interval: 5, Unit: Minute, Kind: Rolling}, s)
	b, err := json.Marshal(s)
	require.NoError(t, err)
	assert.JSONEq(t, `{"limit":100,"interval":5,"timeUnit":"minute","window":"rolling"}`, string(b))
	err = json.Unmarshal([]byte(`{"limit":1,"interval":1,"timeUnit":"eon"}`), &s)
	require.ErrorIs(t, err, ErrInvalidSpec)
}

func TestCompactRoundTrip(t *testing.T) {
	cases := []string{"100/1minute/calendar", "0/12month/flexi", "9007199254740992/3600second/rolling"}
	for _, c := range cases {
		t.Run(c, func(t *testing.T) {
			s, err := ParseCompact(c)
			require.NoError(t, err)
			assert.Equal(t, c, s.String())
		})
	}
	for _, bad := range []string{"", "1/1minute", "x/1minute/calendar", "1/minute/calendar", "1/1minute/x", "1/99999999999minute/calendar"} {
		_, err := ParseCompact(bad)
		assert.ErrorIs(t, err, ErrInvalidSpec, bad)
	}
}

func TestParseRate(t *testing.T) {
	cases := []struct {
		in       string
		count    int64
		interval time.Duration
		wantErr  bool
	}{
		{"30pm", 30, 2 * time.Second, false},
		{"5ps", 5, 200 * time.Millisecond, false},
		{"100ph", 100, 36 * time.Second, false},
		{" 1PS ", 1, time.Second, false},
		{"7ps", 7, time.Second / 7, false},
		{"0pm", 0, 0, true},
		{"-1pm", 0, 0, true},
		{"+3pm", 0, 0, true},
		{"30", 0, 0, true},
		{"pm", 0, 0, true},
		{"30pd", 0, 0, true},
		{"1000001ps", 0, 0, true},
		{"99999999999999999999pm", 0, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ParseRate(tc.in)
			if tc.wantErr {
				require.ErrorIs(t, err, ErrInvalidSpec)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.count, r.Count)
			assert.Equal(t, tc.interval, r.Interval())
		})
	}
}

func TestSpikeArrestDecisions(t *testing.T) {
	r, err := ParseRate("30pm")
	require.NoError(t, err)
	t0 := ts(t, "2024-03-10T12:00:00Z")
	steps := []struct {
		at      time.Duration
		allowed bool
		retry   time.Duration
	}{
		{0, true, 0},
		{500 * time.Millisecond, false, 1500 * time.Millisecond},
		{1999 * time.Millisecond, false, time.Millisecond},
		{2 * time.Second, true, 0},
		{10 * time.Second, true, 0}, // idle time does not bank credit
		{10*time.Second + time.Millisecond, false, 1999 * time.Millisecond},
	}
	var tat time.Time
	for _, st := range steps {
		ok, next, retry := SpikeArrest(r, tat, t0.Add(st.at), 1)
		assert.Equal(t, st.allowed, ok, "at %v", st.at)
		assert.Equal(t, st.retry, retry, "retry at %v", st.at)
		tat = next
	}
}

// TestSpikeArrestPace feeds a request every 10 ms for 10 s and checks the
// admitted count matches the smoothed rate, with and without a burst.
func TestSpikeArrestPace(t *testing.T) {
	cases := []struct {
		rate  string
		burst int64
		want  int
	}{
		{"5ps", 1, 50},
		{"30pm", 1, 5},
		{"5ps", 3, 52},
		{"100ps", 1, 1000},
	}
	for _, tc := range cases {
		t.Run(tc.rate, func(t *testing.T) {
			r, err := ParseRate(tc.rate)
			require.NoError(t, err)
			t0 := ts(t, "2024-03-10T12:00:00Z")
			var tat time.Time
			admitted := 0
			for i := 0; i < 1000; i++ {
				ok, next, _ := SpikeArrest(r, tat, t0.Add(time.Duration(i)*10*time.Millisecond), tc.burst)
				if ok {
					admitted++
				}
				tat = next
			}
			assert.Equal(t, tc.want, admitted)
		})
	}
}
