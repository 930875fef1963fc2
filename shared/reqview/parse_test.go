package reqview

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseRefuses(t *testing.T) {
	deepObj := strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat(`}`, 5000)
	deepArr := strings.Repeat(`[`, 100000) + strings.Repeat(`]`, 100000)
	cases := []struct {
		name, body string
		status     int
		msg        string
	}{
		{"empty", ``, 400, "unexpected end"},
		{"trailing data", `{"a":1} {"b":2}`, 400, "trailing data"},
		{"trailing garbage", `{"a":1}x`, 400, "trailing data"},
		{"duplicate key", `{"model":"a","model":"b"}`, 400, `duplicate key "model"`},
		{"nested duplicate", `{"x":[{"k":1,"k":2}]}`, 400, `duplicate key "k"`},
		{"escaped duplicate", `{"model":"a","mod\u0065l":"b"}`, 400, `duplicate key "model"`},
		{"case variant", `{"model":"a","Model":"b"}`, 400, "differ only in case"},
		{"kelvin fold", `{"max_tokens":1,"max_to\u212aens":40}`, 400, "differ only in case"},
		{"long s fold", `{"stream":false,"\u017ftream":true}`, 400, "differ only in case"},
		{"many keys clash", manyKeys(40) + `,"K0":1}`, 400, "differ only in case"},
		{"deep objects", deepObj, 400, "nesting is deeper than 64"},
		{"deep arrays", deepArr, 400, "nesting is deeper than 64"},
		{"invalid utf8", "{\"a\":\"\xff\"}", 400, "not valid UTF-8"},
		{"overlong utf8", "{\"a\":\"\xc0\xaf\"}", 400, "not valid UTF-8"},
		{"lone high surrogate", `{"a":"\ud800"}`, 400, "lone surrogate"},
		{"lone low surrogate", `{"a":"\udc00x"}`, 400, "lone surrogate"},
		{"reversed pair", `{"a":"\udc00\ud800"}`, 400, "lone surrogate"},
		{"high then non-low", `{"a":"\ud800\u0041"}`, 400, "lone surrogate"},
		{"bom", "\ufeff{}", 400, "invalid character"},
		{"control char", "{\"a\":\"\x01\"}", 400, "control character"},
		{"bad escape", `{"a":"\x"}`, 400, "invalid escape"},
		{"short unicode", `{"a":"\u12"}`, 400, "invalid \\u escape"},
		{"leading zero", `{"a":01}`, 400, "after a value"},
		{"bare minus", `{"a":-}`, 400, "invalid number"},
		{"dot no digits", `{"a":1.}`, 400, "invalid number"},
		{"nan", `{"a":NaN}`, 400, "looking for a value"},
		{"single quotes", `{'a':1}`, 400, "expected a string key"},
		{"trailing comma", `{"a":1,}`, 400, "expected a string key"},
		{"trailing comma array", `[1,]`, 400, "looking for a value"},
		{"unterminated", `{"a":"b`, 400, "unterminated string"},
		{"missing colon", `{"a" 1}`, 400, "expected ':'"},
		{"comment", `{"a":1/*x*/}`, 400, "after a value"},
		{"truncated", `{"a":[1,2`, 400, "unexpected end"},
		{"mismatched", `{"a":[1,2}`, 400, "after a value"},
		{"true prefix", `{"a":tru}`, 400, "invalid literal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.body), Limits{})
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("Parse(%.60q) = %v, want *Error", c.body, err)
			}
			if re.Status != c.status || !strings.Contains(re.Error(), c.msg) {
				t.Fatalf("Parse(%.60q) = %d %q, want %d containing %q", c.body, re.Status, re.Error(), c.status, c.msg)
			}
		})
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + string(rune('0'+i%10)) + strings.Repeat("x", i/10) + `":1`)
	}
	return b.String()
}

