// Package sse is Tollgate's incremental Server-Sent Events reader.
//
// A Reader takes the response body in whatever chunks the proxy hands over
// and returns each complete event exactly once, in order, whatever the split:
// mid-line, mid-UTF-8 sequence, between the CR and LF of a CRLF, or inside a
// leading byte-order mark. It follows the WHATWG "event stream interpretation"
// algorithm (lines end in CRLF, LF or CR; ':' lines are comments; one optional
// space after the colon is dropped; several data lines join with "\n"), with
// one deliberate difference documented on Reader.Finish.
//
// Memory is bounded: an event (its data, name and the line being assembled)
// larger than Options.MaxEventSize is skipped up to its end and reported as
// ErrEventTooLarge; the reader then carries on with the next event.
package sse

import (
	"bytes"
	"errors"
	"strconv"

	"github.com/tollgate/tollgate/shared/config"
)

// DefaultMaxEventSize bounds one event when Options.MaxEventSize is unset;
// 1 MiB is far above any LLM stream chunk yet small enough per stream.
const DefaultMaxEventSize = 1 << 20

// ErrEventTooLarge reports that at least one event exceeded the maximum
// event size and was skipped; the reader stays usable.
var ErrEventTooLarge = errors.New("sse: event exceeds maximum size")

// bom is the UTF-8 byte-order mark the spec strips from the stream start.
const bom = "\xEF\xBB\xBF"

// Options tunes a Reader.
type Options struct {
	// MaxEventSize caps the bytes held for one event (data, event name and
	// the line being assembled); <= 0 means DefaultMaxEventSize.
	MaxEventSize int
}

// Event is one dispatched Server-Sent Event. Its slices point into memory
// owned by the Reader and stay valid only until the next Feed or Finish.
type Event struct {
	// Name is the "event" field; empty means the default type "message".
	Name []byte
	// Data is the data lines joined with "\n" (no trailing newline).
	Data []byte
	// ID is the last event ID in effect when the event was dispatched.
	ID []byte

	// start is the chunk offset where the event's block began, or -1 when
	// it began in an earlier chunk; end is the offset just past its
	// terminating blank line. Passthrough uses them to cut bytes exactly.
	start, end int
}

// Is reports whether the event's type equals name ("message" matches an
// event without an event field), without allocating.
func (e *Event) Is(name string) bool {
	if len(e.Name) == 0 {
		return name == "message"
	}
	return string(e.Name) == name
}

// IsDone reports whether the event is the OpenAI "[DONE]" terminator.
func (e *Event) IsDone() bool { return string(e.Data) == "[DONE]" }

// Reader assembles events from arbitrarily split chunks of one stream.
// It is not safe for concurrent use; use one Reader per stream.
type Reader struct {
	max int

	// line assembly across chunks
	line    []byte // bytes of the line in progress carried over from earlier chunks
	lineLen int    // length of the line in progress, counted even while skipping
	skipLF  bool   // the previous chunk ended in CR: a leading LF belongs to it
	bomN    int    // BOM bytes matched so far
	bomDone bool   // the BOM check is over

	// event assembly
	data     []byte // data lines, each followed by '\n' (as in the spec)
	name     []byte
	lastID   []byte
	retry    int64
	hasRetry bool
	oversize bool // the current event exceeded max and is being skipped
	inBlock  bool // bytes of the current block (event) have been consumed

	// per-call output
	arena        []byte
	events       []Event
	blockStart   int  // chunk offset where the current block began, -1 if earlier
	lastBoundary int  // chunk offset after the last blank line, -1 if none
	leadLF       bool // chunk[0] was the LF of a CRLF that ended the previous block
	tooLarge     int  // events skipped for size in this call
}

// NewReader returns a Reader with the given options.
func NewReader(opts Options) *Reader {
	r := &Reader{}
	r.max = opts.MaxEventSize
	if r.max <= 0 {
		r.max = DefaultMaxEventSize
	}
	return r
}

// Reset makes the Reader ready for a new stream, keeping its buffers.
func (r *Reader) Reset() {
	*r = Reader{
		max:    r.max,
		line:   r.line[:0],
		data:   r.data[:0],
		name:   r.name[:0],
		lastID: r.lastID[:0],
		arena:  r.arena[:0],
		events: r.events[:0],
	}
}

// Retry returns the last valid "retry" field value in milliseconds, if any.
func (r *Reader) Retry() (int64, bool) { return r.retry, r.hasRetry }

// Feed consumes the next chunk of the stream and returns the events it
// completed, in order. The returned slice and the events' bytes are valid
// until the next call. The whole chunk is always consumed; a non-nil error
// (wrapping ErrEventTooLarge) means some event was skipped for its size,
// and the events returned are still valid.
func (r *Reader) Feed(chunk []byte) ([]Event, error) {
	r.begin()
	if r.inBlock {
		r.blockStart = -1
	}
	p := 0
	if !r.bomDone {
		p = r.consumeBOM(chunk)
	}
	if r.skipLF && p < len(chunk) {
		r.skipLF = false
		if chunk[p] == '\n' {
			p++
			if !r.inBlock {
				r.leadLF = true
				r.blockStart = p
			}
		}
	}
	r.scan(chunk, p)
	return r.events, r.err()
}

