package config

import (
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type sample struct {
	Name  string `json:"name"`
	Inner struct {
		N int `json:"n"`
	} `json:"inner"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    sample
		wantErr string
		is      error
	}{
		{name: "object", in: `{"name":"a","inner":{"n":2}}`, want: sample{Name: "a", Inner: struct {
			N int `json:"n"`
		}{N: 2}}},
		{name: "white space around", in: " \n{\"name\":\"a\"}\n\t ", want: sample{Name: "a"}},
		{name: "null keeps defaults", in: `null`},
		{name: "blank is EOF", in: "  \n", wantErr: "EOF", is: io.EOF},
		{name: "unknown field", in: `{"nmae":"a"}`, wantErr: `unknown field "nmae"`},
		{name: "unknown nested field", in: `{"inner":{"m":1}}`, wantErr: `unknown field "m"`},
		{name: "second document", in: `{} {}`, wantErr: "trailing data", is: ErrTrailingData},
		{name: "stray closing brace", in: `{}}`, wantErr: "trailing data", is: ErrTrailingData},
		{name: "stray closing bracket", in: `{} ]`, wantErr: "trailing data", is: ErrTrailingData},
		{name: "trailing garbage", in: `{} x`, wantErr: "trailing data", is: ErrTrailingData},
		{name: "syntax error names the byte", in: `{"name": "a",}`, wantErr: "at byte 14"},
		{name: "type error names the field", in: `{"inner":{"n":"two"}}`, wantErr: "inner.n"},
		{name: "truncated", in: `{"name":`, wantErr: "unexpected EOF", is: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got sample
			err := Decode([]byte(tt.in), &got)
			if tt.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, tt.want, got)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			if tt.is != nil {
				assert.True(t, errors.Is(err, tt.is), "%v is not %v", err, tt.is)
			}
		})
	}
}

// FuzzDecode: Decode never panics, and whatever it accepts is exactly one
// well-formed JSON document that encoding/json reads back the same.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"name":"a","inner":{"n":1}}`, `{} {}`, `{}}`, `{"x":1}`, `[1]`, `null`, `{"name":`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got sample
		if err := Decode(data, &got); err != nil {
			return
		}
		var doc any
		require.NoError(t, json.Unmarshal(data, &doc), "accepted %q", data)
		var again sample
		require.NoError(t, json.Unmarshal(data, &again))
		assert.Equal(t, again, got)
	})
}
