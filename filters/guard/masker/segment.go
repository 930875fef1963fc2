package masker

import "bytes"

// Mode chooses where text is cut into the units detectors run on.
type Mode uint8

const (
	// ModeWord cuts after white space that no built-in detector's match can
	// contain: any white space but a single space after a short group of
	// digits, capitals and phone punctuation ("+1 415 555 0100",
	// "DE89 3704 …", "4111 1111 …" stay whole). Streams hold back about one word.
	ModeWord Mode = iota
	// ModeLine cuts only after a newline, so custom patterns can span words;
	// streams hold back up to a line.
	ModeLine
)

const (
	pemBegin = "-----BEGIN"
	pemEnd   = "-----END"
)

// segmenter cuts a text into segments, deterministically from the text
// alone: feeding it in any number of pieces gives the same cuts. A segment
// ends after a cutting white space byte (see Mode), or when it reaches max
// bytes (at a UTF-8 rune start), and never inside an open PEM block
// ("-----BEGIN … -----END …-----"), so a private key is one unit.
type segmenter struct {
	mode Mode
	max  int

	buf       []byte // the segment in progress
	wordStart int    // offset in buf where the current word began
	pemFrom   int    // offset in buf of an open "-----BEGIN", or -1
	searched  int    // buf offset up to which "-----BEGIN" was searched
}

func newSegmenter(mode Mode, max int) *segmenter {
	return &segmenter{mode: mode, max: max, pemFrom: -1}
}

// joinable reports whether a single space after word keeps a detector's
// candidate whole: short groups of digits, capitals and phone punctuation.
func joinable(word []byte) bool {
	if len(word) == 0 || len(word) > 8 {
		return false
	}
	for _, c := range word {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c == '(' || c == ')' || c == '+' || c == '-' || c == '.' || c == '/') {
			return false
		}
	}
	return true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'
}

// feed adds text and calls cut with every segment it completes (the slice
// is valid only during the call). The bytes of an unfinished segment stay
// in the segmenter.
func (s *segmenter) feed(text string, cut func(seg []byte)) {
	for i := 0; i < len(text); i++ {
		c := text[i]
		if len(s.buf) >= s.max && c&0xC0 != 0x80 {
			s.emit(cut)
		}
		s.buf = append(s.buf, c)
		if !isSpace(c) {
			continue
		}
		word := s.buf[s.wordStart : len(s.buf)-1]
		s.wordStart = len(s.buf)
		boundary := c == '\n'
		if s.mode == ModeWord && !boundary {
			boundary = c != ' ' || !joinable(word)
		}
		if boundary && !s.inPEM() {
			s.emit(cut)
		}
	}
}

// inPEM reports whether the segment holds a "-----BEGIN" whose block has
// not ended with "-----END …-----".
func (s *segmenter) inPEM() bool {
	if s.pemFrom < 0 {
		from := max(0, s.searched-len(pemBegin))
		s.searched = len(s.buf)
		i := bytes.Index(s.buf[from:], []byte(pemBegin))
		if i < 0 {
			return false
		}
		s.pemFrom = from + i
	}
	rest := s.buf[s.pemFrom+len(pemBegin):]
	e := bytes.Index(rest, []byte(pemEnd))
	if e < 0 || !bytes.Contains(rest[e+len(pemEnd):], []byte("-----")) {
		return true
	}
	return false
}

func (s *segmenter) emit(cut func([]byte)) {
	if len(s.buf) > 0 {
		cut(s.buf)
	}
	s.buf = s.buf[:0]
	s.wordStart = 0
	s.pemFrom = -1
	s.searched = 0
}

// flush ends the text: the unfinished segment is cut as it is.
func (s *segmenter) flush(cut func([]byte)) { s.emit(cut) }

// held is the number of bytes of the unfinished segment.
func (s *segmenter) held() int { return len(s.buf) }
