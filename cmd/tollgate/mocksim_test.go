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

func TestMockLLMSimReplicas(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "ready.json")
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	args := []string{"mock-llm", "--sim", "--replicas", "3", "--listen", "127.0.0.1:0", "--ready-file", ready,
		"--models", "base", "--sim-loras", "ad-a,ad-b", "--sim-preloaded-loras", "ad-a", "--sim-max-num-seqs", "2", "--sim-time-scale", "0.01"}
	go func() {
		done <- run(ctx, args, env{getenv: mapEnv(nil), stdin: strings.NewReader(""), stdout: logs, stderr: logs})
	}()
	var addrs map[string]string
	require.Eventually(t, func() bool {
		raw, err := os.ReadFile(ready)
		return err == nil && json.Unmarshal(raw, &addrs) == nil
	}, 10*time.Second, 10*time.Millisecond, "not ready: %s", logs.String())
	list := strings.Split(addrs["data"], ",")
	require.Len(t, list, 3)
	c := &http.Client{Timeout: 5 * time.Second}
	for _, a := range list {
		resp, err := c.Post("http://"+a+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"ad-a","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`))
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		assert.Contains(t, string(body), `"completion_tokens":3`)

		resp, err = c.Get("http://" + a + "/metrics")
		require.NoError(t, err)
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Contains(t, string(body), `vllm:num_requests_waiting{model_name="sim"} 0`)
		assert.Contains(t, string(body), `running_lora_adapters="ad-a"`)
		assert.Contains(t, string(body), `vllm:generation_tokens_total{model_name="sim"} 3.0`, "each replica keeps its own state")
	}
	cancel()
	select {
	case code := <-done:
		assert.Equal(t, exitOK, code, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("mock-llm did not stop after cancel")
	}
}

func TestMockLLMSimErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"replicas", []string{"mock-llm", "--replicas", "0"}, "--replicas"},
		{"seqs", []string{"mock-llm", "--sim", "--sim-max-num-seqs", "0"}, "must be positive"},
		{"scale", []string{"mock-llm", "--sim", "--sim-time-scale", "0"}, "must be positive"},
		{"preloaded", []string{"mock-llm", "--sim", "--sim-preloaded-loras", "x"}, "not one of the LoRA adapters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, nil, "", tt.args...)
			assert.Equal(t, exitUsage, r.code, r.stderr)
			assert.Contains(t, r.stderr, tt.msg)
		})
	}
}
