package policy

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/filters/guard/masker"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/reqview"
	"github.com/tollgate/tollgate/shared/sse"
)

// answerTexts visits the strings of a JSON answer that carry generated
// text: chat message content (string or text parts), refusals and tool-call
// arguments, completions' text, and Anthropic content blocks.
func answerTexts(root reqview.Value, fn func(param string, v reqview.Value)) {
	str := func(v reqview.Value, p string) {
		if v.Kind() == reqview.String {
			fn(p, v)
		}
	}
	root.Get("choices").Elems(func(i int, ch reqview.Value) bool {
		p := "choices[" + strconv.Itoa(i) + "]"
		str(ch.Get("text"), p+".text")
		m := ch.Get("message")
		c := m.Get("content")
		if c.Kind() == reqview.Array {
			c.Elems(func(j int, part reqview.Value) bool {
				str(part.Get("text"), p+".message.content["+strconv.Itoa(j)+"].text")
				return true
			})
		} else {
			str(c, p+".message.content")
		}
		str(m.Get("refusal"), p+".message.refusal")
		str(m.Get("reasoning_content"), p+".message.reasoning_content")
		m.Get("tool_calls").Elems(func(j int, tc reqview.Value) bool {
			str(tc.Get("function").Get("arguments"), p+".message.tool_calls["+strconv.Itoa(j)+"].function.arguments")
			return true
		})
		return true
	})
	root.Get("content").Elems(func(i int, b reqview.Value) bool {
		str(b.Get("text"), "content["+strconv.Itoa(i)+"].text")
		return true
	})
}

// AnswerResult is the outcome for a JSON answer.
type AnswerResult struct {
	// Err replaces the answer with an error (nil: it goes on).
	Err *apierror.Error
	// Body is the rewritten answer; nil when unchanged.
	Body []byte
	// Decisions are the counted decisions.
	Decisions []Decision
	// Texts are the answer's texts for the moderation check, when enabled.
	Texts []string
}

// CheckAnswer applies the response detectors to a JSON answer. A body that
// is not JSON is left alone: it carries no structured text to scan.
func (c *Compiled) CheckAnswer(body []byte, maxBytes int64) AnswerResult {
	d, err := reqview.Parse(body, reqview.Limits{MaxBytes: int(maxBytes)})
	if err != nil {
		return AnswerResult{}
	}
	var res AnswerResult
	var edits []edit
	rep := c.Response.NewReport()
	moderate := c.Moderation != nil && c.Moderation.Response
	answerTexts(d.Root(), func(param string, v reqview.Value) {
		text := v.Str()
		if !c.Response.Empty() {
			one := c.Response.NewReport()
			masked := c.Response.Mask(text, &one)
			rep.Merge(one)
			if one.Block >= 0 && res.Err == nil {
				res.Err = BlockError(c.Response.Rules()[one.Block].Name, param, Response)
			}
			if masked != text {
				s, e := v.Span()
				edits = append(edits, edit{s, e, Quote(masked)})
				text = masked
			}
		}
		if moderate && text != "" {
			res.Texts = append(res.Texts, text)
		}
	})
	if !c.Response.Empty() {
		res.Decisions = Decisions(c.Response, rep, Response)
	}
	if res.Err != nil {
		res.Texts = nil
		return res
	}
	if len(edits) > 0 {
		res.Body = splice(body, edits)
	}
	return res
}

// toolField prefixes the text key of a streamed tool call's arguments
// (followed by the tool call's index).
const toolField = "tool:"

// streamFields are the delta members of a chat chunk that carry text.
var streamFields = [...]string{"content", "refusal", "reasoning_content"}

// textKey names one streamed text: a choice and its field ("text" for completions).
type textKey struct {
	choice int64
	field  string
}

// held is one streamed text's masker and when it began holding bytes.
type held struct {
	st    *masker.Stream
	since time.Time
}