func TestParseLimits(t *testing.T) {
	body := []byte(`{"a":"` + strings.Repeat("x", 100) + `"}`)
	_, err := Parse(body, Limits{MaxBytes: 50})
	var re *Error
	if !errors.As(err, &re) || re.Status != 413 {
		t.Fatalf("oversized body: got %v, want 413", err)
	}
	if _, err := Parse(body, Limits{MaxBytes: len(body)}); err != nil {
		t.Fatalf("body at the limit: %v", err)
	}
	nested := []byte(strings.Repeat(`[`, 10) + strings.Repeat(`]`, 10))
	if _, err := Parse(nested, Limits{MaxDepth: 10}); err != nil {
		t.Fatalf("depth at the limit: %v", err)
	}
	if _, err := Parse(nested, Limits{MaxDepth: 9}); err == nil {
		t.Fatal("depth over the limit accepted")
	}
}

func TestParseAccepts(t *testing.T) {
	for _, body := range []string{
		`{}`, `[]`, `"x"`, `0`, `-0.5e+10`, `true`, `null`, ` {"a" : [ 1 , {"b":null} ] } `,
		`{"a":"\ud83d\ude00","b":"\u00e9\n\t\"\\\/"}`,
		`{"k":1,"K2":2,"model":"x"}`,
		manyKeys(40) + `}`,
		`{"emoji":"😀","mixed":"é"}`,
	} {
		if _, err := Parse([]byte(body), Limits{}); err != nil {
			t.Errorf("Parse(%q): %v", body, err)
		}
	}
}

