package meter

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
)

// usageTestdata is the usage package's recorded fixtures, shared rather
// than copied.
const usageTestdata = "../usage/testdata"

func readFixture(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(usageTestdata, path))
	require.NoError(t, err)
	return b
}

// streamFixture is one entry of the usage package's streams manifest.
type streamFixture struct {
	File  string `json:"file"`
	API   string `json:"api"`
	Usage *struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
		TotalTokens      int64 `json:"total_tokens"`
		CachedTokens     int64 `json:"cached_tokens"`
		ReasoningTokens  int64 `json:"reasoning_tokens"`
	} `json:"usage"`
	Done bool `json:"done"`
}

func loadStreams(t testing.TB) []streamFixture {
	t.Helper()
	var fx []streamFixture
	require.NoError(t, json.Unmarshal(readFixture(t, "streams/manifest.json"), &fx))
	require.NotEmpty(t, fx)
	return fx
}

func apiByName(t testing.TB, name string) usage.API {
	t.Helper()
	for _, a := range []usage.API{usage.APIChatCompletions, usage.APICompletions, usage.APIEmbeddings, usage.APIAnthropicMessages} {
		if a.String() == name {
			return a
		}
	}
	t.Fatalf("unknown api %q", name)
	return usage.APIUnknown
}

// mustParse parses a configuration that must be valid.
func mustParse(t testing.TB, cfg string) *Policy {
	t.Helper()
	p, err := Parse([]byte(cfg))
	require.NoError(t, err, cfg)
	return p
}

// headerFunc serves header values from a map.
func headerFunc(h map[string]string) func(string) string {
	return func(name string) string { return h[name] }
}

// chunks cuts b at the sorted positions.
func chunks(b []byte, cuts []int) [][]byte {
	var out [][]byte
	prev := 0
	for _, c := range append(cuts, len(b)) {
		c = min(max(c, prev), len(b))
		out = append(out, b[prev:c])
		prev = c
	}
	return out
}
