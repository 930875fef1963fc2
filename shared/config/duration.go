package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrDuration marks every refused duration.
var ErrDuration = errors.New("not a duration")

// Duration is a duration in a filter configuration, written the one way
// every filter accepts: a Go duration string such as "500ms", "2s" or "1m".
// A bare number is refused, because its unit would be a guess.
type Duration time.Duration

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s: %w (want a string such as \"500ms\" or \"2s\")", b, ErrDuration)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q: %w (want a string such as \"500ms\" or \"2s\")", s, ErrDuration)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Within returns d, or def when d is unset (zero), and refuses a value
// outside [lo, hi]; field names the setting in the error.
func (d Duration) Within(field string, def, lo, hi time.Duration) (time.Duration, error) {
	v := time.Duration(d)
	if v == 0 {
		v = def
	}
	if v < lo || v > hi {
		return 0, fmt.Errorf("%s %v: want %v to %v", field, v, lo, hi)
	}
	return v, nil
}
