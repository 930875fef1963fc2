package config

import (
	"errors"
	"time"
)

// ErrTime marks a refused RFC 3339 timestamp.
var ErrTime = errors.New("not an RFC 3339 time")

// ParseTime reads an RFC 3339 timestamp ("2026-01-02T15:04:05Z", with an
// optional fraction of up to nine digits and a "Z" or ±hh:mm offset). It
// accepts a subset of what time.Parse(time.RFC3339Nano, s) accepts and
// returns the same instant, without linking time's general layout parser
// (about 50 KB of a Wasm module). A "Z" time is in UTC; an offset time is
// in a fixed zone of that offset.
func ParseTime(s string) (time.Time, error) {
	// 2006-01-02T15:04:05 is 19 bytes; the zone takes at least one more.
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, ErrTime
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	hour, ok4 := digits(s[11:13])
	minute, ok5 := digits(s[14:16])
	sec, ok6 := digits(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 ||
		day > daysIn(time.Month(month), year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, ErrTime
	}
	rest := s[19:]
	nsec := 0
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return time.Time{}, ErrTime
		}
		frac, _ := digits(rest[1:n])
		for i := n; i < 10; i++ {
			frac *= 10
		}
		nsec, rest = frac, rest[n:]
	}
	switch {
	case rest == "Z":
		return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), nil
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := digits(rest[1:3])
		om, ok2 := digits(rest[4:6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return time.Time{}, ErrTime
		}
		off := (oh*60 + om) * 60
		if rest[0] == '-' {
			off = -off
		}
		t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC).Add(-time.Duration(off) * time.Second)
		return t.In(time.FixedZone("", off)), nil
	}
	return time.Time{}, ErrTime
}

// digits reads a run of ASCII digits (at most 9, so it cannot overflow).
func digits(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// daysIn is the number of days of month in year (Gregorian).
func daysIn(m time.Month, year int) int {
	switch m {
	case time.February:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}
