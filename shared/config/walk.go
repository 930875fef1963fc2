package config

import (
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/shared/reqview"
)

// Decoder is a configuration value that fills itself from a validated JSON
// value without reflection, so no Wasm module links encoding/json or its
// reflection. scripts/configgen writes DecodeConfig for struct types from
// their json tags (the element decoder of slices, maps and pointers of
// them); types with their own syntax (Duration) write it by hand. Decode
// takes the root object's Fields, so that no DecodeConfig is called through
// an interface and the linker drops those no field needs.
type Decoder interface {
	DecodeConfig(v reqview.Value, path string) error
}

// Fields is a struct type that decodes one member of its JSON object:
// scripts/configgen writes DecodeField for each configuration struct (a
// switch on the key's position in a constant list, so decoding costs no
// allocation per field and little code per field in a Wasm module).
type Fields interface {
	// DecodeField decodes the member key; false when no field has that name.
	DecodeField(key string, v reqview.Value, path string) (bool, error)
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

// Object decodes the object v member by member through fields. A key that
// is not exactly one field's name is refused: a typo, or a case variant
// ("Mode") that encoding/json would have matched. Duplicate keys, and keys
// that differ only in case, never get here: reqview.Parse refused the
// document. A null object leaves every field as it was, as encoding/json does.
func Object(v reqview.Value, path string, fields Fields) error {
	switch v.Kind() {
	case reqview.Null:
		return nil
	case reqview.Object:
	default:
		return typeError(v, path, "an object")
	}
	var err error
	v.Members(func(key string, val reqview.Value) bool {
		var ok bool
		ok, err = fields.DecodeField(key, val, Join(path, key))
		if err == nil && !ok {
			err = &FieldError{Path: path, Msg: "unknown field " + strconv.Quote(key)}
		}
		return err == nil
	})
	return err
}

// Index is the position of key in the comma-separated list keys (JSON
// names cannot hold commas in a struct tag), or -1: generated DecodeField
// methods switch on it, which costs less code than a switch on strings.
func Index(keys, key string) int {
	for i := 0; keys != ""; i++ {
		k, rest, _ := strings.Cut(keys, ",")
		if k == key {
			return i
		}
		keys = rest
	}
	return -1
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
	switch v.Kind() {
	case reqview.Null:
		return nil
	case reqview.Number:
	default:
		return typeError(v, path, "a non-negative integer")
	}
	raw := string(v.Raw())
	if strings.ContainsAny(raw, ".eE") {
		return &FieldError{Path: path, Msg: "cannot unmarshal number " + raw + ", want an integer"}
	}
	n, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || uint64(T(n)) != n {
		return &FieldError{Path: path, Msg: "number " + raw + " is out of range (want a non-negative integer)"}
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
		t, err := ParseTime(v.Str())
		if err != nil {
			return &FieldError{Path: path, Msg: strconv.Quote(v.Str()) + " is not an RFC 3339 time such as \"2026-01-02T15:04:05Z\""}
		}
		*p = t
		return nil
	}
	return typeError(v, path, "an RFC 3339 time string")
}

// Ptr decodes into a new T and points *p at it; null sets *p to nil.
func Ptr[T any](p **T, v reqview.Value, path string, dec func(*T, reqview.Value, string) error) error {
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

// Slice decodes an array element by element; null sets *p to nil. The
// generic part is kept small (one copy per element shape in the module):
// the walk itself is elems.
func Slice[T any](p *[]T, v reqview.Value, path string, dec func(*T, reqview.Value, string) error) error {
	n, err := container(v, path, reqview.Array, "an array")
	if err != nil || n < 0 {
		if n < 0 {
			*p = nil
		}
		return err
	}
	out := make([]T, n)
	if err := elems(v, path, func(i int, e reqview.Value, path string) error { return dec(&out[i], e, path) }); err != nil {
		return err
	}
	*p = out
	return nil
}

// Map decodes an object of arbitrary keys into a map; null sets *p to nil.
func Map[T any](p *map[string]T, v reqview.Value, path string, dec func(*T, reqview.Value, string) error) error {
	n, err := container(v, path, reqview.Object, "an object")
	if err != nil || n < 0 {
		if n < 0 {
			*p = nil
		}
		return err
	}
	out := make(map[string]T, n)
	var x T
	if err := members(v, path, func(key string, e reqview.Value, path string) error {
		x = *new(T)
		if err := dec(&x, e, path); err != nil {
			return err
		}
		out[key] = x
		return nil
	}); err != nil {
		return err
	}
	*p = out
	return nil
}

// container is the length of an array or object v of kind want, -1 for null.
func container(v reqview.Value, path string, want reqview.Kind, what string) (int, error) {
	switch v.Kind() {
	case reqview.Null:
		return -1, nil
	case want:
		return v.Len(), nil
	}
	return 0, typeError(v, path, what)
}

// elems calls fn on each element of an array with the element's path.
func elems(v reqview.Value, path string, fn func(i int, e reqview.Value, path string) error) error {
	var err error
	v.Elems(func(i int, e reqview.Value) bool {
		err = fn(i, e, path+"["+strconv.Itoa(i)+"]")
		return err == nil
	})
	return err
}

// members calls fn on each member of an object with the member's path.
func members(v reqview.Value, path string, fn func(key string, e reqview.Value, path string) error) error {
	var err error
	v.Members(func(key string, e reqview.Value) bool {
		err = fn(key, e, path+"["+strconv.Quote(key)+"]")
		return err == nil
	})
	return err
}
