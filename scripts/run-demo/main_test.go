package main

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFirstModel(t *testing.T) {
	tests := []struct {
		body, want string
	}{
		{`{"object":"list","data":[{"id":"qwen"},{"id":"llama"}]}`, "qwen"},
		{`{"object":"list","data":[]}`, ""},
		{`not json`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, firstModel([]byte(tt.body)), tt.body)
	}
}

func TestParseOptions(t *testing.T) {
	t.Setenv("PORT", "9090")
	t.Setenv("UPSTREAM", "http://127.0.0.1:7000")
	t.Setenv("UPSTREAM_API_KEY", "sk-x")
	t.Setenv("TOLLGATE_RUN_T0", "1000000000")
	o, err := parseOptions(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9090", o.listen)
	assert.Equal(t, "http://127.0.0.1:7000", o.upstream)
	assert.Equal(t, "sk-x", o.upstreamKey)
	assert.Equal(t, time.Unix(1, 0), o.t0)

	_, err = parseOptions([]string{"extra"}, io.Discard)
	assert.ErrorContains(t, err, "unexpected argument")
	_, err = parseOptions([]string{"--concurrency", "x"}, io.Discard)
	assert.Error(t, err)
	_, err = parseOptions([]string{"--picker"}, io.Discard)
	assert.ErrorContains(t, err, "cannot be combined with --upstream", "the picker demo runs its own servers")
	t.Setenv("UPSTREAM", "")
	t.Setenv("PICKER", "1")
	o, err = parseOptions(nil, io.Discard)
	require.NoError(t, err)
	assert.True(t, o.picker, "make run PICKER=1")
}
