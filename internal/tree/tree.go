// Package tree reads decoded YAML or JSON documents (maps and lists of any)
// in tests, so configuration tests walk rendered Envoy configs one way.
package tree

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Dig walks v by map keys (string) and list indexes (int). A missing key
// yields nil, so callers can assert absence; a value of the wrong kind or an
// index out of range fails the test at the step that broke.
func Dig(t testing.TB, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			require.True(t, ok, "at %q: %T is not a map", k, v)
			v = m[k]
		case int:
			l, ok := v.([]any)
			require.True(t, ok, "at [%d]: %T is not a list", k, v)
			require.Less(t, k, len(l), "index %d out of range", k)
			v = l[k]
		default:
			t.Fatalf("tree.Dig: path element %v is neither a key nor an index", p)
		}
	}
	return v
}
