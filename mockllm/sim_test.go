package mockllm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// longPrompt is a prompt of n words, distinct per seed word.
func longPrompt(seed string, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%s%d ", seed, i%10)
	}
	return b.String()
}

// simChat is a chat body with a system prompt and a question.
func simChat(model, system, question string, maxTokens int, stream bool) string {
	b, _ := json.Marshal(map[string]any{
		"model": model, "max_tokens": maxTokens, "stream": stream,
		"messages": []any{
			map[string]any{"role": "system", "content": system},
			map[string]any{"role": "user", "content": question},
		},
	})
	return string(b)
}

// metricValue reads one sample of a /metrics body by its name and label text.
func metricValue(t *testing.T, body, prefix string) string {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			return f[len(f)-1]
		}
	}
	t.Fatalf("no metric %q in:\n%s", prefix, body)
	return ""
}

func TestSimPacingFromCacheAndPrompt(t *testing.T) {
	m := newSim(SimOptions{Overhead: 10 * time.Millisecond, PrefillPerToken: time.Millisecond, ITL: 5 * time.Millisecond, NumBlocks: 64})
	ctx := context.Background()
	prompt := strings.Repeat("abcd", 16*10) // 10 full blocks of 16 tokens × 4 bytes
	tests := []struct {
		name       string
		prompt     string
		tokens     int
		wantCached int
		wantTTFT   time.Duration
	}{
		{"cold prompt pays every token", prompt, 200, 0, 210 * time.Millisecond},
		// 10 of 11 blocks are cached (the last is always computed).
		{"same prompt hits the cache", prompt, 200, 181, 29 * time.Millisecond},
		{"shared prefix hits its blocks", prompt[:16*4*5] + strings.Repeat("zz", 200), 200, 83, 127 * time.Millisecond}, // 5 of 12
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, e := m.admit(ctx, "m", tc.prompt, tc.tokens, 10)
			require.Nil(t, e)
			defer p.done("length")
			assert.Equal(t, tc.wantCached, p.cached)
			assert.Equal(t, tc.wantTTFT, p.ttft)
			assert.Equal(t, 5*time.Millisecond, p.itl)
		})
	}
}

func TestSimCacheIsBoundedLRU(t *testing.T) {
	m := newSim(SimOptions{NumBlocks: 8})
	ctx := context.Background()
	a := strings.Repeat("a", 64*6)
	b := strings.Repeat("b", 64*6)
	admit := func(prompt string) int {
		p, e := m.admit(ctx, "m", prompt, 100, 1)
		require.Nil(t, e)
		p.done("length")
		return p.cached
	}
	assert.Zero(t, admit(a))
	assert.Positive(t, admit(a))
	assert.Zero(t, admit(b)) // b's 6 blocks evict a's 4 oldest
	assert.Equal(t, 8, m.state().CachedBlocks)
	assert.Zero(t, admit(a), "a's leading blocks were evicted")
	st := m.state()
	assert.Equal(t, 8, st.CachedBlocks)
	assert.Zero(t, st.Running)
}

func TestSimModelSeedsTheBlocks(t *testing.T) {
	m := newSim(SimOptions{})
	prompt := strings.Repeat("x", 64*4)
	p, _ := m.admit(context.Background(), "m1", prompt, 64, 1)
	p.done("length")
	p, _ = m.admit(context.Background(), "m2", prompt, 64, 1)
	p.done("length")
	assert.Zero(t, p.cached, "another model never shares cache blocks")
}

func TestSimQueueAndMetrics(t *testing.T) {
	srv := newTestServer(t, Options{Models: []string{"m"}, Sim: &SimOptions{MaxNumSeqs: 2, MaxQueue: 2, ITL: time.Hour, Overhead: time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions",
				strings.NewReader(simChat("m", "sys", fmt.Sprint("q", i), 5, true)))
			resp, err := srv.Client().Do(req)
			if err == nil {
				_, _ = resp.Body.Read(make([]byte, 1))
				resp.Body.Close()
			}
		}()
	}
	var body string
	require.Eventually(t, func() bool {
		_, _, raw := get(t, srv, "/metrics")
		body = string(raw)
		return strings.Contains(body, `vllm:num_requests_waiting{model_name="sim"} 2`)
	}, 30*time.Second, 5*time.Millisecond)
	assert.Equal(t, "2", metricValue(t, body, "vllm:num_requests_running{"))
	assert.NotEqual(t, "0", metricValue(t, body, "vllm:kv_cache_usage_perc{"))
	assert.Contains(t, body, `vllm:cache_config_info{block_size="16",enable_prefix_caching="True",num_gpu_blocks="512"} 1.0`)

	// The queue is full: the fifth request is refused as vLLM's simulator does.
	status, hdr, raw := post(t, srv, "/v1/chat/completions", simChat("m", "s", "q", 5, false), nil)
	assert.Equal(t, http.StatusTooManyRequests, status, string(raw))
	assert.Equal(t, "application/json", hdr.Get("Content-Type"))
	assert.Contains(t, string(raw), `"server_busy"`)

	cancel()
	wg.Wait()
	require.Eventually(t, func() bool {
		_, _, raw := get(t, srv, "/metrics")
		return strings.Contains(string(raw), `vllm:num_requests_running{model_name="sim"} 0`) &&
			strings.Contains(string(raw), `vllm:num_requests_waiting{model_name="sim"} 0`)
	}, 30*time.Second, 5*time.Millisecond, "cancelled requests free their slots and leave the queue")
}

