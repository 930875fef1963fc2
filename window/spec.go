// Package window holds the pure time arithmetic of quota windows: calendar,
// rolling and flexi windows in UTC, and the smoothed rates of spike arrest.
//
// Nothing here does I/O or reads a clock; every function takes the instant it
// reasons about, so the counter engine, its backends and the Wasm filters can
// share one definition of "which window does this instant belong to".
package window

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/shared/config"
)

// Unit is the time unit of a quota interval.
type Unit int

// The supported time units. A week starts on Monday 00:00 UTC.
const (
	UnitInvalid Unit = iota
	Second
	Minute
	Hour
	Day
	Week
	Month
)

var unitNames = [...]string{"", "second", "minute", "hour", "day", "week", "month"}

// String returns the canonical lower-case name of the unit.
func (u Unit) String() string {
	if u <= UnitInvalid || int(u) >= len(unitNames) {
		return "invalid"
	}
	return unitNames[u]
}

// ParseUnit accepts a unit name in singular or plural form, any case.
func ParseUnit(s string) (Unit, error) {
	n := strings.ToLower(strings.TrimSpace(s))
	n = strings.TrimSuffix(n, "s")
	for i := Second; i <= Month; i++ {
		if unitNames[i] == n {
			return i, nil
		}
	}
	return UnitInvalid, config.Wrap("", ErrInvalidSpec, ": time unit "+strconv.Quote(s)+" (want second, minute, hour, day, week or month)")
}

// MarshalText writes the unit's canonical name, so JSON carries "minute".
func (u Unit) MarshalText() ([]byte, error) {
	if u <= UnitInvalid || u > Month {
		return nil, config.Wrap("", ErrInvalidSpec, ": time unit "+strconv.Itoa(int(u)))
	}
	return []byte(u.String()), nil
}

// UnmarshalText parses a unit name for JSON decoding.
func (u *Unit) UnmarshalText(b []byte) error {
	v, err := ParseUnit(string(b))
	if err != nil {
		return err
	}
	*u = v
	return nil
}

// fixed returns the length of one unit for units of fixed length; months in
// rolling windows are treated as 30 days (see Spec.Length).
func (u Unit) fixed() time.Duration {
	switch u {
	case Second:
		return time.Second
	case Minute:
		return time.Minute
	case Hour:
		return time.Hour
	case Day:
		return 24 * time.Hour
	case Week:
		return 7 * 24 * time.Hour
	case Month:
		return 30 * 24 * time.Hour
	}
	return 0
}

// Kind selects how a window moves through time.
type Kind int

// The window kinds, named as Apigee names its quota types.
const (
	KindInvalid Kind = iota
	// Calendar windows are aligned to UTC boundaries of the unit.
	Calendar
	// Rolling windows count the usage of the last interval before now.
	Rolling
	// Flexi windows start at a key's first request and last one interval.
	Flexi
)

var kindNames = [...]string{"", "calendar", "rolling", "flexi"}

// String returns the canonical lower-case name of the window kind.
func (k Kind) String() string {
	if k <= KindInvalid || int(k) >= len(kindNames) {
		return "invalid"
	}
	return kindNames[k]
}

// ParseKind accepts "calendar", "rolling" or "flexi" (any case); the empty
// string means calendar, the default window.
func ParseKind(s string) (Kind, error) {
	n := strings.ToLower(strings.TrimSpace(s))
	switch n {
	case "", "calendar":
		return Calendar, nil
	case "rolling", "rollingwindow", "sliding":
		return Rolling, nil
	case "flexi", "flexiwindow":
		return Flexi, nil
	}
	return KindInvalid, config.Wrap("", ErrInvalidSpec, ": window "+strconv.Quote(s)+" (want calendar, rolling or flexi)")
}

// MarshalText writes the kind's canonical name.
func (k Kind) MarshalText() ([]byte, error) {
	if k <= KindInvalid || k > Flexi {
		return nil, config.Wrap("", ErrInvalidSpec, ": window kind "+strconv.Itoa(int(k)))
	}
	return []byte(k.String()), nil
}

// UnmarshalText parses a window kind for JSON decoding.
func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// ErrInvalidSpec marks every validation failure of a Spec or Rate.
var ErrInvalidSpec = errors.New("invalid quota spec")