// StreamMasker rewrites an OpenAI-style SSE answer (chat or completions
// chunks) as it passes: each chunk's text is masked through a per-choice
// masker.Stream, which holds back only an unfinished segment (bounded by
// the scanner's max segment and by MaxHold in time). Every event it emits
// is valid JSON; events without text (the usage chunk, role chunks) pass
// with their data unchanged. Held text is sent before the choice's finish
// chunk, before [DONE], at the end of the stream, or when it has waited
// longer than MaxHold, in a chunk cloned from the upstream's own (with
// usage set to null). A blocking match ends the stream with an OpenAI
// error event and [DONE]; what the upstream sends afterwards is dropped.
type StreamMasker struct {
	sc        *masker.Scanner
	maxHold   time.Duration
	r         *sse.Reader
	texts     map[textKey]*held
	order     []textKey
	tmpl      []byte // the last chunk's data, for synthesized chunks
	blocked   bool
	out       []byte
	rep       masker.Report
	events    int
	doc       reqview.Doc // reused for every event: no allocation per parse
	anthropic bool        // the stream is an Anthropic Messages stream
	tdoc      reqview.Doc // for the template of synthesized chunks
}

// NewStreamMasker starts masking one streamed answer.
func (c *Compiled) NewStreamMasker(maxHold time.Duration) *StreamMasker {
	return &StreamMasker{sc: c.Response, maxHold: maxHold, r: sse.NewReader(sse.Options{}),
		texts: map[textKey]*held{}, rep: c.Response.NewReport()}
}

// Blocked reports whether the stream was ended by a blocking rule.
func (m *StreamMasker) Blocked() bool { return m.blocked }

// Decisions are the counted decisions so far.
func (m *StreamMasker) Decisions() []Decision { return Decisions(m.sc, m.rep, Response) }

// Feed consumes a chunk of the upstream's body and returns the bytes to
// send to the client now.
func (m *StreamMasker) Feed(chunk []byte, now time.Time) []byte {
	m.out = m.out[:0]
	if m.blocked {
		return m.out
	}
	evs, _ := m.r.Feed(chunk) // an oversized event is skipped: its text never reaches the client
	for i := range evs {
		m.event(&evs[i], now)
		if m.blocked {
			return m.out
		}
	}
	m.expire(now)
	return m.out
}

// Finish ends the stream: a last unterminated event, then any held text.
func (m *StreamMasker) Finish(now time.Time) []byte {
	m.out = m.out[:0]
	if m.blocked {
		return m.out
	}
	evs, _ := m.r.Finish()
	for i := range evs {
		m.event(&evs[i], now)
		if m.blocked {
			return m.out
		}
	}
	m.flushAll()
	return m.out
}

func (m *StreamMasker) emit(name []byte, data []byte) {
	if len(name) > 0 {
		m.out = append(m.out, "event: "...)
		m.out = append(m.out, name...)
		m.out = append(m.out, '\n')
	}
	for {
		line, rest, more := bytes.Cut(data, []byte("\n"))
		m.out = append(m.out, "data: "...)
		m.out = append(m.out, line...)
		m.out = append(m.out, '\n')
		if !more {
			break
		}
		data = rest
	}
	m.out = append(m.out, '\n')
}

