package config

import (
	"errors"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/shared/reqview"
)

// ErrDuration marks every refused duration.
var ErrDuration = errors.New("not a duration")

// Duration is a duration in a filter configuration, written the one way
// every filter accepts: a Go duration string such as "500ms", "2s" or "1m".
// A bare number is refused, because its unit would be a guess.
type Duration time.Duration

// DecodeConfig reads a duration string; null is refused like any other
// non-string.
func (d *Duration) DecodeConfig(v reqview.Value, path string) error {
	if v.Kind() == reqview.String {
		return d.set(v.Str(), path)
	}
	return &FieldError{Path: path, Msg: "cannot unmarshal " + v.Kind().String() + " " + string(v.Raw()) + ": " + ErrDuration.Error() + " (a duration must be a string such as \"500ms\" or \"2s\")", err: ErrDuration}
}

func (d *Duration) set(s, path string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return &FieldError{Path: path, Msg: strconv.Quote(s) + ": " + ErrDuration.Error() + " (want a string such as \"500ms\" or \"2s\")", err: ErrDuration}
	}
	*d = Duration(v)
	return nil
}

// UnmarshalJSON reads a duration string, for native code that decodes a
// configuration with encoding/json.
func (d *Duration) UnmarshalJSON(b []byte) error {
	doc, err := reqview.Parse(b, reqview.Limits{MaxBytes: len(b) + 1, MaxDepth: 1})
	if err != nil || doc.Root().Kind() != reqview.String {
		return Wrap(string(b)+": ", ErrDuration, " (want a string such as \"500ms\" or \"2s\")")
	}
	return d.set(doc.Root().Str(), "")
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, time.Duration(d).String()), nil
}

// Within returns d, or def when d is unset (zero), and refuses a value
// outside [lo, hi]; field names the setting in the error.
func (d Duration) Within(field string, def, lo, hi time.Duration) (time.Duration, error) {
	v := time.Duration(d)
	if v == 0 {
		v = def
	}
	if v < lo || v > hi {
		return 0, errors.New(field + " " + v.String() + ": want " + lo.String() + " to " + hi.String())
	}
	return v, nil
}