// get issues a GET and reads the whole answer.
func get(t *testing.T, srv *httptest.Server, path string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, raw
}

// newServer serves s on loopback for the test's lifetime.
func newServer(t *testing.T, s *Server) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv
}

func TestSimExactOutputAndCachedUsage(t *testing.T) {
	srv := newTestServer(t, Options{Models: []string{"m"}, Sim: &SimOptions{TimeScale: 0.01}})
	system := longPrompt("alpha", 400)
	body := simChat("m", system, "first question", 50, false)
	for i, wantCached := range []bool{false, true} {
		status, _, raw := post(t, srv, "/v1/chat/completions", body, nil)
		require.Equal(t, http.StatusOK, status, string(raw))
		var resp struct {
			Usage struct {
				PromptTokens        int `json:"prompt_tokens"`
				CompletionTokens    int `json:"completion_tokens"`
				PromptTokensDetails struct {
					CachedTokens int `json:"cached_tokens"`
				} `json:"prompt_tokens_details"`
			} `json:"usage"`
			Choices []struct {
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
		}
		require.NoError(t, json.Unmarshal(raw, &resp))
		assert.Equal(t, 50, resp.Usage.CompletionTokens, "round %d", i)
		assert.Equal(t, "length", resp.Choices[0].FinishReason)
		if wantCached {
			assert.Greater(t, resp.Usage.PromptTokensDetails.CachedTokens, resp.Usage.PromptTokens/2)
		} else {
			assert.Zero(t, resp.Usage.PromptTokensDetails.CachedTokens)
		}
	}
	_, _, raw := get(t, srv, "/metrics")
	assert.NotEqual(t, "0.0", metricValue(t, string(raw), "vllm:prefix_cache_hits_total{"))
	assert.Equal(t, "100.0", metricValue(t, string(raw), "vllm:generation_tokens_total{"))
	assert.Equal(t, "2.0", metricValue(t, string(raw), `vllm:request_success_total{finished_reason="length"`))
}

func TestSimLoraSlots(t *testing.T) {
	s := New(Options{Models: []string{"base"}, Now: fixedNow,
		Sim: &SimOptions{Loras: []string{"ad-a", "ad-b"}, PreloadedLoras: []string{"ad-a"}, MaxLoras: 1, TimeScale: 0.01}})
	srv := newServer(t, s)
	st, _ := s.State()
	assert.Equal(t, []string{"ad-a"}, st.Resident)
	_, _, raw := get(t, srv, "/metrics")
	assert.Contains(t, string(raw), `vllm:lora_requests_info{max_lora="1",running_lora_adapters="ad-a",waiting_lora_adapters=""}`)

	status, _, raw := post(t, srv, "/v1/chat/completions", simChat("ad-b", "s", "q", 2, false), nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	st, _ = s.State()
	assert.Equal(t, []string{"ad-b"}, st.Resident, "the idle adapter was swapped out for the requested one")

	status, _, _ = post(t, srv, "/v1/chat/completions", simChat("ad-c", "s", "q", 2, false), nil)
	assert.Equal(t, http.StatusNotFound, status, "an unknown adapter is an unknown model")
}

func TestSimLoraWaitsForSlot(t *testing.T) {
	m := newSim(SimOptions{Loras: []string{"a", "b"}, MaxLoras: 1, MaxNumSeqs: 4})
	ctx := context.Background()
	pa, e := m.admit(ctx, "a", "p", 1, 1)
	require.Nil(t, e)
	got := make(chan *pacing, 1)
	go func() {
		p, _ := m.admit(ctx, "b", "p", 1, 1)
		got <- p
	}()
	require.Eventually(t, func() bool { return m.state().Waiting == 1 }, 30*time.Second, time.Millisecond)
	assert.Equal(t, []string{"b"}, m.state().WaitingLoras)
	// A request for the resident adapter overtakes the waiting one.
	pa2, e := m.admit(ctx, "a", "p", 1, 1)
	require.Nil(t, e)
	pa.done("stop")
	select {
	case <-got:
		t.Fatal("b started while a still ran")
	default:
	}
	pa2.done("stop")
	pb := <-got
	require.NotNil(t, pb)
	assert.Equal(t, []string{"b"}, m.state().Resident)
	pb.done("stop")
}

func TestSimOptionsValidate(t *testing.T) {
	assert.NoError(t, SimOptions{}.Validate())
	assert.Error(t, SimOptions{PreloadedLoras: []string{"x"}}.Validate())
	assert.Error(t, SimOptions{Loras: []string{"a", "b", "c"}, PreloadedLoras: []string{"a", "b", "c"}}.Validate())
	assert.Error(t, SimOptions{ITL: -1}.Validate())
}
