package route

import (
	"bytes"
	"strings"

	"github.com/tollgate/tollgate/shared/reqview"
)

// ResponseKind says how a response body is mapped back.
type ResponseKind int

const (
	// ResponseUntouched leaves the response alone.
	ResponseUntouched ResponseKind = iota
	// ResponseJSON buffers a JSON body and maps its top-level model.
	ResponseJSON
	// ResponseSSE maps the model of each "data:" event as the stream passes.
	ResponseSSE
)

// ResponseKindFor picks the mapping for a response from its headers: only
// uncompressed JSON and event streams are mapped.
func ResponseKindFor(contentType, contentEncoding string) ResponseKind {
	if ce := strings.TrimSpace(strings.ToLower(contentEncoding)); ce != "" && ce != "identity" {
		return ResponseUntouched
	}
	if IsJSONContentType(contentType) {
		return ResponseJSON
	}
	mt, _, _ := strings.Cut(contentType, ";")
	if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
		return ResponseSSE
	}
	return ResponseUntouched
}

// MapModel returns doc with its top-level "model" replaced by to when it
// equals from; ok is false (and doc returned as is) when nothing changed.
func MapModel(doc []byte, from, to string) ([]byte, bool) {
	d, err := reqview.Parse(doc, reqview.Limits{MaxBytes: len(doc) + 1})
	if err != nil {
		return doc, false
	}
	m := d.Root().Get("model")
	if m.Kind() != reqview.String || m.View() != from {
		return doc, false
	}
	start, end := m.Span()
	return ReplaceModel(doc, BodyModel{Name: from, Start: start, End: end}, to), true
}

// StreamMapper maps the model of every "data:" line of a Server-Sent Events
// stream. It keeps no bytes itself: when the proxy's buffer ends inside a
// line, Map says to hold (the filter pauses and the proxy keeps buffering),
// and the next call sees the held bytes plus the new ones. The proxy then
// still owns every byte at the end of the stream or in a trailers callback.
// A line longer than max is forwarded untouched as it arrives.
type StreamMapper struct {
	from, to string
	max      int
	midLine  bool // the last bytes forwarded ended inside an oversize line
	out      []byte
	mapped   int
}

// NewStreamMapper maps model from → to in events; max bounds a held line.
func NewStreamMapper(from, to string, max int) *StreamMapper {
	return &StreamMapper{from: from, to: to, max: max}
}

// Mapped is the number of events whose model was mapped.
func (s *StreamMapper) Mapped() int { return s.mapped }

// Map judges the bytes buffered since the last forward. hold asks the caller
// to keep buffering (buf ends inside a line that may still be mapped);
// otherwise out is what to forward in place of buf, and unchanged reports
// that out is buf itself. final is true at the end of the stream (or in the
// trailers callback). out is valid until the next call.
func (s *StreamMapper) Map(buf []byte, final bool) (out []byte, unchanged, hold bool) {
	if len(buf) == 0 {
		return buf, true, false
	}
	lastNL := bytes.LastIndexByte(buf, '\n')
	if !final && lastNL != len(buf)-1 && len(buf)-(lastNL+1) <= s.max && !(s.midLine && lastNL < 0) {
		return nil, false, true
	}
	s.out = s.out[:0]
	changed := false
	rest := buf
	if s.midLine {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return buf, true, false // still inside the oversize line
		}
		s.out = append(s.out, rest[:nl+1]...)
		rest = rest[nl+1:]
		s.midLine = false
	}
	for len(rest) > 0 {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			if !final { // an oversize incomplete line: forward it untouched
				s.out = append(s.out, rest...)
				s.midLine = true
				break
			}
			nl = len(rest) - 1
		}
		if s.emit(rest[:nl+1]) {
			changed = true
		}
		rest = rest[nl+1:]
	}
	if !changed {
		return buf, true, false
	}
	return s.out, false, false
}

// emit appends one line (with its terminator, if any) to out, mapped when it
// is a data line whose JSON names the backend model; it reports a change.
func (s *StreamMapper) emit(line []byte) bool {
	body, ok := bytes.CutPrefix(line, []byte("data:"))
	if !ok || bytes.IndexByte(body, '{') < 0 {
		s.out = append(s.out, line...)
		return false
	}
	// The JSON ends before the line terminator; keep the terminator as sent.
	end := len(body)
	for end > 0 && (body[end-1] == '\n' || body[end-1] == '\r') {
		end--
	}
	mapped, ok := MapModel(body[:end], s.from, s.to)
	if !ok {
		s.out = append(s.out, line...)
		return false
	}
	s.mapped++
	s.out = append(s.out, "data:"...)
	s.out = append(s.out, mapped...)
	s.out = append(s.out, body[end:]...)
	return true
}
