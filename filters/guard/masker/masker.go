// Package masker applies the guard filter's detectors to text: it cuts the
// text into segments (segment.go), finds matches of built-in detectors and
// custom RE2 patterns in each segment, drops the ones an allow pattern
// covers, and blocks, masks with a typed placeholder or only reports each
// match according to its rule. Stream does the same on text that arrives
// in pieces (the deltas of a streamed answer) and holds back only the
// unfinished segment: the bytes that could still complete a match. Because
// segments depend on the text alone, Mask(text) and a Stream fed text in
// any split give the same output and the same report.
package masker

import (
	"errors"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/filters/guard/detector"
	"github.com/tollgate/tollgate/shared/config"
)

// Action is what a rule does with a match.
type Action uint8

// Actions, in increasing severity.
const (
	// ActionLog counts the match and leaves the text alone.
	ActionLog Action = iota
	// ActionMask replaces the match with the rule's placeholder.
	ActionMask
	// ActionBlock refuses the whole request or ends the answer.
	ActionBlock
)

// String is the action's configuration and metric spelling.
func (a Action) String() string {
	switch a {
	case ActionMask:
		return "mask"
	case ActionBlock:
		return "block"
	}
	return "log"
}

// ParseAction reads "block", "mask" or "log".
func ParseAction(s string) (Action, error) {
	switch s {
	case "block":
		return ActionBlock, nil
	case "mask":
		return ActionMask, nil
	case "log":
		return ActionLog, nil
	}
	return 0, errors.New("action " + strconv.Quote(s) + " is not block, mask or log")
}

// Rule is one detector or custom pattern with its action.
type Rule struct {
	// Name labels the rule in metrics, logs and error codes.
	Name string
	// Placeholder replaces masked matches.
	Placeholder string
	// Action applies to every match.
	Action Action
	det    *detector.Detector
	re     *regexp.Regexp
}

// Builtin returns a rule for a compiled built-in detector.
func Builtin(d *detector.Detector, a Action) Rule {
	return Rule{Name: d.Name, Placeholder: d.Placeholder, Action: a, det: d}
}

// Custom returns a rule for a custom RE2 pattern; its placeholder is
// "[NAME]" unless one is given.
func Custom(name, pattern, placeholder string, a Action) (Rule, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return Rule{}, config.Wrap("pattern "+name+": ", err, "")
	}
	if placeholder == "" {
		placeholder = "[" + strings.ToUpper(name) + "]"
	}
	return Rule{Name: name, Placeholder: placeholder, Action: a, re: re}, nil
}

// Scanner is a compiled set of rules; it is immutable and shared by every
// request of one configuration.
type Scanner struct {
	rules    []Rule
	allow    []*regexp.Regexp
	mode     Mode
	max      int
	custom   bool // some rule is a custom pattern
	builtins bool // some rule is a built-in detector
}

// DefaultMaxSegment bounds a segment (and so what a stream holds back) when
// none is configured: enough for a 4096-bit RSA private key in PEM.
const DefaultMaxSegment = 4096

// New compiles a scanner. Custom rules switch it to ModeLine so that their
// patterns may span words; maxSegment <= 0 means DefaultMaxSegment.
func New(rules []Rule, allow []string, maxSegment int) (*Scanner, error) {
	s := &Scanner{rules: rules, max: maxSegment}
	if s.max <= 0 {
		s.max = DefaultMaxSegment
	}
	for _, r := range rules {
		if r.re != nil {
			s.custom = true
			s.mode = ModeLine
		} else {
			s.builtins = true
		}
	}
	for i, a := range allow {
		re, err := regexp.Compile(a)
		if err != nil {
			return nil, config.Wrap("allow pattern "+strconv.Itoa(i)+": ", err, "")
		}
		s.allow = append(s.allow, re)
	}
	return s, nil
}

// Rules returns the scanner's rules (do not modify); nil for a nil scanner.
func (s *Scanner) Rules() []Rule {
	if s == nil {
		return nil
	}
	return s.rules
}

// Empty reports whether the scanner has no rules, so callers skip it.
func (s *Scanner) Empty() bool { return s == nil || len(s.rules) == 0 }

// MaxSegment is the most bytes a stream holds back.
func (s *Scanner) MaxSegment() int { return s.max }

// Report tallies what a scan found.
type Report struct {
	// Counts holds the matches acted on per rule index.
	Counts []int
	// Block is the index of the first blocking rule that matched, or -1.
	Block int
}

func newReport(n int) Report { return Report{Counts: make([]int, n), Block: -1} }

// Any reports whether anything matched.
func (r *Report) Any() bool {
	for _, c := range r.Counts {
		if c > 0 {
			return true
		}
	}
	return false
}

// Merge adds o's tallies to r.
func (r *Report) Merge(o Report) {
	if r.Counts == nil {
		r.Counts = make([]int, len(o.Counts))
		r.Block = -1
	}
	for i, c := range o.Counts {
		r.Counts[i] += c
	}
	if r.Block < 0 {
		r.Block = o.Block
	}
}

// NewReport returns an empty report for s's rules (a nil scanner has none).
func (s *Scanner) NewReport() Report { return newReport(len(s.Rules())) }

