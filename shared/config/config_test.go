package config

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/reqview"
)

type sample struct {
	Name  string `json:"name"`
	Inner inner  `json:"inner"`
}

type inner struct {
	N int `json:"n"`
}

func (s *sample) DecodeConfig(v reqview.Value, path string) error {
	return Object(v, path, s)
}

func (s *sample) DecodeField(key string, v reqview.Value, path string) (bool, error) {
	switch key {
	case "name":
		return true, String(&s.Name, v, path)
	case "inner":
		return true, s.Inner.DecodeConfig(v, path)
	}
	return false, nil
}

func (i *inner) DecodeConfig(v reqview.Value, path string) error {
	return Object(v, path, i)
}

func (i *inner) DecodeField(key string, v reqview.Value, path string) (bool, error) {
	if key != "n" {
		return false, nil
	}
	return true, Int(&i.N, v, path)
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    sample
		wantErr string
		is      error
	}{
		{name: "object", in: `{"name":"a","inner":{"n":2}}`, want: sample{Name: "a", Inner: inner{N: 2}}},
		{name: "white space around", in: " \n{\"name\":\"a\"}\n\t ", want: sample{Name: "a"}},
		{name: "null keeps defaults", in: `null`},
		{name: "blank is EOF", in: "  \n", wantErr: "EOF", is: io.EOF},
		{name: "unknown field", in: `{"nmae":"a"}`, wantErr: `unknown field "nmae"`},
		{name: "unknown nested field", in: `{"inner":{"m":1}}`, wantErr: `unknown field "m"`},
		{name: "second document", in: `{} {}`, wantErr: "trailing data", is: ErrTrailingData},
		{name: "stray closing brace", in: `{}}`, wantErr: "trailing data", is: ErrTrailingData},
		{name: "stray closing bracket", in: `{} ]`, wantErr: "trailing data", is: ErrTrailingData},
		{name: "trailing garbage", in: `{} x`, wantErr: "trailing data", is: ErrTrailingData},
		{name: "syntax error names the byte", in: `{"name": "a",}`, wantErr: "expected a string key (at byte 13)"},
		{name: "type error names the field", in: `{"inner":{"n":"two"}}`, wantErr: "inner.n"},
		{name: "case variant of a field", in: `{"Name":"a"}`, wantErr: `unknown field "Name"`},
		{name: "duplicate key", in: `{"name":"a","name":"b"}`, wantErr: `duplicate key "name"`},
		{name: "keys differing in case", in: `{"inner":{"n":1,"N":2}}`, wantErr: "differ only in case"},
		{name: "wrong type", in: `{"name":1}`, wantErr: "name: cannot unmarshal number, want a string"},
		{name: "fraction for an integer", in: `{"inner":{"n":1.5}}`, wantErr: "inner.n: cannot unmarshal number 1.5"},
		{name: "not an object", in: `[]`, wantErr: "cannot unmarshal array, want an object"},
		{name: "too deep", in: strings.Repeat(`{"inner":`, 40), wantErr: "deeper than"},
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