func (m *StreamMasker) event(ev *sse.Event, now time.Time) {
	if ev.IsDone() {
		m.flushAll()
		if !m.blocked {
			m.emit(ev.Name, ev.Data)
		}
		return
	}
	if err := m.doc.Parse(ev.Data, reqview.Limits{MaxDepth: 32}); err != nil || m.doc.Root().Kind() != reqview.Object {
		m.emit(ev.Name, ev.Data)
		return
	}
	root := m.doc.Root()
	if typ := root.Get("type"); typ.Kind() == reqview.String {
		m.anthropicEvent(ev, root, typ.View(), now)
		return
	}
	choices := root.Get("choices")
	if choices.Kind() != reqview.Array || choices.Len() == 0 {
		m.emit(ev.Name, ev.Data)
		return
	}
	m.tmpl = append(m.tmpl[:0], ev.Data...)
	m.events++
	var edits []edit
	var finished []int64
	choices.Elems(func(pos int, ch reqview.Value) bool {
		idx, ok := ch.Get("index").Int()
		if !ok {
			idx = int64(pos)
		}
		fin := ch.Get("finish_reason")
		done := fin.Exists() && !fin.IsNull()
		write := func(field string, v reqview.Value) {
			k := textKey{idx, field}
			h := m.texts[k]
			if h == nil {
				h = &held{st: m.sc.NewStream()}
				m.texts[k] = h
				m.order = append(m.order, k)
			}
			out := h.st.Write(v.Str())
			if done {
				out += h.st.Flush()
			}
			m.track(h, now)
			s, e := v.Span()
			edits = append(edits, edit{s, e, Quote(out)})
		}
		if t := ch.Get("text"); t.Kind() == reqview.String {
			write("text", t)
		}
		delta := ch.Get("delta")
		for _, f := range streamFields {
			if v := delta.Get(f); v.Kind() == reqview.String {
				write(f, v)
			}
		}
		delta.Get("tool_calls").Elems(func(pos int, tc reqview.Value) bool {
			ti, ok := tc.Get("index").Int()
			if !ok {
				ti = int64(pos)
			}
			if v := tc.Get("function").Get("arguments"); v.Kind() == reqview.String {
				write(toolField+strconv.FormatInt(ti, 10), v)
			}
			return true
		})
		if done {
			finished = append(finished, idx)
		}
		return true
	})
	m.collect()
	if m.rep.Block >= 0 {
		m.block()
		return
	}
	// Held text of a finishing choice whose fields this chunk lacks goes first.
	for _, idx := range finished {
		for _, k := range m.order {
			if k.choice == idx {
				m.flush(k)
			}
		}
	}
	if m.rep.Block >= 0 {
		m.block()
		return
	}
	m.emit(ev.Name, splice(ev.Data, edits))
}

// anthropicFields maps the text fields of an Anthropic content_block_delta
// to their delta types.
var anthropicFields = [...][2]string{{"text", "text_delta"}, {"thinking", "thinking_delta"}, {"partial_json", "input_json_delta"}}

// anthropicEvent masks an Anthropic Messages stream event: the text of
// content_block_delta events, per content block; held text goes out before
// the block's content_block_stop and before message_stop.
func (m *StreamMasker) anthropicEvent(ev *sse.Event, root reqview.Value, typ string, now time.Time) {
	m.anthropic = true
	idx, _ := root.Get("index").Int()
	switch typ {
	case "content_block_delta":
		delta := root.Get("delta")
		var edits []edit
		for _, f := range anthropicFields {
			v := delta.Get(f[0])
			if v.Kind() != reqview.String {
				continue
			}
			k := textKey{idx, "anthropic:" + f[0]}
			h := m.texts[k]
			if h == nil {
				h = &held{st: m.sc.NewStream()}
				m.texts[k] = h
				m.order = append(m.order, k)
			}
			out := h.st.Write(v.Str())
			m.track(h, now)
			s, e := v.Span()
			edits = append(edits, edit{s, e, Quote(out)})
		}
		m.collect()
		if m.rep.Block >= 0 {
			m.block()
			return
		}
		m.emit(ev.Name, splice(ev.Data, edits))
		return
	case "content_block_stop":
		for _, k := range m.order {
			if k.choice == idx && strings.HasPrefix(k.field, "anthropic:") {
				m.flush(k)
			}
		}
	case "message_stop":
		m.flushAll()
	}
	if m.rep.Block >= 0 {
		m.block()
	}
	if !m.blocked {
		m.emit(ev.Name, ev.Data)
	}
}

