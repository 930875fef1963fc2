package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMockLLMCommand(t *testing.T) {
	m := startMock(t, "mock-llm", "--ttft", "0s", "--itl", "0s", "--models", "demo, other*")
	require.Len(t, m.addrs, 1)
	base := "http://" + m.addrs[0]
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post(base+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"other-model","messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)

	resp, err = c.Get(base + "/v1/models")
	require.NoError(t, err)
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.JSONEq(t, `{"object":"list","data":[{"id":"demo","object":"model","created":1735689600,"owned_by":"tollgate-mock"}]}`, string(body))

	m.stop(t)
}

func TestMockLLMCommandErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"negative ttft", []string{"mock-llm", "--ttft", "-1s"}, exitUsage, "must not be negative"},
		{"no models", []string{"mock-llm", "--models", " , "}, exitUsage, "lists no model"},
		{"extra argument", []string{"mock-llm", "now"}, exitUsage, "unexpected argument"},
		{"bad listen", []string{"mock-llm", "--listen", "127.0.0.1:notaport"}, exitError, "listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, nil, "", tt.args...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			assert.Contains(t, r.stderr, tt.msg)
		})
	}
}
