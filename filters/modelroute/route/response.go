package route

import (
	"bytes"
	"strings"

	"github.com/tidwall/gjson"
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
	i := bytes.IndexByte(doc, '{')
	if i < 0 || !gjson.ValidBytes(doc) {
		return doc, false
	}
	root := gjson.ParseBytes(doc)
	if !root.IsObject() {
		return doc, false
	}
	var bm BodyModel
	found := false
	root.ForEach(func(k, v gjson.Result) bool {
		if k.Str != "model" {
			return true
		}
		if v.Type == gjson.String && v.Str == from {
			bm = BodyModel{Name: v.Str, Start: v.Index, End: v.Index + len(v.Raw)}
			found = true
		}
		return false
	})
	if !found {
		return doc, false
	}
	return ReplaceModel(doc, bm, to), true
}

// StreamMapper maps the model of every "data:" line of a Server-Sent Events
// stream fed to it in arbitrary chunks. It holds back at most one incomplete
// line (up to max bytes; a longer line is forwarded untouched), so events
// flow through as soon as their line is complete.
type StreamMapper struct {
	from, to string
	max      int
	pending  []byte // start of a line not yet complete
	passing  bool   // the current line outgrew max: forward it until its end
	out      []byte
	mapped   int
}

// NewStreamMapper maps model from → to in events; max bounds a held line.
func NewStreamMapper(from, to string, max int) *StreamMapper {
	return &StreamMapper{from: from, to: to, max: max}
}

// Mapped is the number of events whose model was mapped.
func (s *StreamMapper) Mapped() int { return s.mapped }

// Feed consumes the next chunk and returns the bytes to forward now; with
// eos it also flushes the held line. unchanged reports that out is exactly
// chunk, so the caller can leave the proxy's buffer alone. out is valid
// until the next call.
func (s *StreamMapper) Feed(chunk []byte, eos bool) (out []byte, unchanged bool) {
	s.out = s.out[:0]
	changed := len(s.pending) > 0
	rest := chunk
	for len(rest) > 0 {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			break
		}
		line := rest[:nl+1]
		rest = rest[nl+1:]
		if s.passing {
			s.out = append(s.out, line...)
			s.passing = false
			continue
		}
		if len(s.pending) > 0 {
			s.pending = append(s.pending, line...)
			line = s.pending
		}
		if s.emit(line) {
			changed = true
		}
		s.pending = s.pending[:0]
	}
	// rest is an incomplete line.
	switch {
	case s.passing:
		s.out = append(s.out, rest...)
		if eos {
			s.passing = false
		}
	case eos:
		if len(s.pending)+len(rest) > 0 && s.emit(append(s.pending, rest...)) {
			changed = true
		}
		s.pending = s.pending[:0]
	case len(rest) == 0:
	case len(s.pending)+len(rest) > s.max:
		s.out = append(s.out, s.pending...)
		s.out = append(s.out, rest...)
		s.pending = s.pending[:0]
		s.passing = true
	default:
		s.pending = append(s.pending, rest...)
		changed = true
	}
	if !changed {
		return chunk, true
	}
	return s.out, false
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
