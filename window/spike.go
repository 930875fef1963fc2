package window

import (
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/shared/config"
)

// Rate is a spike-arrest rate such as "30pm": Count requests per Per.
//
// Like Apigee's SpikeArrest, a rate is smoothed rather than counted per
// window: 30pm admits one request every 2 s and 5ps one every 200 ms, so a
// burst of 30 requests in the same second is not admitted at once.
type Rate struct {
	// Count is the number of requests allowed per Per.
	Count int64
	// Per is the period of the rate: a second, a minute or an hour.
	Per time.Duration
}

// MaxRateCount caps the count of a rate; beyond it the smoothed interval
// would fall below a microsecond and mean nothing.
const MaxRateCount = 1_000_000

// ParseRate parses "<count>ps", "<count>pm" or "<count>ph" (per second, per
// minute, per hour; "ph" is a Tollgate extension to Apigee's syntax).
func ParseRate(text string) (Rate, error) {
	s := strings.ToLower(strings.TrimSpace(text))
	if len(s) < 3 {
		return Rate{}, config.Wrap("", ErrInvalidSpec, ": rate "+strconv.Quote(text)+" (want e.g. 30pm or 5ps)")
	}
	var per time.Duration
	switch s[len(s)-2:] {
	case "ps":
		per = time.Second
	case "pm":
		per = time.Minute
	case "ph":
		per = time.Hour
	default:
		return Rate{}, config.Wrap("", ErrInvalidSpec, ": rate "+strconv.Quote(text)+" must end in ps, pm or ph")
	}
	digits := s[:len(s)-2]
	for _, c := range digits {
		if c < '0' || c > '9' {
			return Rate{}, config.Wrap("", ErrInvalidSpec, ": rate "+strconv.Quote(text)+": count must be a positive integer")
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 1 || n > MaxRateCount {
		return Rate{}, config.Wrap("", ErrInvalidSpec, ": rate "+strconv.Quote(text)+": count must be between 1 and "+strconv.Itoa(MaxRateCount))
	}
	return Rate{Count: n, Per: per}, nil
}

// String returns the rate in the form ParseRate reads.
func (r Rate) String() string {
	suffix := "pm"
	switch r.Per {
	case time.Second:
		suffix = "ps"
	case time.Hour:
		suffix = "ph"
	}
	return strconv.FormatInt(r.Count, 10) + suffix
}

// Interval returns the smoothed spacing between admitted requests.
func (r Rate) Interval() time.Duration {
	if r.Count <= 0 {
		return r.Per
	}
	return r.Per / time.Duration(r.Count)
}

// SpikeArrest decides one request against a smoothed rate, as a generic cell
// rate algorithm. tat is the key's theoretical arrival time (the zero time
// for a key never seen); burst is how many requests may arrive back to back
// (values below 1 mean 1, Apigee's strict smoothing). It returns whether the
// request is admitted, the tat to store (unchanged when denied) and, when
// denied, how long until a request would be admitted.
func SpikeArrest(r Rate, tat, now time.Time, burst int64) (allowed bool, next time.Time, retryAfter time.Duration) {
	if burst < 1 {
		burst = 1
	}
	iv := r.Interval()
	if tat.Before(now) {
		tat = now
	}
	// earliest is the first instant at which this request fits the burst.
	earliest := tat.Add(-time.Duration(burst-1) * iv)
	if now.Before(earliest) {
		return false, tat, earliest.Sub(now)
	}
	return true, tat.Add(iv), 0
}
