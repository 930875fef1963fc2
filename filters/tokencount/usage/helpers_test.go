package usage

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// readJSON decodes a testdata file into v.
func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", path))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v), path)
}

// readFile returns a testdata file's bytes.
func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", path))
	require.NoError(t, err)
	return b
}

// wantUsage is the usage block of the manifests.
type wantUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
	CachedTokens     int64 `json:"cached_tokens"`
	CacheWriteTokens int64 `json:"cache_write_tokens"`
	ReasoningTokens  int64 `json:"reasoning_tokens"`
}

func (w wantUsage) usage() Usage {
	return Usage{
		PromptTokens: w.PromptTokens, CompletionTokens: w.CompletionTokens, TotalTokens: w.TotalTokens,
		CachedTokens: w.CachedTokens, CacheWriteTokens: w.CacheWriteTokens, ReasoningTokens: w.ReasoningTokens,
	}
}

// requestFixture is one entry of testdata/requests/manifest.json.
type requestFixture struct {
	File  string `json:"file"`
	Path  string `json:"path"`
	Truth *int64 `json:"truth"` // o200k + cookbook accounting; nil when unknown
}

// streamFixture is one entry of testdata/streams/manifest.json.
type streamFixture struct {
	File               string     `json:"file"`
	API                string     `json:"api"`
	Usage              *wantUsage `json:"usage"`
	Done               bool       `json:"done"`
	StreamedTextTokens *int64     `json:"streamed_text_tokens"`
	Events             int        `json:"events"`
	Note               string     `json:"note"`
}

// responseFixture is one entry of testdata/responses/manifest.json.
type responseFixture struct {
	File  string     `json:"file"`
	API   string     `json:"api"`
	Usage *wantUsage `json:"usage"`
}

func apiByName(t testing.TB, name string) API {
	t.Helper()
	for _, a := range []API{APIChatCompletions, APICompletions, APIEmbeddings, APIAnthropicMessages} {
		if a.String() == name {
			return a
		}
	}
	t.Fatalf("unknown api %q", name)
	return APIUnknown
}

func loadRequests(t testing.TB) []requestFixture {
	t.Helper()
	var fx []requestFixture
	readJSON(t, "requests/manifest.json", &fx)
	require.NotEmpty(t, fx)
	return fx
}

func loadStreams(t testing.TB) []streamFixture {
	t.Helper()
	var fx []streamFixture
	readJSON(t, "streams/manifest.json", &fx)
	require.NotEmpty(t, fx)
	return fx
}
