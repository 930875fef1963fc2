package window

import "time"

// RollingBuckets is how many sub-buckets a rolling window is split into.
//
// A rolling window of length W keeps one counter per bucket of width
// W/RollingBuckets (at least 1 ms), aligned to the Unix epoch. Usage recorded
// at instant e lands in bucket floor(e/width) and stays counted until the end
// of that bucket plus W, that is for at least W and at most W+width. The
// count therefore never under-counts the exact sliding window: no interval of
// length W ever admits more than the limit, and usage is forgotten at most
// W/RollingBuckets late (1 s for a 1-minute window). Memory per key is bounded
// by RollingBuckets+2 buckets.
const RollingBuckets = 60

// Length returns the duration of one window of a fixed-length shape. Calendar
// and flexi month windows follow the calendar instead (see CalendarWindow and
// FlexiEnd); for rolling windows a month is 30 days, because a sliding window
// needs one fixed length.
func (s Spec) Length() time.Duration {
	return time.Duration(s.Interval) * s.Unit.fixed()
}

// Ms converts an instant to Unix milliseconds, the resolution of all counters.
func Ms(t time.Time) int64 { return t.UnixMilli() }

// FromMs converts Unix milliseconds back to a UTC instant.
func FromMs(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// floorDiv divides rounding towards negative infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// mondayOriginMs is 1970-01-05T00:00Z, the first Monday after the epoch.
const mondayOriginMs = 4 * 24 * 3600 * 1000

// CalendarWindow returns the calendar window [start, end) that contains t.
//
// Windows are aligned in UTC: seconds, minutes, hours and days to multiples of
// Interval units since the Unix epoch (so 5 minutes starts at :00, :05, …, and
// 6 hours at 00:00, 06:00, …, whenever Interval divides the next larger
// unit); weeks to multiples of Interval weeks since Monday 1970-01-05; months
// to multiples of Interval months since January 1970 (3 months gives
// calendar quarters, 12 months calendar years).
func (s Spec) CalendarWindow(t time.Time) (start, end time.Time) {
	t = t.UTC()
	if s.Unit == Month {
		m := int64(t.Year()-1970)*12 + int64(t.Month()-1)
		k := floorDiv(m, int64(s.Interval)) * int64(s.Interval)
		y := 1970 + floorDiv(k, 12)
		mo := k - floorDiv(k, 12)*12
		start = time.Date(int(y), time.Month(mo+1), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, s.Interval, 0)
	}
	l := s.Length().Milliseconds()
	origin := int64(0)
	if s.Unit == Week {
		origin = mondayOriginMs
	}
	st := origin + floorDiv(Ms(t)-origin, l)*l
	return FromMs(st), FromMs(st + l)
}

// FlexiEnd returns when a flexi window that starts at start ends: Interval
// units later, with months added on the calendar and clamped to the last day
// of a shorter month (Jan 31 + 1 month = Feb 28 or 29, same time of day).
func (s Spec) FlexiEnd(start time.Time) time.Time {
	start = start.UTC()
	if s.Unit != Month {
		return start.Add(s.Length())
	}
	return AddMonthsClamped(start, s.Interval)
}

// AddMonthsClamped adds n calendar months to t, keeping the day of month
// where it exists and using the last day of the target month otherwise.
func AddMonthsClamped(t time.Time, n int) time.Time {
	y, m, d := t.Date()
	first := time.Date(y, m+time.Month(n), 1, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
	last := first.AddDate(0, 1, -1).Day()
	if d > last {
		d = last
	}
	return first.AddDate(0, 0, d-1)
}

// BucketWidth returns the width of one rolling sub-bucket in milliseconds.
func (s Spec) BucketWidth() int64 {
	w := s.Length().Milliseconds() / RollingBuckets
	if w < 1 {
		w = 1
	}
	return w
}

// RollingFrame returns, for instant t, the bucket index that usage at t is
// charged to and the oldest bucket index still counted at t.
func (s Spec) RollingFrame(t time.Time) (current, oldest int64) {
	bw := s.BucketWidth()
	now := Ms(t)
	return floorDiv(now, bw), floorDiv(now-s.Length().Milliseconds(), bw)
}

// BucketExpiry returns the instant at which rolling bucket idx stops being
// counted: the end of the bucket plus the window length.
func (s Spec) BucketExpiry(idx int64) time.Time {
	return FromMs((idx+1)*s.BucketWidth() + s.Length().Milliseconds())
}
