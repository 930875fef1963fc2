package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMockLLMCommand(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "ready.json")
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	args := []string{"mock-llm", "--listen", "127.0.0.1:0", "--ready-file", ready, "--ttft", "0s", "--itl", "0s", "--models", "demo, other*"}
	go func() {
		done <- run(ctx, args, env{getenv: mapEnv(nil), stdin: strings.NewReader(""), stdout: logs, stderr: logs})
	}()
	var addrs map[string]string
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for addrs == nil {
		select {
		case code := <-done:
			t.Fatalf("mock-llm exited with %d before it was ready:\n%s", code, logs.String())
		case <-deadline:
			t.Fatalf("mock-llm not ready after 10s:\n%s", logs.String())
		case <-tick.C:
			if raw, err := os.ReadFile(ready); err == nil {
				require.NoError(t, json.Unmarshal(raw, &addrs))
			}
		}
	}
	base := "http://" + addrs["data"]
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

	cancel()
	select {
	case code := <-done:
		assert.Equal(t, exitOK, code, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("mock-llm did not stop after cancel")
	}
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