// Limits on specs, chosen so that every window fits comfortably in int64
// milliseconds and in a JSON number.
const (
	// MaxLimit is the largest allowed limit (2^53, exact in JSON numbers).
	MaxLimit = int64(1) << 53
	// MaxLength is the longest window: about 100 years.
	MaxLength = 100 * 366 * 24 * time.Hour
)

// Spec is one quota: at most Limit units of usage per Interval×Unit, counted
// in a window of the given Kind.
type Spec struct {
	// Limit is the allowed usage per window (requests or tokens); 0 blocks all.
	Limit int64 `json:"limit"`
	// Interval is how many Units one window lasts.
	Interval int `json:"interval"`
	// Unit is the time unit of Interval.
	Unit Unit `json:"timeUnit"`
	// Kind is the window type.
	Kind Kind `json:"window"`
}

// NewSpec builds and validates a Spec from its textual parts, as they appear
// in product configuration: {limit, interval, timeUnit, window}.
func NewSpec(limit int64, interval int, timeUnit, kind string) (Spec, error) {
	u, err := ParseUnit(timeUnit)
	if err != nil {
		return Spec{}, err
	}
	k, err := ParseKind(kind)
	if err != nil {
		return Spec{}, err
	}
	s := Spec{Limit: limit, Interval: interval, Unit: u, Kind: k}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// Validate reports the first problem with the spec, wrapping ErrInvalidSpec.
func (s Spec) Validate() error {
	if s.Limit < 0 || s.Limit > MaxLimit {
		return config.Wrap("", ErrInvalidSpec, ": limit "+strconv.FormatInt(s.Limit, 10)+" out of range [0, 2^53]")
	}
	if s.Interval < 1 {
		return config.Wrap("", ErrInvalidSpec, ": interval "+strconv.Itoa(s.Interval)+" must be at least 1")
	}
	if s.Unit <= UnitInvalid || s.Unit > Month {
		return config.Wrap("", ErrInvalidSpec, ": missing or unknown time unit")
	}
	if s.Kind <= KindInvalid || s.Kind > Flexi {
		return config.Wrap("", ErrInvalidSpec, ": missing or unknown window kind")
	}
	maxInterval := int64(MaxLength / s.Unit.fixed())
	if s.Unit == Month {
		maxInterval = 1200
	}
	if int64(s.Interval) > maxInterval {
		return config.Wrap("", ErrInvalidSpec, ": interval "+strconv.Itoa(s.Interval)+" "+s.Unit.String()+" is longer than 100 years")
	}
	return nil
}

// Shape names the window geometry without the limit ("calendar/5minute"):
// counters are stored per key and shape, so changing only a limit keeps the
// usage already counted.
func (s Spec) Shape() string {
	return s.Kind.String() + "/" + strconv.Itoa(s.Interval) + s.Unit.String()
}

// String returns the compact form "100/5minute/calendar" that ParseCompact reads.
func (s Spec) String() string {
	return strconv.FormatInt(s.Limit, 10) + "/" + strconv.Itoa(s.Interval) + s.Unit.String() + "/" + s.Kind.String()
}

// ParseCompact parses the form written by Spec.String and validates it.
func ParseCompact(text string) (Spec, error) {
	parts := strings.Split(text, "/")
	if len(parts) != 3 {
		return Spec{}, config.Wrap("", ErrInvalidSpec, ": "+strconv.Quote(text)+" is not limit/intervalunit/window")
	}
	limit, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return Spec{}, config.Wrap2(ErrInvalidSpec, ": limit "+strconv.Quote(parts[0])+": ", err)
	}
	i := 0
	for i < len(parts[1]) && parts[1][i] >= '0' && parts[1][i] <= '9' {
		i++
	}
	if i == 0 || i > 9 {
		return Spec{}, config.Wrap("", ErrInvalidSpec, ": interval in "+strconv.Quote(parts[1]))
	}
	interval, err := strconv.Atoi(parts[1][:i])
	if err != nil {
		return Spec{}, config.Wrap2(ErrInvalidSpec, ": interval "+strconv.Quote(parts[1][:i])+": ", err)
	}
	return NewSpec(limit, interval, parts[1][i:], parts[2])
}
