package route

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScanTop(t *testing.T) {
	tests := []struct {
		in     string
		valid  bool
		object bool
		models int
	}{
		{`{}`, true, true, 0},
		{` {"model":"a"} `, true, true, 1},
		{`{"model":"a","x":{"model":"b"},"model":1}`, true, true, 2},
		{`{"mod\u0065l":"a"}`, true, true, 1},
		{`[]`, true, false, 0},
		{`"s"`, true, false, 0},
		{`-0.5e+10`, true, false, 0},
		{`true`, true, false, 0},
		{`null`, true, false, 0},
		{`{"a":[1,2,{"b":null}],"c":"\"\\\/\b\f\n\r\t\u00e9"}`, true, true, 0},
		{``, false, false, 0},
		{`{`, false, true, 0},
		{`{"a":1,}`, false, true, 0},
		{`{"a" 1}`, false, true, 0},
		{`{a:1}`, false, true, 0},
		{`[1,]`, false, false, 0},
		{`01`, false, false, 0},
		{`1.`, false, false, 0},
		{`1e`, false, false, 0},
		{`-`, false, false, 0},
		{`NaN`, false, false, 0},
		{`"\x"`, false, false, 0},
		{`"\u12"`, false, false, 0},
		{"\"a\tb\"", false, false, 0},
		{"\"\xff\"", false, false, 0},
		{`{} {}`, false, true, 0},
		{`tru`, false, false, 0},
		{strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth), true, false, 0},
		{strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1), false, false, 0},
	}
	for _, tt := range tests {
		name := tt.in
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			top, err := scanTop([]byte(tt.in))
			if !tt.valid {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.object, top.object)
			assert.Len(t, top.models, tt.models)
		})
	}
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
			require.Equal(t, want, special8(x), "byte %#x at %d", c, pos)
		}
	}
}

// FuzzScanTop checks the scanner against encoding/json: the same verdict on
// validity (plus UTF-8), and the same top-level "model" members.
func FuzzScanTop(f *testing.F) {
	f.Add([]byte(`{"model":"a","tools":[{"x":"y\u0000"}]}`))
	f.Add([]byte(`{"model":1,"model":"b"}`))
	f.Add([]byte(`[1e5,-0,0.1,"\ud800"]`))
	f.Add(loadFixture(f, "chat.json"))
	f.Fuzz(func(t *testing.T, b []byte) {
		top, err := scanTop(b)
		want := json.Valid(b) && utf8.Valid(b)
		require.Equal(t, want, err == nil, "validity of %q", b)
		if err != nil {
			return
		}
		var obj map[string]json.RawMessage
		isObj := json.Unmarshal(b, &obj) == nil
		require.Equal(t, isObj, top.object)
		if !isObj {
			return
		}
		raw, has := obj["model"]
		if !has {
			require.Empty(t, top.models)
			return
		}
		require.NotEmpty(t, top.models)
		if len(top.models) == 1 {
			m := top.models[0]
			require.Equal(t, strings.TrimSpace(string(raw)), string(b[m.start:m.end]))
			var s string
			if json.Unmarshal(raw, &s) == nil {
				require.True(t, m.isString)
				require.Equal(t, s, stringValue(b, m))
			}
		}
	})
}
