// Package reqview is the canonical request view: the one way every Tollgate
// filter reads a JSON body. It validates a body in a single iterative pass
// (nothing recurses on client-controlled data) and refuses every body that
// two reasonable JSON parsers could read differently, so that the gateway
// judges exactly the request the upstream runs.
package reqview

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/tollgate/tollgate/shared/apierror"
)

// Default limits: large enough for multimodal chat bodies, small enough that
// one request cannot exhaust a Wasm VM.
const (
	DefaultMaxBytes = 8 << 20 // 8 MiB, the filters' request-body limit
	DefaultMaxDepth = 64      // real OpenAI requests nest fewer than 12 levels
)

// Limits bound what a body may demand; zero values take the defaults.
type Limits struct {
	MaxBytes int // larger bodies are refused with 413
	MaxDepth int // deeper nesting is refused with 400
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// Error codes of refusals, stable for clients, metrics and tests.
const (
	CodeInvalidJSON   = "invalid_json"      // not one RFC 8259 JSON document in valid UTF-8
	CodeAmbiguousJSON = "ambiguous_json"    // duplicate keys, case or escape variants, lone surrogates
	CodeTooDeep       = "json_too_deep"     // nesting over Limits.MaxDepth
	CodeTooLarge      = "request_too_large" // over Limits.MaxBytes
	CodeInvalidValue  = "invalid_value"     // a field the gateway reads has the wrong type or range
)

// Error is a refusal that filters answer as an OpenAI invalid_request_error,
// so every filter refuses the same body with the same words.
type Error struct {
	Status int    // 400, or 413 when the body is over MaxBytes
	Code   string // one of the Code constants
	Param  string // the offending parameter ("messages[0].content"); "" for the whole body
	Msg    string // what is wrong, without echoing client data
	Offset int    // byte offset of the problem, -1 when not positional
}

// API is the client-facing error, so every filter answers a refusal alike.
func (e *Error) API() *apierror.Error {
	return &apierror.Error{Status: e.Status, Code: e.Code, Param: e.Param, Type: apierror.TypeFor(e.Status), Message: e.Error()}
}

// Error formats the refusal for the client's error message.
func (e *Error) Error() string {
	s := "invalid request body"
	if e.Param != "" {
		s += ": " + e.Param
	}
	s += ": " + e.Msg
	if e.Offset >= 0 {
		s += " (at byte " + strconv.Itoa(e.Offset) + ")"
	}
	return s
}

func syntaxErr(off int, msg string) *Error {
	return &Error{Status: 400, Code: CodeInvalidJSON, Msg: msg, Offset: off}
}

func ambiguous(off int, msg string) *Error {
	return &Error{Status: 400, Code: CodeAmbiguousJSON, Msg: msg, Offset: off}
}

// Doc is a validated JSON body. Values are spans of the body, which must not
// be modified while the Doc is in use.
type Doc struct {
	body []byte
	root Value
	// ends are the shallow containers the validating pass recorded, in
	// order of their starts: their ends, and for objects the member index
	// built on first use, so lookups never rescan large values.
	ends []span
	// arena backs the member indexes. Members hold offsets, not pointers,
	// so indexes cost the garbage collector nothing.
	arena []member

	endsBuf    [16]span
	arenaBuf   [24]member
	stackBuf   [16]byte
	keyBaseBuf [16]int
	recsBuf    [16]int
	keysBuf    [32]keyRec
}

// span is a recorded container: its byte range and, once indexed, where
// its members sit in the arena.
type span struct {
	start, end uint32
	first, n   uint32 // members in arena[first:first+n]
	indexed    bool
}

// record is the index in ends of the container starting at start, or -1.
func (d *Doc) record(start int) int32 {
	lo, hi := 0, len(d.ends)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if int(d.ends[m].start) < start {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(d.ends) && int(d.ends[lo].start) == start {
		return int32(lo)
	}
	return -1
}

// member is one object member, as offsets into the body.
type member struct {
	keyStart, keyEnd uint32 // the raw key, quotes excluded
	valStart, valEnd uint32
	rec              int32 // the value's record in ends, or -1
	kind             Kind
	esc              bool // the key was written with escapes
	ascii            bool // the key is ASCII, so case folding cannot change its length
	valEsc           bool // a string value written with escapes
}

// key is the member's unescaped key: a view of the body unless escaped.
func (d *Doc) key(m *member) string {
	raw := d.body[m.keyStart:m.keyEnd]
	if m.esc {
		raw = unescape(raw)
	}
	return unsafe.String(unsafe.SliceData(raw), len(raw))
}

// value is the member's value.
func (d *Doc) value(m *member) Value {
	return Value{d: d, start: int(m.valStart), end: int(m.valEnd), kind: m.kind, esc: m.valEsc, rec: m.rec}
}

// Root is the top-level value.
func (d *Doc) Root() Value { return d.root }

// Body is the validated body the Doc views.
func (d *Doc) Body() []byte { return d.body }

// Parse validates body and returns its view. It refuses invalid UTF-8, lone
// surrogates in \u escapes, trailing data, nesting deeper than MaxDepth,
// bodies larger than MaxBytes, duplicate keys in any object and two keys of
// one object that are equal under encoding/json's case folding: each is a
// body that two parsers may read differently.
func Parse(body []byte, lim Limits) (*Doc, error) {
	// The Doc carries the parser's buffers too, so a typical body costs one
	// allocation.
	d := new(Doc)
	if err := d.Parse(body, lim); err != nil {
		return nil, err
	}
	return d, nil
}

// Parse validates body like the package's Parse into d, reusing d's
// buffers: a filter that reads many bodies in a row (SSE events of one
// stream) keeps one Doc and allocates nothing per event. Values of the
// previous body are invalid afterwards.
func (d *Doc) Parse(body []byte, lim Limits) error {
	lim = lim.withDefaults()
	if len(body) > lim.MaxBytes {
		return &Error{Status: 413, Code: CodeTooLarge, Msg: "the body is larger than " + strconv.Itoa(lim.MaxBytes) + " bytes", Offset: -1}
	}
	if !utf8.Valid(body) {
		return &Error{Status: 400, Code: CodeInvalidJSON, Msg: "the body is not valid UTF-8", Offset: invalidUTF8At(body)}
	}
	ends, arena := d.ends, d.arena
	if cap(ends) == 0 {
		ends, arena = d.endsBuf[:0], d.arenaBuf[:0]
	}
	d.body, d.root = body, Value{}
	p := parser{b: body, maxDepth: lim.MaxDepth, stack: d.stackBuf[:0], keyBase: d.keyBaseBuf[:0], keys: d.keysBuf[:0],
		recs: d.recsBuf[:0], ends: ends[:0]}
	start, kind, esc, err := p.run()
	d.ends, d.arena = p.ends[:len(p.ends):cap(p.ends)], arena[:0]
	if err != nil {
		d.body, d.ends = nil, d.ends[:0]
		return err
	}
	d.root = Value{d: d, start: start, end: p.rootEnd, kind: kind, esc: esc, rec: -1}
	if kind == Object || kind == Array {
		d.root.rec = d.record(start)
	}
	return nil
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// keyRec is a key of an object still open during validation.
type keyRec struct {
	start, end int // raw span, quotes excluded
	esc        bool
}

// parser is the single-pass validator. Its only stacks are explicit slices
// bounded by maxDepth, never the call stack.
type parser struct {
	b        []byte
	i        int
	maxDepth int
	stack    []byte // '{' or '[' per open container
	keyBase  []int  // per open object: index in keys where its keys start
	keys     []keyRec
	rootEnd  int
	ends     []span // recorded containers, in order of their starts
	recs     []int  // per open container: its index in ends, or -1
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// run validates the whole body and returns the root value's start, kind and
// (for a string root) whether it holds escapes.
func (p *parser) run() (int, Kind, bool, error) {
	p.ws()
	rootStart := p.i
	var rootKind Kind
	rootEsc, first := false, true
	const (
		stValue = iota // expecting a value
		stAfter        // a value just ended
		stKey          // expecting an object key
	)
	state := stValue
	for {
		switch state {
		case stValue:
			if p.i >= len(p.b) {
				return 0, 0, false, syntaxErr(p.i, "unexpected end of JSON")
			}
			c := p.b[p.i]
			var k Kind
			switch {
			case c == '{' || c == '[':
				if len(p.stack) >= p.maxDepth {
					return 0, 0, false, &Error{Status: 400, Code: CodeTooDeep, Offset: p.i, Msg: "nesting is deeper than " + strconv.Itoa(p.maxDepth) + " levels"}
				}
				p.open(c)
				p.i++
				p.ws()
				if c == '{' {
					k = Object
					p.keyBase = append(p.keyBase, len(p.keys))
					if p.i < len(p.b) && p.b[p.i] == '}' {
						p.i++
						p.closeObject() // empty: nothing to check
						state = stAfter
					} else {
						state = stKey
					}
				} else {
					k = Array
					if p.i < len(p.b) && p.b[p.i] == ']' {
						p.i++
						p.close()
						state = stAfter
					} else {
						state = stValue
					}
				}
			case c == '"':
				k = String
				esc, err := p.str()
				if err != nil {
					return 0, 0, false, err
				}
				if len(p.stack) == 0 {
					rootEsc = esc
				}
				state = stAfter
			case c == 't':
				k = True
				if err := p.lit("true"); err != nil {
					return 0, 0, false, err
				}
				state = stAfter
			case c == 'f':
				k = False
				if err := p.lit("false"); err != nil {
					return 0, 0, false, err
				}
				state = stAfter
			case c == 'n':
				k = Null
				if err := p.lit("null"); err != nil {
					return 0, 0, false, err
				}
				state = stAfter
			case c == '-' || (c >= '0' && c <= '9'):
				k = Number
				if err := p.number(); err != nil {
					return 0, 0, false, err
				}
				state = stAfter
			default:
				return 0, 0, false, syntaxErr(p.i, "invalid character "+strconv.QuoteRune(rune(c))+" looking for a value")
			}
			if first {
				rootKind, first = k, false
			}
		case stAfter:
			if len(p.stack) == 0 {
				p.rootEnd = p.i
				p.ws()
				if p.i != len(p.b) {
					return 0, 0, false, syntaxErr(p.i, "trailing data after the JSON value")
				}
				return rootStart, rootKind, rootEsc, nil
			}
			p.ws()
			if p.i >= len(p.b) {
				return 0, 0, false, syntaxErr(p.i, "unexpected end of JSON")
			}
			c := p.b[p.i]
			top := p.stack[len(p.stack)-1]
			switch {
			case c == ',':
				p.i++
				p.ws()
				if top == '{' {
					state = stKey
				} else {
					state = stValue
				}
			case c == '}' && top == '{':
				p.i++
				if err := p.closeObject(); err != nil {
					return 0, 0, false, err
				}
			case c == ']' && top == '[':
				p.i++
				p.close()
			default:
				return 0, 0, false, syntaxErr(p.i, "invalid character "+strconv.QuoteRune(rune(c))+" after a value")
			}
		case stKey:
			if p.i >= len(p.b) || p.b[p.i] != '"' {
				return 0, 0, false, syntaxErr(p.i, "expected a string key")
			}
			ks := p.i
			esc, err := p.str()
			if err != nil {
				return 0, 0, false, err
			}
			p.keys = append(p.keys, keyRec{start: ks + 1, end: p.i - 1, esc: esc})
			p.ws()
			if p.i >= len(p.b) || p.b[p.i] != ':' {
				return 0, 0, false, syntaxErr(p.i, "expected ':' after an object key")
			}
			p.i++
			p.ws()
			state = stValue
		}
	}
}

// closeObject pops the innermost object and refuses duplicate or
// case-folded-equal keys in it.
func (p *parser) closeObject() *Error {
	base := p.keyBase[len(p.keyBase)-1]
	keys := p.keys[base:]
	var err *Error
	if len(keys) > 1 {
		err = p.checkKeys(keys)
	}
	p.keys = p.keys[:base]
	p.keyBase = p.keyBase[:len(p.keyBase)-1]
	p.close()
	return err
}

// open pushes a container starting at p.i; the shallow ones are recorded so
// that readers find their ends without rescanning them.
func (p *parser) open(c byte) {
	p.stack = append(p.stack, c)
	rec := -1
	if len(p.stack) <= recordDepth && len(p.ends) < maxRecorded {
		rec = len(p.ends)
		p.ends = append(p.ends, span{start: uint32(p.i)})
	}
	p.recs = append(p.recs, rec)
}

// close pops the innermost container, which ended just before p.i.
func (p *parser) close() {
	if rec := p.recs[len(p.recs)-1]; rec >= 0 {
		p.ends[rec].end = uint32(p.i)
	}
	p.recs = p.recs[:len(p.recs)-1]
	p.stack = p.stack[:len(p.stack)-1]
}

// Containers whose ends the validating pass records: the levels readers
// walk (root, messages, a message, its content, a part, a part's object),
// bounded in number so a body of many tiny arrays costs bounded memory.
const (
	recordDepth = 6
	maxRecorded = 1 << 16
)

// checkKeys finds two keys of one object that a parser could confuse: equal
// after unescaping, or equal under encoding/json's case-insensitive matching.
func (p *parser) checkKeys(keys []keyRec) *Error {
	name := func(k keyRec) []byte {
		if k.esc {
			return unescape(p.b[k.start:k.end])
		}
		return p.b[k.start:k.end]
	}
	if len(keys) <= 16 {
		var names [16][]byte
		for i, k := range keys {
			names[i] = name(k)
		}
		for i := 1; i < len(keys); i++ {
			for j := 0; j < i; j++ {
				if equalFold(names[i], names[j]) {
					return keyClash(keys[i].start-1, names[i], names[j])
				}
			}
		}
		return nil
	}
	seen := make(map[string]int, len(keys))
	for i, k := range keys {
		n := name(k)
		f := string(fold(n))
		if j, ok := seen[f]; ok {
			return keyClash(k.start-1, n, name(keys[j]))
		}
		seen[f] = i
	}
	return nil
}

func keyClash(off int, a, b []byte) *Error {
	if string(a) == string(b) {
		return ambiguous(off, "duplicate key "+strconv.Quote(string(a)))
	}
	return ambiguous(off, "keys "+strconv.Quote(string(b))+" and "+strconv.Quote(string(a))+" differ only in case")
}

func (p *parser) lit(word string) *Error {
	if len(p.b)-p.i < len(word) || string(p.b[p.i:p.i+len(word)]) != word {
		return syntaxErr(p.i, "invalid literal")
	}
	p.i += len(word)
	return nil
}

// number validates an RFC 8259 number.
func (p *parser) number() *Error {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.b) && p.b[p.i] == '0':
		p.i++
	case p.i < len(p.b) && p.b[p.i] >= '1' && p.b[p.i] <= '9':
		p.digits()
	default:
		return syntaxErr(start, "invalid number")
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if p.digits() == 0 {
			return syntaxErr(start, "invalid number")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if p.digits() == 0 {
			return syntaxErr(start, "invalid number")
		}
	}
	return nil
}

func (p *parser) digits() int {
	n := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

// str validates a string starting at its opening quote and reports whether
// it holds escapes. The body is already known to be valid UTF-8.
func (p *parser) str() (bool, *Error) {
	start := p.i
	p.i++
	esc := false
	for p.i < len(p.b) {
		// Skip 8 plain bytes at a time: most of a large body is string
		// content (prompts, base64 images) without quotes or escapes.
		for p.i+8 <= len(p.b) && !special8(binary.LittleEndian.Uint64(p.b[p.i:])) {
			p.i += 8
		}
		if p.i >= len(p.b) {
			break
		}
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return esc, nil
		case c < 0x20:
			return false, syntaxErr(p.i, "control character in a string")
		case c == '\\':
			esc = true
			if err := p.escape(); err != nil {
				return false, err
			}
		default:
			p.i++
		}
	}
	return false, syntaxErr(start, "unterminated string")
}

// escape validates one backslash escape; surrogates must come in pairs.
func (p *parser) escape() *Error {
	at := p.i
	if p.i+1 >= len(p.b) {
		return syntaxErr(at, "unterminated escape")
	}
	switch p.b[p.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		p.i += 2
		return nil
	case 'u':
	default:
		return syntaxErr(at, "invalid escape")
	}
	r, ok := hex4(p.b, p.i+2)
	if !ok {
		return syntaxErr(at, "invalid \\u escape")
	}
	p.i += 6
	switch {
	case r >= 0xDC00 && r <= 0xDFFF:
		return ambiguous(at, "lone surrogate in a \\u escape")
	case r >= 0xD800 && r <= 0xDBFF:
		if p.i+1 >= len(p.b) || p.b[p.i] != '\\' || p.b[p.i+1] != 'u' {
			return ambiguous(at, "lone surrogate in a \\u escape")
		}
		lo, ok := hex4(p.b, p.i+2)
		if !ok || lo < 0xDC00 || lo > 0xDFFF {
			return ambiguous(at, "lone surrogate in a \\u escape")
		}
		p.i += 6
	}
	return nil
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// special8 reports whether any byte of the word is '"', '\\' or below 0x20
// (the SWAR zero-byte and less-than tests; exact for "any").
func special8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	zero := func(v uint64) uint64 { return (v - ones) &^ v & highs }
	return zero(x^(ones*'"'))|zero(x^(ones*'\\'))|((x-ones*0x20)&^x&highs) != 0
}
