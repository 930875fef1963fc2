package reqview

import (
	"bytes"
	"strconv"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// Kind is the JSON type of a Value.
type Kind uint8

// JSON kinds. Invalid is a missing value (an absent member or element).
const (
	Invalid Kind = iota
	Null
	False
	True
	Number
	String
	Array
	Object
)

// String names the kind for error messages.
func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case False, True:
		return "boolean"
	case Number:
		return "number"
	case String:
		return "string"
	case Array:
		return "array"
	case Object:
		return "object"
	}
	return "missing"
}

// Value is one JSON value of a validated Doc: a span of its body. The zero
// Value is a missing value, so lookups chain without checks.
type Value struct {
	d          *Doc
	start, end int
	rec        int32 // a container's record in Doc.ends, or -1
	kind       Kind
	esc        bool // a string value written with escapes
}

// Kind is the value's JSON type (Invalid when missing).
func (v Value) Kind() Kind { return v.kind }

// Exists is false for a missing member or element.
func (v Value) Exists() bool { return v.kind != Invalid }

// IsNull reports a missing or null value, which OpenAI treats alike.
func (v Value) IsNull() bool { return v.kind == Invalid || v.kind == Null }

// Raw is the value's bytes in the body (strings keep their quotes).
func (v Value) Raw() []byte {
	if v.kind == Invalid {
		return nil
	}
	return v.d.body[v.start:v.end]
}

// Span is the value's byte range in the body, for in-place rewrites.
func (v Value) Span() (start, end int) { return v.start, v.end }

// Escaped reports a string value written with backslash escapes.
func (v Value) Escaped() bool { return v.esc }

// Str is the unescaped string value ("" for other kinds), as a copy that
// may outlive the body.
func (v Value) Str() string {
	if v.kind != String {
		return ""
	}
	raw := v.d.body[v.start+1 : v.end-1]
	if v.esc {
		return string(unescape(raw))
	}
	return string(raw)
}

// View is the unescaped string value without a copy when it has no escapes:
// for reading large strings (images, prompts) in place. It must not be kept
// past the body's lifetime.
func (v Value) View() string {
	if v.kind != String {
		return ""
	}
	raw := v.d.body[v.start+1 : v.end-1]
	if v.esc {
		raw = unescape(raw)
	}
	return unsafe.String(unsafe.SliceData(raw), len(raw))
}

// StrLen is the UTF-8 byte length of the unescaped string value, computed
// without allocating.
func (v Value) StrLen() int {
	if v.kind != String {
		return 0
	}
	raw := v.d.body[v.start+1 : v.end-1]
	if !v.esc {
		return len(raw)
	}
	n := 0
	for i := 0; i < len(raw); {
		if raw[i] != '\\' {
			n++
			i++
			continue
		}
		if raw[i+1] != 'u' {
			n++
			i += 2
			continue
		}
		r, _ := hex4(raw, i+2)
		i += 6
		if r >= 0xD800 && r <= 0xDBFF { // a validated pair: one 4-byte rune
			n += 4
			i += 6
			continue
		}
		n += utf8.RuneLen(r)
	}
	return n
}

// Int is an integer literal (no fraction, no exponent) that fits int64;
// other numbers are refused so the gateway and the upstream read the same count.
func (v Value) Int() (int64, bool) {
	if v.kind != Number {
		return 0, false
	}
	raw := v.d.body[v.start:v.end]
	if bytes.ContainsAny(raw, ".eE") {
		return 0, false
	}
	n, err := strconv.ParseInt(unsafe.String(unsafe.SliceData(raw), len(raw)), 10, 64)
	return n, err == nil
}

// Num is the number as a float64 (false for other kinds or on overflow).
func (v Value) Num() (float64, bool) {
	if v.kind != Number {
		return 0, false
	}
	raw := v.d.body[v.start:v.end]
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(raw), len(raw)), 64)
	return f, err == nil
}

// Bool is a boolean value; ok is false for other kinds.
func (v Value) Bool() (val, ok bool) {
	switch v.kind {
	case True:
		return true, true
	case False:
		return false, true
	}
	return false, false
}