// possible reports whether any rule could match text (by byte classes).
func (s *Scanner) possible(text string) bool {
	if s.custom {
		return true
	}
	st := detector.Scan(text)
	for _, r := range s.rules {
		if r.det != nil && r.det.Possible(st, len(text)) {
			return true
		}
	}
	return false
}

// Mask scans a whole text; out is the text with masked matches replaced
// (text itself when nothing was masked).
func (s *Scanner) Mask(text string, rep *Report) string {
	if s.Empty() || !s.possible(text) {
		return text
	}
	st := s.NewStream()
	out := st.Write(text) + st.Flush()
	rep.Merge(st.Report())
	if out == text {
		return text
	}
	return out
}

type finding struct {
	start, end, rule int
}

// scan appends seg with its matches acted on to dst. Built-in detectors
// run on word segments (in line mode, on the words of the line, so their
// prefilters stay effective); custom patterns run on the whole line.
func (st *Stream) scan(seg []byte, dst []byte) []byte {
	s := st.s
	text := string(seg)
	st.fs = st.fs[:0]
	if s.mode == ModeLine && s.builtins {
		off := 0
		word := func(w []byte) {
			st.builtins(text[off:off+len(w)], off)
			off += len(w)
		}
		st.words.feed(text, word)
		st.words.flush(word)
	} else if s.builtins {
		st.builtins(text, 0)
	}
	for i, r := range s.rules {
		if r.re == nil {
			continue
		}
		for _, m := range r.re.FindAllStringIndex(text, -1) {
			if m[1] > m[0] {
				st.fs = append(st.fs, finding{m[0], m[1], i})
			}
		}
	}
	if len(st.fs) == 0 {
		return append(dst, seg...)
	}
	fs := s.resolve(text, st.fs)
	rep := &st.rep
	at := 0
	for _, f := range fs {
		r := &s.rules[f.rule]
		rep.Counts[f.rule]++
		if r.Action == ActionBlock && rep.Block < 0 {
			rep.Block = f.rule
		}
		if r.Action == ActionMask {
			dst = append(dst, text[at:f.start]...)
			dst = append(dst, r.Placeholder...)
			at = f.end
		}
	}
	return append(dst, text[at:]...)
}

// builtins adds the built-in detectors' findings in sub (at offset off).
func (st *Stream) builtins(sub string, off int) {
	stats := detector.Scan(sub)
	for i, r := range st.s.rules {
		if r.det == nil || !r.det.Possible(stats, len(sub)) {
			continue
		}
		r.det.Find(sub, stats, func(a, b int) { st.fs = append(st.fs, finding{a + off, b + off, i}) })
	}
}

// resolve drops findings an allow pattern covers and keeps a set of
// non-overlapping findings, preferring the more severe action, then the
// earlier, then the longer match, then the earlier rule; the result is
// sorted by position.
func (s *Scanner) resolve(text string, fs []finding) []finding {
	if len(s.allow) > 0 {
		var spans [][]int
		for _, re := range s.allow {
			spans = append(spans, re.FindAllStringIndex(text, -1)...)
		}
		kept := fs[:0]
		for _, f := range fs {
			covered := false
			for _, sp := range spans {
				if sp[0] <= f.start && f.end <= sp[1] {
					covered = true
					break
				}
			}
			if !covered {
				kept = append(kept, f)
			}
		}
		fs = kept
	}
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if sa, sb := s.rules[a.rule].Action, s.rules[b.rule].Action; sa != sb {
			return sa > sb
		}
		if a.start != b.start {
			return a.start < b.start
		}
		if a.end != b.end {
			return a.end > b.end
		}
		return a.rule < b.rule
	})
	var sel []finding
	for _, f := range fs {
		ok := true
		for _, g := range sel {
			if f.start < g.end && g.start < f.end {
				ok = false
				break
			}
		}
		if ok {
			sel = append(sel, f)
		}
	}
	sort.Slice(sel, func(i, j int) bool { return sel[i].start < sel[j].start })
	return sel
}

// Stream masks text that arrives in pieces. It is not safe for concurrent
// use; one per streamed choice.
type Stream struct {
	s     *Scanner
	seg   *segmenter
	words *segmenter // line mode: the words of a line, for built-ins
	rep   Report
	out   []byte
	fs    []finding
}

// NewStream starts a stream.
func (s *Scanner) NewStream() *Stream {
	return &Stream{s: s, seg: newSegmenter(s.mode, s.max), words: newSegmenter(ModeWord, s.max), rep: newReport(len(s.rules))}
}

// Write adds text and returns the masked text of every segment it
// completed; the rest is held.
func (st *Stream) Write(text string) string {
	st.out = st.out[:0]
	st.seg.feed(text, st.cut)
	return string(st.out)
}

// Flush ends the stream and returns the masked held text.
func (st *Stream) Flush() string {
	st.out = st.out[:0]
	st.seg.flush(st.cut)
	return string(st.out)
}

func (st *Stream) cut(seg []byte) { st.out = st.scan(seg, st.out) }

// Held is the number of bytes held back.
func (st *Stream) Held() int { return st.seg.held() }

// Report is what the stream found so far.
func (st *Stream) Report() Report { return st.rep }
