package usage

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/tidwall/gjson"
)

// object indexes the members of one JSON object in a single pass, so that
// looking up several fields does not rescan large values (gjson's Get
// walks the object from its start on every call).
type object struct {
	small [12]member
	n     int
	more  []member
}

type member struct {
	key string
	val gjson.Result
}

// index records the members of v (nothing when v is not an object).
func (o *object) index(v gjson.Result) {
	o.n, o.more = 0, o.more[:0]
	if !v.IsObject() {
		return
	}
	v.ForEach(func(k, val gjson.Result) bool {
		if o.n < len(o.small) {
			o.small[o.n] = member{k.Str, val}
			o.n++
		} else {
			o.more = append(o.more, member{k.Str, val})
		}
		return true
	})
}

// get returns the last value of key, as most JSON decoders keep it.
func (o *object) get(key string) gjson.Result {
	for i := len(o.more) - 1; i >= 0; i-- {
		if o.more[i].key == key {
			return o.more[i].val
		}
	}
	for i := o.n - 1; i >= 0; i-- {
		if o.small[i].key == key {
			return o.small[i].val
		}
	}
	return gjson.Result{}
}

// duplicate returns the first of keys that appears more than once.
func (o *object) duplicate(keys ...string) (string, bool) {
	for _, k := range keys {
		seen := 0
		for i := 0; i < o.n; i++ {
			if o.small[i].key == k {
				seen++
			}
		}
		for i := range o.more {
			if o.more[i].key == k {
				seen++
			}
		}
		if seen > 1 {
			return k, true
		}
	}
	return "", false
}

// optCount reads an optional positive integer (null means absent).
func (o *object) optCount(key string) (int64, bool, error) {
	v := o.get(key)
	if !v.Exists() || v.Type == gjson.Null {
		return 0, false, nil
	}
	if v.Type != gjson.Number || v.Num != math.Trunc(v.Num) || v.Num < 1 || v.Num > math.MaxInt32 {
		return 0, false, bad(key, "must be a positive integer")
	}
	if (key == "n" || key == "best_of") && v.Num > maxN {
		return 0, false, bad(key, fmt.Sprintf("must be at most %d", maxN))
	}
	return int64(v.Num), true, nil
}

func (o *object) optString(key string) (string, error) {
	v := o.get(key)
	switch v.Type {
	case gjson.String:
		return v.Str, nil
	case gjson.Null:
		return "", nil
	}
	return "", bad(key, "must be a string")
}

func (o *object) optBool(key string) (bool, error) {
	v := o.get(key)
	switch v.Type {
	case gjson.True:
		return true, nil
	case gjson.False, gjson.Null:
		return false, nil
	}
	return false, bad(key, "must be a boolean")
}

// unsafeString views bytes as a string without copying; the caller must
// not keep the string (or substrings of it) past the bytes' lifetime.
func unsafeString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
