// Package jsontest reads fields of JSON documents in tests by a dotted
// path ("error.code", "results.0.used"), over the canonical view
// (shared/reqview), so tests need no second JSON library.
package jsontest

import (
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/shared/reqview"
)

// Field is one looked-up value; a missing or unreadable one reads as zero.
type Field struct{ v reqview.Value }

// Valid reports whether b is one JSON document the canonical view accepts.
func Valid(b []byte) bool {
	_, err := reqview.Parse(b, reqview.Limits{MaxBytes: len(b) + 1, MaxDepth: 1024})
	return err == nil
}

// Get looks up path in b: object members by key, array elements by
// decimal index, separated by dots ("" is the root).
func Get(b []byte, path string) Field {
	d, err := reqview.Parse(b, reqview.Limits{MaxBytes: len(b) + 1, MaxDepth: 1024})
	if err != nil {
		return Field{}
	}
	v := d.Root()
	if path == "" {
		return Field{v}
	}
	for _, seg := range strings.Split(path, ".") {
		if i, err := strconv.Atoi(seg); err == nil && v.Kind() == reqview.Array {
			v = v.Index(i)
		} else {
			v = v.Get(seg)
		}
	}
	return Field{v}
}

// Exists reports whether the path names a value (null included).
func (f Field) Exists() bool { return f.v.Exists() }

// Str is a string value ("" for other kinds).
func (f Field) Str() string { return f.v.Str() }

// Int is a number truncated to an int64 (0 for other kinds).
func (f Field) Int() int64 {
	if n, ok := f.v.Int(); ok {
		return n
	}
	x, _ := f.v.Num()
	return int64(x)
}

// Bool is true only for the JSON literal true.
func (f Field) Bool() bool {
	b, _ := f.v.Bool()
	return b
}

// Members lists an object's members as raw JSON values, in order.
func (f Field) Members() map[string][]byte {
	out := map[string][]byte{}
	f.v.Members(func(k string, v reqview.Value) bool {
		out[k] = v.Raw()
		return true
	})
	return out
}

// Raw is the value's JSON text ("" when missing).
func (f Field) Raw() string { return string(f.v.Raw()) }

// Len is the number of elements of an array or members of an object (0 for
// other kinds).
func (f Field) Len() int { return f.v.Len() }

// Pluck lists the string member key of each element of an array, in order
// ("" where an element has none): Get(b, "items").Pluck("name").
func (f Field) Pluck(key string) []string {
	var out []string
	f.v.Elems(func(_ int, e reqview.Value) bool {
		out = append(out, e.Get(key).Str())
		return true
	})
	return out
}
