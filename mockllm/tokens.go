package mockllm

import (
	"unicode"
	"unicode/utf8"
)

// Tokens counts the tokens of s with the mock's documented tokenizer, so the
// usage it reports is exact and reproducible by anyone reading the rules:
//
//   - a run of letters costs one token per started 6 letters;
//   - a run of digits costs one token per started 3 digits;
//   - every other character that is not white space costs one token;
//   - white space is free.
//
// It is not a real BPE tokenizer and does not try to be one.
func Tokens(s string) int {
	n := 0
	letters, digits := 0, 0
	flush := func() {
		n += (letters+5)/6 + (digits+2)/3
		letters, digits = 0, 0
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r < utf8.RuneSelf && ('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') || r >= utf8.RuneSelf && unicode.IsLetter(r):
			if digits > 0 {
				flush()
			}
			letters++
		case '0' <= r && r <= '9':
			if letters > 0 {
				flush()
			}
			digits++
		case r == ' ' || r == '\t' || r == '\n' || r == '\r' || unicode.IsSpace(r):
			flush()
		default:
			flush()
			n++
		}
	}
	flush()
	return n
}
