package scrape

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return raw
}

func TestParseEngines(t *testing.T) {
	all := HasWaiting | HasRunning | HasKV | HasCacheConfig
	tests := []struct {
		file   string
		engine Engine
		want   Snapshot
	}{
		{"vllm.txt", VLLM, Snapshot{Waiting: 7, Running: 3, KVUsage: 0.4375, BlockSize: 16, NumBlocks: 27451,
			RunningLoras: []string{"sql-lora", "chat-lora"}, WaitingLoras: []string{`tone "x"`}, MaxLoras: 4, Has: all | HasLora}},
		{"sglang.txt", SGLang, Snapshot{Waiting: 2, Running: 12, KVUsage: 0.81, BlockSize: 1, NumBlocks: 300000, Has: all}},
		{"trtllm.txt", TRTLLM, Snapshot{Waiting: 5, Running: 8, KVUsage: 0.25, BlockSize: 32, NumBlocks: 4096, Has: all}},
		{"triton.txt", Triton, Snapshot{Waiting: 9, Running: 6, KVUsage: 0.5, BlockSize: 64, NumBlocks: 2048, Has: all}},
		// Another engine's names are not read.
		{"sglang.txt", VLLM, Snapshot{}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			got, err := Parse(tc.engine, fixture(t, tc.file))
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.want.Has&(HasWaiting|HasKV) == HasWaiting|HasKV, got.Complete())
		})
	}
}

func TestParseEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		text string
		want Snapshot
	}{
		{"legacy KV name", "vllm:gpu_cache_usage_perc 0.3\nvllm:num_requests_waiting 1\n", Snapshot{Waiting: 1, KVUsage: 0.3, Has: HasWaiting | HasKV}},
		{"new KV name wins", "vllm:gpu_cache_usage_perc 0.3\nvllm:kv_cache_usage_perc 0.6\n", Snapshot{KVUsage: 0.6, Has: HasKV}},
		{"series add up, usage takes the largest", "vllm:num_requests_waiting{m=\"a\"} 2\nvllm:num_requests_waiting{m=\"b\"} 3\nvllm:kv_cache_usage_perc{m=\"a\"} 0.2\nvllm:kv_cache_usage_perc{m=\"b\"} 0.1\n",
			Snapshot{Waiting: 5, KVUsage: 0.2, Has: HasWaiting | HasKV}},
		{"no trailing newline", "vllm:num_requests_waiting 4", Snapshot{Waiting: 4, Has: HasWaiting}},
		{"timestamp and CRLF-free spacing", "  vllm:num_requests_running   2   1700000000000\n", Snapshot{Running: 2, Has: HasRunning}},
		{"out-of-range values are clamped", "vllm:kv_cache_usage_perc 7\nvllm:num_requests_waiting -3\n", Snapshot{KVUsage: 1, Has: HasWaiting | HasKV}},
		{"NaN and garbage are skipped", "vllm:num_requests_waiting NaN\nvllm:num_requests_running abc\nvllm:kv_cache_usage_perc{x=\"1\" 0.5\n", Snapshot{}},
		{"bad escapes skip the line", "vllm:kv_cache_usage_perc{x=\"\\q\"} 0.5\n", Snapshot{}},
		{"prefix of a known name is another name", "vllm:num_requests_waiting_total 9\n", Snapshot{}},
		{"Inf is clamped", "vllm:kv_cache_usage_perc +Inf\n", Snapshot{KVUsage: 1, Has: HasKV}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(VLLM, []byte(tc.text))
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseIsIncremental(t *testing.T) {
	text := fixture(t, "vllm.txt")
	want, err := Parse(VLLM, text)
	require.NoError(t, err)
	for _, size := range []int{1, 2, 3, 7, 64, 1000} {
		p := New(VLLM)
		for i := 0; i < len(text); i += size {
			_, err := p.Write(text[i:min(i+size, len(text))])
			require.NoError(t, err)
		}
		got, err := p.Finish()
		require.NoError(t, err)
		assert.Equal(t, want, got, "chunks of %d", size)
	}
}

func TestParseLimits(t *testing.T) {
	long := "vllm:num_requests_waiting{x=\"" + strings.Repeat("a", MaxLine) + "\"} 9\nvllm:num_requests_running 1\n"
	got, err := Parse(VLLM, []byte(long))
	require.NoError(t, err)
	assert.Equal(t, Snapshot{Running: 1, Has: HasRunning}, got, "an over-long line is skipped whole")

	big := strings.Repeat("# padding line that is skipped\n", MaxBytes/30+1) + "vllm:num_requests_running 1\n"
	got, err = Parse(VLLM, []byte(big))
	assert.ErrorIs(t, err, ErrTruncated)
	assert.Zero(t, got.Has)

	var lora strings.Builder
	lora.WriteString(`vllm:lora_requests_info{running_lora_adapters="`)
	for i := 0; i < 200; i++ {
		lora.WriteString("a,")
	}
	lora.WriteString("\"} 1\n")
	got, _ = Parse(VLLM, []byte(lora.String()))
	assert.Len(t, got.RunningLoras, MaxLoras)
}

func TestParseEngine(t *testing.T) {
	for in, want := range map[string]Engine{"": VLLM, "vLLM": VLLM, "sglang": SGLang, "trtllm-serve": TRTLLM, "triton": Triton} {
		got, err := ParseEngine(in)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	_, err := ParseEngine("tgi")
	assert.ErrorContains(t, err, "unknown engine")
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"vllm.txt", "sglang.txt", "trtllm.txt", "triton.txt"} {
		f.Add(fixture(f, name), uint8(0), uint16(5))
	}
	f.Add([]byte("vllm:lora_requests_info{running_lora_adapters=\"a\\\"b\",max_lora=\"1e3\"} 5\n"), uint8(0), uint16(1))
	f.Fuzz(func(t *testing.T, text []byte, engine uint8, split uint16) {
		e := Engine(engine % 4)
		whole, errWhole := Parse(e, text)
		p := New(e)
		n := int(split)%64 + 1
		for i := 0; i < len(text); i += n {
			_, _ = p.Write(text[i:min(i+n, len(text))])
		}
		parts, errParts := p.Finish()
		if errWhole != nil || errParts != nil {
			return
		}
		if !assert.ObjectsAreEqual(whole, parts) {
			t.Fatalf("split parsing differs: %+v vs %+v", whole, parts)
		}
		if whole.KVUsage < 0 || whole.KVUsage > 1 || whole.Waiting < 0 || whole.Running < 0 || len(whole.RunningLoras) > MaxLoras {
			t.Fatalf("out of range: %+v", whole)
		}
	})
}
