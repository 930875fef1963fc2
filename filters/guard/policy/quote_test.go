package policy_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/guard/policy"
)

// FuzzQuote: Quote's output is valid JSON that decodes to the input (with
// invalid UTF-8 replaced, as encoding/json does).
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c\n\t\x01", "é ☕ \u2028", "\xff\xfe", "[EMAIL]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := policy.Quote(s)
		require.True(t, json.Valid(q), "%q", q)
		var back string
		require.NoError(t, json.Unmarshal(q, &back))
		want, _ := json.Marshal(s)
		var wantBack string
		require.NoError(t, json.Unmarshal(want, &wantBack))
		assert.Equal(t, wantBack, back)
	})
}