// Get is the member of an object with exactly this unescaped key (a
// missing Value otherwise). Parse refused duplicate keys, so there is at
// most one. The object's members are indexed on first use.
func (v Value) Get(key string) Value {
	var out Value
	v.each(func(m member) bool {
		if v.d.keyIs(&m, key) {
			out = v.d.value(&m)
			return false
		}
		return true
	})
	return out
}

// Members visits an object's members in order until fn returns false.
func (v Value) Members(fn func(key string, val Value) bool) {
	v.each(func(m member) bool { return fn(v.d.key(&m), v.d.value(&m)) })
}

// each visits an object's members: through its index for the shallow
// objects readers walk (built on first use into the Doc's arena, inline
// for the first members, so small bodies such as SSE chunks are read
// without allocating), scanned in place for deeper ones.
func (v Value) each(fn func(m member) bool) {
	if v.kind != Object {
		return
	}
	if v.rec >= 0 {
		for _, m := range v.members() {
			if !fn(m) {
				return
			}
		}
		return
	}
	b := v.d.body
	i := skipWS(b, v.start+1)
	for b[i] != '}' {
		var m member
		i = v.d.memberAt(i, &m)
		if !fn(m) {
			return
		}
	}
}

// keyIs compares a member's unescaped key with key without allocating
// (unless the key was written with escapes).
func (d *Doc) keyIs(m *member, key string) bool {
	if !m.esc {
		return string(d.body[m.keyStart:m.keyEnd]) == key
	}
	return d.key(m) == key
}

// memberAt reads the member whose key starts at i and returns the offset of
// the next member's key (or of the closing brace).
func (d *Doc) memberAt(i int, m *member) int {
	b := d.body
	ke, kesc := skipString(b, i)
	m.keyStart, m.keyEnd, m.esc = uint32(i+1), uint32(ke-1), kesc
	m.ascii = !kesc && isASCII(b[i+1:ke-1])
	i = skipWS(b, ke)
	i = skipWS(b, i+1) // ':'
	val := d.valueAt(i)
	m.valStart, m.valEnd, m.kind, m.valEsc, m.rec = uint32(val.start), uint32(val.end), val.kind, val.esc, val.rec
	i = skipWS(b, val.end)
	if b[i] == ',' {
		i = skipWS(b, i+1)
	}
	return i
}

// Elems visits an array's elements in order until fn returns false.
func (v Value) Elems(fn func(i int, val Value) bool) {
	if v.kind != Array {
		return
	}
	b := v.d.body
	i := skipWS(b, v.start+1)
	if b[i] == ']' {
		return
	}
	for n := 0; ; n++ {
		e := v.d.valueAt(i)
		if !fn(n, e) {
			return
		}
		i = skipWS(b, e.end)
		if b[i] == ']' {
			return
		}
		i = skipWS(b, i+1) // ','
	}
}

// Index is the i-th element of an array (missing when out of range).
func (v Value) Index(i int) Value {
	var out Value
	v.Elems(func(n int, e Value) bool {
		if n == i {
			out = e
			return false
		}
		return true
	})
	return out
}

// Len is the number of members of an object or elements of an array.
func (v Value) Len() int {
	switch v.kind {
	case Object:
		n := 0
		v.each(func(member) bool { n++; return true })
		return n
	case Array:
		n := 0
		v.Elems(func(int, Value) bool { n++; return true })
		return n
	}
	return 0
}

// StrictKeys refuses members whose key equals one of fields only by case
// folding (as encoding/json matches struct fields) or only after unescaping:
// a parser that matches such keys would read a field the gateway did not.
func (v Value) StrictKeys(fields ...string) error {
	if err := v.strictKeys(fields); err != nil {
		return err
	}
	return nil
}

// strictKeys reports the field as Param; callers prefix its path.
func (v Value) strictKeys(fields []string) *Error {
	var err *Error
	v.each(func(m member) bool {
		err = m.strict(v.d.key(&m), fields)
		return err == nil
	})
	return err
}

