package jsonenc

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAppendString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{`q"b\`, `"q\"b\\"`},
		{"nl\n\x00", `"nl\u000a\u0000"`},
		{"\xff", `"\ufffd"`},
		{"é \u2028", `"é \u2028"`},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, string(AppendString(nil, tt.in)), tt.in)
	}
}

func TestAppendFieldsAndNumbers(t *testing.T) {
	b := []byte{'{'}
	b = AppendField(b, "a")
	b = AppendInt(b, -42)
	b = AppendField(b, "f")
	b = AppendFloat(b, 0.000104)
	b = AppendField(b, "nan")
	b = AppendFloat(b, math.NaN())
	b = append(b, '}')
	assert.Equal(t, `{"a":-42,"f":0.000104,"nan":0}`, string(b))
}

// FuzzAppendString: encoding/json reads back exactly what it would have
// produced for s (valid UTF-8 unchanged, invalid bytes as U+FFFD).
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\x00\x1f", "\xed\xa0\x80", "日本", "\u2029"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var got string
		require.NoError(t, json.Unmarshal(AppendString(nil, s), &got))
		want, err := json.Marshal(s)
		require.NoError(t, err)
		var round string
		require.NoError(t, json.Unmarshal(want, &round))
		require.Equal(t, round, got)
	})
}
