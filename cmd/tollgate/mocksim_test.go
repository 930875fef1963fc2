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

	"github.com/tollgate/tollgate/internal/logbuf"
)

// runningMock is a `tollgate mock-llm` command started by a test.
type runningMock struct {
	addrs  []string // the ready file's addresses
	logs   *logbuf.Buffer
	cancel context.CancelFunc
	done   chan int
}

// startMock runs `tollgate <args> --listen 127.0.0.1:0 --ready-file …` and
// waits for its ready file.
func startMock(t *testing.T, args ...string) *runningMock {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready.json")
	m := &runningMock{logs: &logbuf.Buffer{}, done: make(chan int, 1)}
	var ctx context.Context
	ctx, m.cancel = context.WithCancel(context.Background())
	t.Cleanup(m.cancel)
	args = append(args, "--listen", "127.0.0.1:0", "--ready-file", ready)
	go func() {
		m.done <- run(ctx, args, env{getenv: mapEnv(nil), stdin: strings.NewReader(""), stdout: m.logs, stderr: m.logs})
	}()
	var addrs map[string]string
	exited := -1
	require.Eventually(t, func() bool {
		select {
		case exited = <-m.done:
			return true
		default:
		}
		raw, err := os.ReadFile(ready)
		return err == nil && json.Unmarshal(raw, &addrs) == nil
	}, 30*time.Second, 10*time.Millisecond, "mock-llm not ready: %s", m.logs)
	if exited >= 0 {
		t.Fatalf("mock-llm exited with %d before it was ready:\n%s", exited, m.logs.String())
	}
	m.addrs = strings.Split(addrs["data"], ",")
	return m
}

// stop cancels the command and checks that it exits cleanly.
func (m *runningMock) stop(t *testing.T) {
	t.Helper()
	m.cancel()
	select {
	case code := <-m.done:
		assert.Equal(t, exitOK, code, m.logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("mock-llm did not stop after cancel")
	}
}

func TestMockLLMSimReplicas(t *testing.T) {
	m := startMock(t, "mock-llm", "--sim", "--replicas", "3", "--models", "base", "--sim-loras", "ad-a,ad-b",
		"--sim-preloaded-loras", "ad-a", "--sim-max-num-seqs", "2", "--sim-time-scale", "0.01")
	require.Len(t, m.addrs, 3)
	c := &http.Client{Timeout: 5 * time.Second}
	for _, a := range m.addrs {
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
	m.stop(t)
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
