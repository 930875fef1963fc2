package usage

import (
	"unicode"
	"unicode/utf8"
)

// Text token heuristic.
//
// No tokenizer vocabulary can be shipped in the filter, so text is counted
// with a deterministic imitation of the pre-tokenisation step of OpenAI's
// byte-pair encoders (o200k_base / cl100k_base split text into words,
// number groups, punctuation and whitespace before merging bytes):
//
//   - a run of letters (ASCII or other scripts, with combining marks) costs
//     ceil(len/8) when mostly ASCII and ceil(len/5) otherwise, since common
//     English words are one token and other alphabets merge less;
//   - a run of ASCII digits costs ceil(len/3) (the encoders group 1-3 digits);
//   - a run of ASCII punctuation costs ceil(len/3);
//   - a single space is free (it rides on the next word); a run of two or
//     more spaces costs 1; a run of line breaks and tabs (with the spaces
//     after it) costs 1;
//   - each CJK ideograph, kana, hangul or full-width character costs 0.75;
//   - any other non-ASCII rune (emoji, symbols) costs 1.5;
//   - the sum is rounded up, and non-empty text costs at least 1.
//
// Calibrated against o200k_base on a corpus of English, code, JSON, logs,
// European languages, Cyrillic, Chinese, Japanese, Korean and emoji: mean
// absolute error about 10% per text versus about 23% for the usual
// "4 bytes per token" rule (see DESIGN.md in this package for the measured
// error on the request fixtures).

// run classes of the text counter
const (
	runNone uint8 = iota
	runWord
	runDigit
	runPunct
	runSpace
	runBreak
)

// TextCounter estimates the tokens of text written to it in pieces; the
// result does not depend on how the text was split, even mid-rune.
type TextCounter struct {
	quarters int64 // closed runs, in quarter tokens
	class    uint8
	runLen   int
	nonASCII int
	pend     [utf8.UTFMax]byte
	npend    int
	any      bool
}

// TextTokens estimates the tokens of s with the package heuristic.
func TextTokens(s string) int64 {
	var c TextCounter
	c.WriteString(s)
	return c.Tokens()
}

// Reset clears the counter.
func (c *TextCounter) Reset() { *c = TextCounter{} }

// Tokens returns the estimate for everything written so far.
func (c *TextCounter) Tokens() int64 {
	q := c.quarters + runCost(c.class, c.runLen, c.nonASCII) + 6*int64(c.npend)
	t := (q + 3) / 4
	if t == 0 && c.any {
		t = 1
	}
	return t
}

// Write adds bytes of UTF-8 text.
func (c *TextCounter) Write(b []byte) {
	if len(b) == 0 {
		return
	}
	c.any = true
	i := 0
	for c.npend > 0 {
		for c.npend < utf8.UTFMax && i < len(b) && !utf8.FullRune(c.pend[:c.npend]) {
			c.pend[c.npend] = b[i]
			c.npend++
			i++
		}
		if !utf8.FullRune(c.pend[:c.npend]) {
			return
		}
		r, size := utf8.DecodeRune(c.pend[:c.npend])
		if c.pend[0] < utf8.RuneSelf {
			c.ascii(c.pend[0]) // left over after an invalid sequence
		} else {
			c.rune(r)
		}
		copy(c.pend[:], c.pend[size:c.npend])
		c.npend -= size
	}
	for i < len(b) {
		ch := b[i]
		if ch < utf8.RuneSelf {
			// A run of ASCII bytes of one class is counted in one step: the
			// per-byte work is one table look-up, not a call per byte.
			k := asciiClasses[ch] - '0'
			j := i + 1
			if k == runSpace && c.class == runBreak {
				k = runBreak // spaces after a line break ride on its run
				for j < len(b) && b[j] == ' ' {
					j++
				}
			} else {
				for j < len(b) && b[j] < utf8.RuneSelf && asciiClasses[b[j]]-'0' == k {
					j++
				}
			}
			c.extendBy(k, j-i)
			i = j
			continue
		}
		if !utf8.FullRune(b[i:]) {
			c.npend = copy(c.pend[:], b[i:])
			return
		}
		r, size := utf8.DecodeRune(b[i:])
		c.rune(r)
		i += size
	}
}

