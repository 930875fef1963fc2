package usage

import (
	"math"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTextTokensTable(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"", 0},
		{"Hi", 1},
		{" ", 1},                    // non-empty text costs at least 1
		{"hello world", 2},          // two short words, single space free
		{"internationalization", 3}, // 20 letters / 8
		{"12345", 2},                // digit groups of 3
		{"a, b", 3},                 // word, punct, word
		{"\n\n\n", 1},               // one break run
		{"    x", 2},                // indentation run + word
		{"日本語", 3},                  // 3 × 0.75 = 2.25 → 3
		{"🙂", 2},                    // 1.5 → 2
		{"Привет", 2},               // 6 non-ASCII letters / 5
		{"{\"a\":1}", 5},            // {" a ": 1 and }
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			assert.Equal(t, tc.want, TextTokens(tc.in))
		})
	}
}

// TestTextCounterSplitInvariant checks that writing text in pieces, even
// inside a UTF-8 sequence, gives the same count as writing it whole.
func TestTextCounterSplitInvariant(t *testing.T) {
	var corpus []struct {
		Name  string `json:"name"`
		Text  string `json:"text"`
		O200k int64  `json:"o200k"`
	}
	readJSON(t, "text_corpus.json", &corpus)
	for _, s := range corpus {
		whole := TextTokens(s.Text)
		for i := 0; i <= len(s.Text); i++ {
			var c TextCounter
			c.Write([]byte(s.Text[:i]))
			c.Write([]byte(s.Text[i:]))
			require.Equal(t, whole, c.Tokens(), "%s split at %d", s.Name, i)
		}
		var c TextCounter
		for i := 0; i < len(s.Text); i++ {
			c.Write([]byte{s.Text[i]})
		}
		require.Equal(t, whole, c.Tokens(), "%s byte-wise", s.Name)
	}
}

// TestTextTokensCalibration bounds the heuristic's error against o200k on
// its calibration corpus (numbers are reported in DESIGN.md).
func TestTextTokensCalibration(t *testing.T) {
	var corpus []struct {
		Name  string `json:"name"`
		Text  string `json:"text"`
		O200k int64  `json:"o200k"`
	}
	readJSON(t, "text_corpus.json", &corpus)
	var sumAbs, sumAbs4 float64
	for _, s := range corpus {
		est := TextTokens(s.Text)
		e := float64(est-s.O200k) / float64(s.O200k)
		e4 := float64((int64(len(s.Text))+3)/4-s.O200k) / float64(s.O200k)
		t.Logf("%-10s o200k=%3d est=%3d err=%+5.0f%%  bytes/4 err=%+5.0f%%", s.Name, s.O200k, est, 100*e, 100*e4)
		assert.LessOrEqual(t, math.Abs(e), 0.45, s.Name)
		sumAbs += math.Abs(e)
		sumAbs4 += math.Abs(e4)
	}
	mean := sumAbs / float64(len(corpus))
	t.Logf("mean |error|: heuristic %.1f%%, bytes/4 %.1f%%", 100*mean, 100*sumAbs4/float64(len(corpus)))
	assert.Less(t, mean, 0.12)
	assert.Less(t, mean, sumAbs4/float64(len(corpus)), "must beat the 4-bytes rule")
}

func FuzzTextCounter(f *testing.F) {
	f.Add("Hello, 世界! 🙂 x=42\n\tdone", uint8(3))
	f.Add("\xe6\x97", uint8(1))
	f.Fuzz(func(t *testing.T, s string, cut uint8) {
		whole := TextTokens(s)
		require.GreaterOrEqual(t, whole, int64(0))
		if s != "" {
			require.GreaterOrEqual(t, whole, int64(1))
		}
		i := int(cut) % (len(s) + 1)
		var c TextCounter
		c.Write([]byte(s[:i]))
		c.Write([]byte(s[i:]))
		require.Equal(t, whole, c.Tokens())
		c.Reset() // byte by byte: every ASCII run is counted one byte at a time
		for j := range len(s) {
			c.Write([]byte{s[j]})
		}
		require.Equal(t, whole, c.Tokens(), "byte by byte")
		require.LessOrEqual(t, whole, int64(2*len(s)+1), "never more than 2 tokens per byte")
	})
}

// TestASCIIClasses holds the run-class table of the fast ASCII path to the
// per-byte classifier.
func TestASCIIClasses(t *testing.T) {
	for ch := range byte(utf8.RuneSelf) {
		var c TextCounter
		c.ascii(ch)
		if got := asciiClasses[ch] - '0'; got != c.class {
			t.Errorf("byte %q: table class %d, classifier %d", ch, got, c.class)
		}
	}
}