// collect folds the per-text reports into the stream's report.
func (m *StreamMasker) collect() {
	clear(m.rep.Counts)
	m.rep.Block = -1
	for _, k := range m.order {
		m.rep.Merge(m.texts[k].st.Report())
	}
}

func (m *StreamMasker) track(h *held, now time.Time) {
	if h.st.Held() == 0 {
		h.since = time.Time{}
	} else if h.since.IsZero() {
		h.since = now
	}
}

// expire sends held text that has waited longer than maxHold.
func (m *StreamMasker) expire(now time.Time) {
	for _, k := range m.order {
		h := m.texts[k]
		if h.st.Held() > 0 && !h.since.IsZero() && now.Sub(h.since) >= m.maxHold {
			m.flush(k)
			if m.rep.Block >= 0 {
				m.block()
				return
			}
		}
	}
}

func (m *StreamMasker) flushAll() {
	for _, k := range m.order {
		m.flush(k)
		if m.rep.Block >= 0 {
			m.block()
			return
		}
	}
}

// flush sends a text's held bytes in a chunk cloned from the last one.
func (m *StreamMasker) flush(k textKey) {
	h := m.texts[k]
	if h.st.Held() == 0 {
		return
	}
	text := h.st.Flush()
	h.since = time.Time{}
	m.collect()
	if m.rep.Block >= 0 || text == "" {
		return
	}
	if f, ok := strings.CutPrefix(k.field, "anthropic:"); ok {
		dt := "text_delta"
		for _, af := range anthropicFields {
			if af[0] == f {
				dt = af[1]
			}
		}
		data := []byte(`{"type":"content_block_delta","index":` + strconv.FormatInt(k.choice, 10) +
			`,"delta":{"type":"` + dt + `","` + f + `":`)
		data = append(append(data, Quote(text)...), "}}"...)
		m.emit([]byte("content_block_delta"), data)
		return
	}
	if m.tmpl == nil {
		return
	}
	if err := m.tdoc.Parse(m.tmpl, reqview.Limits{MaxDepth: 32}); err != nil {
		return
	}
	root := m.tdoc.Root()
	var choice []byte
	idx := strconv.FormatInt(k.choice, 10)
	if ti, ok := strings.CutPrefix(k.field, toolField); ok {
		choice = []byte(`[{"index":` + idx + `,"delta":{"tool_calls":[{"index":` + ti + `,"function":{"arguments":` +
			string(Quote(text)) + `}}]},"logprobs":null,"finish_reason":null}]`)
	} else if k.field == "text" {
		choice = []byte(`[{"index":` + idx + `,"text":` + string(Quote(text)) + `,"logprobs":null,"finish_reason":null}]`)
	} else {
		choice = []byte(`[{"index":` + idx + `,"delta":{"` + k.field + `":` + string(Quote(text)) + `},"logprobs":null,"finish_reason":null}]`)
	}
	s, e := root.Get("choices").Span()
	edits := []edit{{s, e, choice}}
	if u := root.Get("usage"); u.Exists() && !u.IsNull() {
		us, ue := u.Span()
		edits = append(edits, edit{us, ue, []byte("null")})
	}
	m.emit(nil, splice(m.tmpl, edits))
}

// block ends the stream with an error event the SDKs raise: OpenAI's
// shape then [DONE], or Anthropic's "event: error".
func (m *StreamMasker) block() {
	if m.blocked {
		return
	}
	m.blocked = true
	e := BlockError(m.sc.Rules()[m.rep.Block].Name, "", Response)
	if m.anthropic {
		data := append([]byte(`{"type":"error","error":{"type":"invalid_request_error","code":`), Quote(e.Code)...)
		data = append(append(append(data, `,"message":`...), Quote(e.Message)...), "}}"...)
		m.emit([]byte("error"), data)
		return
	}
	m.emit(nil, e.Body(apierror.StyleOpenAI))
	m.emit(nil, []byte("[DONE]"))
}