// WriteString adds a string of UTF-8 text.
func (c *TextCounter) WriteString(s string) {
	// A string converts to bytes without copying when only read here.
	c.Write(unsafeBytes(s))
}

func (c *TextCounter) ascii(ch byte) {
	switch {
	case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z':
		c.extend(runWord, 0)
	case ch >= '0' && ch <= '9':
		c.extend(runDigit, 0)
	case ch == ' ':
		if c.class == runBreak {
			c.runLen++
			return
		}
		c.extend(runSpace, 0)
	case ch == '\n' || ch == '\r' || ch == '\t':
		c.extend(runBreak, 0)
	default:
		c.extend(runPunct, 0)
	}
}

func (c *TextCounter) rune(r rune) {
	switch {
	case isCJK(r):
		c.close()
		c.quarters += 3
	case unicode.IsLetter(r) || unicode.IsMark(r):
		c.extend(runWord, 1)
	default:
		c.close()
		c.quarters += 6
	}
}

// extend grows the current run or starts a new one of class k.
func (c *TextCounter) extend(k uint8, nonASCII int) {
	if c.class != k {
		c.close()
		c.class = k
	}
	c.runLen++
	c.nonASCII += nonASCII
}

// extendBy grows the current run by n ASCII bytes of class k, or starts a
// new one.
func (c *TextCounter) extendBy(k uint8, n int) {
	if c.class != k {
		c.close()
		c.class = k
	}
	c.runLen += n
}

// asciiClasses is the run class of each ASCII byte, as the digit '0'+class:
// letters runWord, digits runDigit, ' ' runSpace, '\n' '\r' '\t' runBreak,
// the rest runPunct (TestASCIIClasses checks it against ascii).
const asciiClasses = "" +
	"33333333355335333333333333333333" +
	"43333333333333332222222222333333" +
	"31111111111111111111111111133333" +
	"31111111111111111111111111133333"

func (c *TextCounter) close() {
	c.quarters += runCost(c.class, c.runLen, c.nonASCII)
	c.class, c.runLen, c.nonASCII = runNone, 0, 0
}

// runCost is the cost of a closed run in quarter tokens.
func runCost(class uint8, n, nonASCII int) int64 {
	switch class {
	case runWord:
		if 2*nonASCII > n { // constant divisors: no division instruction per run
			return 4 * int64((n+4)/5)
		}
		return 4 * int64((n+7)/8)
	case runDigit, runPunct:
		return 4 * int64((n+2)/3)
	case runSpace:
		if n > 1 {
			return 4
		}
	case runBreak:
		return 4
	}
	return 0
}

// isCJK reports ideographs, kana, hangul and full-width forms, which the
// encoders spend about one token on each (0.75 measured).
func isCJK(r rune) bool {
	switch {
	case r >= 0x1100 && r <= 0x11FF, // Hangul Jamo
		r >= 0x3000 && r <= 0x30FF,   // CJK punctuation, Hiragana, Katakana
		r >= 0x3130 && r <= 0x318F,   // Hangul compatibility Jamo
		r >= 0x3400 && r <= 0x4DBF,   // CJK extension A
		r >= 0x4E00 && r <= 0x9FFF,   // CJK unified ideographs
		r >= 0xAC00 && r <= 0xD7AF,   // Hangul syllables
		r >= 0xF900 && r <= 0xFAFF,   // CJK compatibility ideographs
		r >= 0xFF00 && r <= 0xFFEF,   // half- and full-width forms
		r >= 0x20000 && r <= 0x3FFFF: // CJK extensions B+
		return true
	}
	return false
}