func TestValues(t *testing.T) {
	body := []byte(`{"s":"a\"b\u00e9\ud83d\ude00","i":42,"neg":-7,"f":1.5,"e":1e2,"big":123456789012345678901,
		"t":true,"n":null,"arr":[1,"two",{"x":[3]}],"obj":{"k":"v"},"empty":{},"ea":[]}`)
	d, err := Parse(body, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	r := d.Root()
	if got := r.Get("s").Str(); got != "a\"bé😀" {
		t.Errorf("Str = %q", got)
	}
	if got, want := r.Get("s").StrLen(), len("a\"bé😀"); got != want {
		t.Errorf("StrLen = %d, want %d", got, want)
	}
	if got := r.Get("s").View(); got != "a\"bé😀" {
		t.Errorf("View = %q", got)
	}
	if n, ok := r.Get("i").Int(); !ok || n != 42 {
		t.Errorf("Int = %d %v", n, ok)
	}
	if n, ok := r.Get("neg").Int(); !ok || n != -7 {
		t.Errorf("neg Int = %d %v", n, ok)
	}
	for _, k := range []string{"f", "e", "big", "s", "missing"} {
		if _, ok := r.Get(k).Int(); ok {
			t.Errorf("Int(%s) accepted", k)
		}
	}
	if f, ok := r.Get("e").Num(); !ok || f != 100 {
		t.Errorf("Num = %v %v", f, ok)
	}
	if b, ok := r.Get("t").Bool(); !ok || !b {
		t.Errorf("Bool = %v %v", b, ok)
	}
	if !r.Get("n").IsNull() || r.Get("n").Kind() != Null || !r.Get("missing").IsNull() || r.Get("missing").Exists() {
		t.Error("null/missing kinds wrong")
	}
	arr := r.Get("arr")
	if arr.Len() != 3 || arr.Index(1).Str() != "two" || arr.Index(3).Exists() {
		t.Errorf("array access wrong: len %d", arr.Len())
	}
	if n, _ := arr.Index(2).Get("x").Index(0).Int(); n != 3 {
		t.Errorf("nested = %d", n)
	}
	if string(r.Get("obj").Raw()) != `{"k":"v"}` || r.Get("empty").Len() != 0 || r.Get("ea").Len() != 0 {
		t.Error("raw or empty containers wrong")
	}
	s, e := r.Get("obj").Get("k").Span()
	if string(body[s:e]) != `"v"` {
		t.Errorf("Span = %q", body[s:e])
	}
	if r.Len() != 12 {
		t.Errorf("root Len = %d", r.Len())
	}
}

func TestStrictKeys(t *testing.T) {
	cases := []struct {
		body string
		ok   bool
	}{
		{`{"model":"a"}`, true},
		{`{"Model":"a"}`, false},
		{`{"MODEL":"a"}`, false},
		{`{"mod\u0065l":"a"}`, false},
		{`{"modeł":"a"}`, true},
		{`{"models":"a"}`, true},
		{`{"max_to\u212aens":1}`, false},
	}
	for _, c := range cases {
		d, err := Parse([]byte(c.body), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		err = d.Root().StrictKeys("model", "max_tokens")
		if (err == nil) != c.ok {
			t.Errorf("StrictKeys(%s) = %v, want ok=%v", c.body, err, c.ok)
		}
	}
}

// toAny converts a Value like encoding/json decodes into any (test-only
// recursion, bounded by the 64-level depth limit).
func toAny(t *testing.T, v Value) any {
	t.Helper()
	switch v.Kind() {
	case Null:
		return nil
	case True:
		return true
	case False:
		return false
	case Number:
		f, ok := v.Num()
		if !ok {
			return "overflow"
		}
		return f
	case String:
		return v.Str()
	case Array:
		out := []any{}
		v.Elems(func(_ int, e Value) bool { out = append(out, toAny(t, e)); return true })
		return out
	case Object:
		out := map[string]any{}
		v.Members(func(k string, e Value) bool { out[k] = toAny(t, e); return true })
		return out
	}
	t.Fatalf("invalid kind at %d", v.start)
	return nil
}

// FuzzParse differentially checks Parse against encoding/json: every body
// Parse accepts is valid JSON that encoding/json decodes to the same values,
// and every body encoding/json refuses Parse refuses too.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"model":"x","messages":[{"role":"user","content":"hi"}]}`,
		`{"a":[1,2.5,-3e4,true,false,null,"\u00e9\ud83d\ude00\n"]}`,
		`{"model":"a","Model":"b"}`, `[[[[]]]]`, `"\ud800"`, `{"a":1}x`, `1e999`,
		"{\"a\":\"\xff\"}", `{"k":1,"K":2}`, `{"ſ":1,"S":2}`, ` 0 `, `{"a":{"b":{"c":[{}]}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := Parse(body, Limits{MaxDepth: 32})
		valid := json.Valid(body)
		if err == nil && !valid {
			t.Fatalf("Parse accepted what encoding/json refuses: %q", body)
		}
		if err != nil {
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not *Error", err)
			}
			return
		}
		var want any
		if err := json.Unmarshal(body, &want); err != nil {
			if strings.Contains(err.Error(), "cannot unmarshal number") {
				return // 1e999: encoding/json refuses the value, not the syntax
			}
			t.Fatalf("encoding/json: %v on %q", err, body)
		}
		got := toAny(t, d.Root())
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("differ on %q:\n got %#v\nwant %#v", body, got, want)
		}
	})
}

func TestSpecial8(t *testing.T) {
	for c := 0; c < 256; c++ {
		word := []byte("abcdefgh")
		for pos := range 8 {
			w := append([]byte(nil), word...)
			w[pos] = byte(c)
			x := uint64(0)
			for i := 7; i >= 0; i-- {
				x = x<<8 | uint64(w[i])
			}
			want := c == '"' || c == '\\' || c < 0x20
			if got := special8(x); got != want {
				t.Fatalf("special8 byte %#x at %d = %v", c, pos, got)
			}
		}
	}
}

func TestDocReuse(t *testing.T) {
	var d Doc
	for i, body := range []string{`{"a":{"b":1}}`, `[1,{"c":"x"}]`, `{"a":`, `{"z":true,"a":{"b":2}}`} {
		err := d.Parse([]byte(body), Limits{})
		if i == 2 {
			if err == nil {
				t.Fatal("truncated body accepted")
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
	}
	if n, _ := d.Root().Get("a").Get("b").Int(); n != 2 {
		t.Fatalf("reused Doc read %d, want 2", n)
	}
	event := []byte(`{"choices":[{"delta":{"content":"hi"}}],"usage":null}`)
	if got := testing.AllocsPerRun(100, func() {
		if err := d.Parse(event, Limits{}); err != nil {
			t.Fatal(err)
		}
		_ = d.Root().Get("choices").Index(0).Get("delta").Get("content").View()
	}); got != 0 {
		t.Fatalf("reused Doc allocates %v times per event", got)
	}
}
