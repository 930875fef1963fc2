package jsontest

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestGet(t *testing.T) {
	b := []byte(`{"error":{"code":"x","n":3,"f":2.5,"ok":true},"results":[{"used":7}],"s":"a\u00e9"}`)
	assert.True(t, Valid(b))
	assert.False(t, Valid([]byte(`{"a":1,"a":2}`)))
	assert.Equal(t, "x", Get(b, "error.code").Str())
	assert.Equal(t, int64(3), Get(b, "error.n").Int())
	assert.Equal(t, int64(2), Get(b, "error.f").Int())
	assert.True(t, Get(b, "error.ok").Bool())
	assert.Equal(t, int64(7), Get(b, "results.0.used").Int())
	assert.Equal(t, "aé", Get(b, "s").Str())
	assert.Equal(t, `{"used":7}`, Get(b, "results.0").Raw())
	assert.False(t, Get(b, "results.1").Exists())
	assert.False(t, Get(b, "nope.deeper").Exists())
	assert.False(t, Get([]byte(`{`), "a").Exists())
	assert.Equal(t, map[string][]byte{"used": []byte("7")}, Get(b, "results.0").Members())
}

func TestLenPluck(t *testing.T) {
	b := []byte(`{"items":[{"name":"a"},{"id":1},{"name":"c"}],"cost":0.25,"obj":{"x":1,"y":2}}`)
	tests := []struct {
		path string
		len  int
	}{{"items", 3}, {"obj", 2}, {"cost", 0}, {"missing", 0}}
	for _, tc := range tests {
		assert.Equal(t, tc.len, Get(b, tc.path).Len(), tc.path)
	}
	assert.Equal(t, []string{"a", "", "c"}, Get(b, "items").Pluck("name"))
	assert.Nil(t, Get(b, "obj").Pluck("x"), "not an array")
}