// Finish ends the stream and returns a last event the stream left without
// its terminating blank line. The WHATWG algorithm discards such an event;
// Tollgate dispatches it when it holds at least one complete data line or a
// data line cut off by the end of the stream, because tokens that reached
// the client must be counted. After Finish the Reader must be Reset before
// reuse.
func (r *Reader) Finish() ([]Event, error) {
	r.begin()
	r.blockStart = -1
	if r.lineLen > 0 && !r.oversize {
		r.field(r.line)
	}
	r.line = r.line[:0]
	r.lineLen = 0
	if r.inBlock {
		r.dispatch(0)
	}
	return r.events, r.err()
}

func (r *Reader) begin() {
	r.events = r.events[:0]
	r.arena = r.arena[:0]
	r.lastBoundary = -1
	r.leadLF = false
	r.tooLarge = 0
	r.blockStart = 0
}

func (r *Reader) err() error {
	if r.tooLarge == 0 {
		return nil
	}
	return config.Wrap("", ErrEventTooLarge, ": "+strconv.Itoa(r.tooLarge)+" event(s) over "+strconv.Itoa(r.max)+" bytes skipped")
}

// consumeBOM matches a byte-order mark at the stream start, even when it is
// split across chunks, and returns how many chunk bytes it consumed.
func (r *Reader) consumeBOM(chunk []byte) int {
	p := 0
	for p < len(chunk) && r.bomN < len(bom) {
		if chunk[p] != bom[r.bomN] {
			// Not a BOM: the bytes matched so far start the first line.
			r.bomDone = true
			r.appendLine([]byte(bom[:r.bomN]))
			return p
		}
		r.bomN++
		p++
		r.inBlock = true
	}
	if r.bomN == len(bom) {
		r.bomDone = true
	}
	return p
}

// scan processes chunk[p:], one line at a time.
func (r *Reader) scan(chunk []byte, p int) {
	cr, lf := -1, -1 // cached positions of the next CR / LF (len(chunk) = none)
	n := len(chunk)
	for p < n {
		if lf < p {
			if i := bytes.IndexByte(chunk[p:], '\n'); i >= 0 {
				lf = p + i
			} else {
				lf = n
			}
		}
		if cr < p {
			if i := bytes.IndexByte(chunk[p:], '\r'); i >= 0 {
				cr = p + i
			} else {
				cr = n
			}
		}
		t := min(cr, lf)
		r.inBlock = true
		if t == n { // no terminator: the line continues in the next chunk
			r.appendLine(chunk[p:])
			return
		}
		next := t + 1
		if chunk[t] == '\r' {
			if next < n {
				if chunk[next] == '\n' {
					next++
				}
			} else {
				r.skipLF = true
			}
		}
		switch {
		case r.lineLen == 0 && t == p: // blank line: dispatch
			r.dispatch(next)
		case r.oversize: // skipping the rest of an oversized event
		case r.lineLen == 0: // the whole line is in this chunk: no copy
			if t-p+len(r.data)+len(r.name) > r.max {
				r.skipEvent()
			} else {
				r.field(chunk[p:t])
			}
		default:
			r.appendLine(chunk[p:t])
			if !r.oversize {
				r.field(r.line)
			}
		}
		r.line = r.line[:0]
		r.lineLen = 0
		p = next
	}
}

// appendLine adds part of a line in progress, switching to skip mode when
// the event would outgrow the limit.
func (r *Reader) appendLine(b []byte) {
	r.lineLen += len(b)
	if r.oversize {
		return
	}
	if len(r.line)+len(b)+len(r.data)+len(r.name) > r.max {
		r.skipEvent()
		return
	}
	r.line = append(r.line, b...)
}

// skipEvent drops what was gathered for the current event; the rest of it
// is ignored up to its blank line.
func (r *Reader) skipEvent() {
	r.oversize = true
	r.line = r.line[:0]
	r.data = r.data[:0]
	r.name = r.name[:0]
}

// field interprets one complete, non-blank line. The caller has checked
// that the line plus the event gathered so far fits the limit, the same
// check whether the line arrived whole or in pieces, so the outcome never
// depends on how the stream was split.
func (r *Reader) field(line []byte) {
	if len(line) == 0 || line[0] == ':' {
		return // comment
	}
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "data":
		r.data = append(r.data, value...)
		r.data = append(r.data, '\n')
	case "event":
		r.name = append(r.name[:0], value...)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			r.lastID = append(r.lastID[:0], value...)
		}
	case "retry":
		if v, ok := parseDigits(value); ok {
			r.retry, r.hasRetry = v, true
		}
	}
}

// dispatch ends the current block at chunk offset end.
func (r *Reader) dispatch(end int) {
	start := r.blockStart
	r.blockStart = end
	r.lastBoundary = end
	r.inBlock = false
	switch {
	case r.oversize:
		r.oversize = false
		r.tooLarge++
	case len(r.data) > 0:
		ev := Event{start: start, end: end}
		ev.Name = r.copy(r.name)
		ev.Data = r.copy(r.data[:len(r.data)-1])
		ev.ID = r.copy(r.lastID)
		r.events = append(r.events, ev)
	}
	r.data = r.data[:0]
	r.name = r.name[:0]
}

// copy moves b into the per-call arena so events survive buffer reuse.
func (r *Reader) copy(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	a := len(r.arena)
	r.arena = append(r.arena, b...)
	return r.arena[a:len(r.arena):len(r.arena)]
}

// parseDigits parses a non-empty run of ASCII digits, as "retry" requires.
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}
