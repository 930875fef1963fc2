package config

import (
	"strconv"
	"time"

	"github.com/tollgate/tollgate/shared/reqview"
)

// Decoder is a configuration type that fills itself from a validated JSON
// value without reflection, so no Wasm module links encoding/json or its
// reflection. scripts/configgen writes DecodeConfig for struct types from
// their json tags; types with their own syntax (Duration) write it by hand.
type Decoder interface {
	DecodeConfig(v reqview.Value, path string) error
}

// Field is one member of a configuration object: its exact JSON name and
// the decoder of its value.
type Field struct {
	Name string
	dec  func(v reqview.Value, path string) error
}

// F is the field name decoded into *p by dec.
func F[T any](name string, p *T, dec func(*T, reqview.Value, string) error) Field {
	return Field{Name: name, dec: func(v reqview.Value, path string) error { return dec(p, v, path) }}
}

// FieldError is a refused configuration value: Path names it the way the
// configuration is written ("keystore.timeout", "rules[2].match").
type FieldError struct {
	Path string
	Msg  string
	err  error // what errors.Is matches, when the refusal has a sentinel
}

// Unwrap is the sentinel of the refusal (ErrDuration), or nil.
func (e *FieldError) Unwrap() error { return e.err }

// Error prefixes the message with the path of the offending value.
func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Object decodes the object v member by member. A key that is not exactly
// one field's name is refused: a typo, or a case variant ("Mode") that
// encoding/json would have matched. Duplicate keys, and keys that differ
// only in case, never get here: reqview.Parse refused the document. A null
// object leaves every field as it was, as encoding/json does.
func Object(v reqview.Value, path string, fields ...Field) error {
	switch v.Kind() {
	case reqview.Null:
		return nil
	case reqview.Object:
	default:
		return typeError(v, path, "an object")
	}
	var err error
	v.Members(func(key string, val reqview.Value) bool {
		for i := range fields {
			if fields[i].Name == key {
				err = fields[i].dec(val, Join(path, key))
				return err == nil
			}
		}
		err = &FieldError{Path: path, Msg: "unknown field " + strconv.Quote(key)}
		return false
	})
	return err
}

// Join is the path of member key inside path.
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// typeError refuses a value of the wrong JSON type; the wording keeps
// encoding/json's "cannot unmarshal <kind>" so existing checks still match.
func typeError(v reqview.Value, path, want string) error {
	return &FieldError{Path: path, Msg: "cannot unmarshal " + v.Kind().String() + ", want " + want}
}

// String decodes a JSON string (null leaves *p as it was).
func String[T ~string](p *T, v reqview.Value, path string) error {
	switch v.Kind() {
	case reqview.Null:
		return nil
	case reqview.String:
		*p = T(v.Str())
		return nil
	}
	return typeError(v, path, "a string")
}

// Bool decodes true or false (null leaves *p as it was).
func Bool[T ~bool](p *T, v reqview.Value, path string) error {
	if v.Kind() == reqview.Null {
		return nil
	}
	b, ok := v.Bool()
	if !ok {
		return typeError(v, path, "true or false")
	}
	*p = T(b)
	return nil
}

// Int decodes an integer literal that fits T: a fraction, an exponent or
// an overflow is refused, as encoding/json refuses them for integer fields.
func Int[T ~int | ~int8 | ~int16 | ~int32 | ~int64](p *T, v reqview.Value, path string) error {
	n, err := integer(v, path)
	if err != nil || v.Kind() == reqview.Null {
		return err
	}
	if int64(T(n)) != n {
		return &FieldError{Path: path, Msg: "number " + string(v.Raw()) + " overflows the field"}
	}
	*p = T(n)
	return nil
}

// Uint decodes a non-negative integer literal that fits T.
func Uint[T ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64](p *T, v reqview.Value, path string) error {
	n, err := integer(v, path)
	if err != nil || v.Kind() == reqview.Null {
		return err
	}
	if n < 0 || int64(T(n)) != n {
		return &FieldError{Path: path, Msg: "number " + string(v.Raw()) + " is out of range (want a non-negative integer)"}
	}
	*p = T(n)
	return nil
}

func integer(v reqview.Value, path string) (int64, error) {
	switch v.Kind() {
	case reqview.Null:
		return 0, nil
	case reqview.Number:
		n, ok := v.Int()
		if !ok {
			return 0, &FieldError{Path: path, Msg: "cannot unmarshal number " + string(v.Raw()) + ", want an integer"}
		}
		return n, nil
	}
	return 0, typeError(v, path, "an integer")
}

// Float decodes a JSON number.
func Float[T ~float64](p *T, v reqview.Value, path string) error {
	switch v.Kind() {
	case reqview.Null:
		return nil
	case reqview.Number:
		f, ok := v.Num()
		if !ok {
			return &FieldError{Path: path, Msg: "number " + string(v.Raw()) + " is out of range"}
		}
		*p = T(f)
		return nil
	}
	return typeError(v, path, "a number")
}

// Time decodes an RFC 3339 timestamp string, as encoding/json reads a time.Time.
func Time(p *time.Time, v reqview.Value, path string) error {
	switch v.Kind() {
	case reqview.Null:
		return nil
	case reqview.String:
		t, err := time.Parse(time.RFC3339, v.Str())
		if err != nil {
			return &FieldError{Path: path, Msg: strconv.Quote(v.Str()) + " is not an RFC 3339 time such as \"2026-01-02T15:04:05Z\""}
		}
		*p = t
		return nil
	}
	return typeError(v, path, "an RFC 3339 time string")
}

// Ptr decodes into a new T and points *p at it; null sets *p to nil.
func Ptr[T any](dec func(*T, reqview.Value, string) error) func(**T, reqview.Value, string) error {
	return func(p **T, v reqview.Value, path string) error {
		if v.Kind() == reqview.Null {
			*p = nil
			return nil
		}
		x := new(T)
		if err := dec(x, v, path); err != nil {
			return err
		}
		*p = x
		return nil
	}
}

// Slice decodes an array element by element; null sets *p to nil.
func Slice[T any](dec func(*T, reqview.Value, string) error) func(*[]T, reqview.Value, string) error {
	return func(p *[]T, v reqview.Value, path string) error {
		switch v.Kind() {
		case reqview.Null:
			*p = nil
			return nil
		case reqview.Array:
		default:
			return typeError(v, path, "an array")
		}
		out := make([]T, v.Len())
		var err error
		v.Elems(func(i int, e reqview.Value) bool {
			err = dec(&out[i], e, path+"["+strconv.Itoa(i)+"]")
			return err == nil
		})
		if err != nil {
			return err
		}
		*p = out
		return nil
	}
}

// Map decodes an object of arbitrary keys into a map; null sets *p to nil.
func Map[T any](dec func(*T, reqview.Value, string) error) func(*map[string]T, reqview.Value, string) error {
	return func(p *map[string]T, v reqview.Value, path string) error {
		switch v.Kind() {
		case reqview.Null:
			*p = nil
			return nil
		case reqview.Object:
		default:
			return typeError(v, path, "an object")
		}
		out := make(map[string]T)
		var err error
		v.Members(func(key string, e reqview.Value) bool {
			var x T
			if err = dec(&x, e, path+"["+strconv.Quote(key)+"]"); err != nil {
				return false
			}
			out[key] = x
			return true
		})
		if err != nil {
			return err
		}
		*p = out
		return nil
	}
}
