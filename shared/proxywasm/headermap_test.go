package proxywasm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHeaderMapRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		pairs [][2]string
	}{
		{"empty", [][2]string{}},
		{"one", [][2]string{{":path", "/v1/chat"}}},
		{"empty value", [][2]string{{"x-empty", ""}, {"a", "b"}}},
		{"repeated", [][2]string{{"set-cookie", "a=1"}, {"set-cookie", "b=2"}}},
		{"binary-ish", [][2]string{{"k", "v\xff\x00w"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeHeaderMap(EncodeHeaderMap(tt.pairs))
			require.NoError(t, err)
			assert.Equal(t, tt.pairs, got)
		})
	}
}

func TestDecodeHeaderMapMalformed(t *testing.T) {
	tests := map[string][]byte{
		"short":          {1, 0},
		"count too big":  {255, 255, 255, 255},
		"length too big": {1, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 'a', 0, 0},
	}
	for name, buf := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeHeaderMap(buf)
			assert.Error(t, err)
		})
	}
	got, err := DecodeHeaderMap(nil)
	assert.NoError(t, err)
	assert.Empty(t, got)
}

func TestEncodePropertyPath(t *testing.T) {
	assert.Equal(t, []byte("request\x00path"), EncodePropertyPath([]string{"request", "path"}))
	assert.Equal(t, []byte("plugin_name"), EncodePropertyPath([]string{"plugin_name"}))
	assert.Empty(t, EncodePropertyPath(nil))
}

func TestStatusToError(t *testing.T) {
	assert.NoError(t, StatusToError(StatusOK))
	assert.ErrorIs(t, StatusToError(StatusCASMismatch), ErrCASMismatch)
	assert.ErrorIs(t, StatusToError(StatusNotFound), ErrNotFound)
	assert.NotErrorIs(t, StatusToError(StatusNotFound), ErrEmpty)
	assert.Contains(t, StatusToError(Status(99)).Error(), "99")
}

func FuzzDecodeHeaderMap(f *testing.F) {
	f.Add(EncodeHeaderMap([][2]string{{"a", "b"}, {"content-type", "application/json"}}))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, buf []byte) {
		pairs, err := DecodeHeaderMap(buf)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to a map that decodes to the same pairs.
		again, err := DecodeHeaderMap(EncodeHeaderMap(pairs))
		require.NoError(t, err)
		if len(pairs) == 0 {
			assert.Empty(t, again)
			return
		}
		assert.Equal(t, pairs, again)
	})
}