// strict checks one key against the fields the gateway reads.
func (m *member) strict(key string, fields []string) *Error {
	for _, f := range fields {
		// Fields are ASCII: an ASCII key of another length cannot fold to one.
		if m.ascii && len(key) != len(f) || !equalFoldString(key, f) {
			continue
		}
		switch {
		case key != f:
			return &Error{Status: 400, Code: CodeAmbiguousJSON, Param: f, Offset: -1,
				Msg: "a key differs from " + strconv.Quote(f) + " only in case; spell it exactly " + strconv.Quote(f)}
		case m.esc:
			return &Error{Status: 400, Code: CodeAmbiguousJSON, Param: f, Offset: -1,
				Msg: "the key " + strconv.Quote(f) + " must not be written with escapes"}
		}
	}
	return nil
}

// members is a recorded object's member index, built on first use.
func (v Value) members() []member {
	d := v.d
	sp := &d.ends[v.rec]
	if sp.indexed {
		return d.arena[sp.first : sp.first+sp.n : sp.first+sp.n]
	}
	first := len(d.arena)
	b := d.body
	i := skipWS(b, v.start+1)
	for b[i] != '}' {
		var m member
		i = d.memberAt(i, &m)
		d.arena = append(d.arena, m)
	}
	sp = &d.ends[v.rec]
	sp.first, sp.n, sp.indexed = uint32(first), uint32(len(d.arena)-first), true
	return d.arena[first:len(d.arena):len(d.arena)]
}

// valueAt is the value starting at offset i of the validated body.
func (d *Doc) valueAt(i int) Value {
	b := d.body
	v := Value{d: d, start: i, rec: -1}
	switch c := b[i]; {
	case c == '"':
		v.kind = String
		v.end, v.esc = skipString(b, i)
	case c == '{' || c == '[':
		v.kind = Array
		if c == '{' {
			v.kind = Object
		}
		if v.rec = d.record(i); v.rec >= 0 {
			v.end = int(d.ends[v.rec].end)
		} else {
			v.end = skipContainer(b, i)
		}
	case c == 't':
		v.kind, v.end = True, i+4
	case c == 'f':
		v.kind, v.end = False, i+5
	case c == 'n':
		v.kind, v.end = Null, i+4
	default:
		v.kind = Number
		j := i + 1
		for j < len(b) && isNumberByte(b[j]) {
			j++
		}
		v.end = j
	}
	return v
}

func isNumberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the offset after the closing quote of the validated
// string at i, and whether it holds escapes.
func skipString(b []byte, i int) (int, bool) {
	esc := false
	for i++; ; {
		j := bytes.IndexByte(b[i:], '"')
		// The quote closes the string unless an odd run of backslashes
		// precedes it.
		q := i + j
		n := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if !esc && bytes.IndexByte(b[i:q], '\\') >= 0 {
			esc = true
		}
		if n%2 == 0 {
			return q + 1, esc
		}
		i = q + 1
	}
}

// skipContainer returns the offset after the validated object or array at
// i, counting brackets iteratively.
func skipContainer(b []byte, i int) int {
	depth := 0
	for {
		switch b[i] {
		case '"':
			i, _ = skipString(b, i)
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
		i++
	}
}

// unescape decodes the escapes of a validated string's raw bytes.
func unescape(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, _ := hex4(raw, i+2)
			i += 6
			if r >= 0xD800 && r <= 0xDBFF {
				lo, _ := hex4(raw, i+2)
				r = ((r - 0xD800) << 10) + (lo - 0xDC00) + 0x10000
				i += 6
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, raw[i+1])
		}
		i += 2
	}
	return out
}

// fold maps a key to the form encoding/json compares case-insensitively.
func fold(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		if c := b[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		out = utf8.AppendRune(out, unicode.ToUpper(unicode.ToLower(r)))
		i += n
	}
	return out
}

// equalFold is encoding/json's case-insensitive key match.
func equalFold(a, b []byte) bool { return bytes.EqualFold(a, b) }

func equalFoldString(a, b string) bool {
	return bytes.EqualFold(unsafe.Slice(unsafe.StringData(a), len(a)), unsafe.Slice(unsafe.StringData(b), len(b)))
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
