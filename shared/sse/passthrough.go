package sse

// DropFunc decides whether a complete event is removed from the stream
// that reaches the client.
type DropFunc func(ev *Event) bool

// Passthrough forwards a stream byte-for-byte while removing the events a
// DropFunc selects, such as the usage chunk Tollgate asked for on the
// client's behalf. It holds back only the bytes of the one event still in
// progress at the end of a chunk (never more than the maximum event size:
// a larger event is forwarded as it arrives and cannot be dropped), so the
// time to first token is unchanged when chunks end on event boundaries, as
// LLM servers send them.
type Passthrough struct {
	r    *Reader
	drop DropFunc

	held        []byte // bytes of the block in progress not yet forwarded
	passing     bool   // the block in progress outgrew the limit: forward it as it comes
	lastDropped bool   // the last complete block was dropped (its CRLF may be split)
	out         []byte
	dropped     int
}

// Result is what one Passthrough call produced.
type Result struct {
	// Out is the bytes to forward now; it aliases the input chunk when
	// Unchanged is true and is otherwise valid until the next call.
	Out []byte
	// Unchanged reports that Out is exactly the input chunk, so the caller
	// can leave the proxy's body buffer as it is.
	Unchanged bool
	// Events are the events completed by this call, dropped ones included
	// (valid until the next call).
	Events []Event
	// Dropped counts the events removed by this call.
	Dropped int
}

// NewPassthrough returns a Passthrough that removes the events drop selects
// (nil drops nothing).
func NewPassthrough(opts Options, drop DropFunc) *Passthrough {
	return &Passthrough{r: NewReader(opts), drop: drop}
}

// Reset makes the Passthrough ready for a new stream.
func (p *Passthrough) Reset() {
	p.r.Reset()
	p.held = p.held[:0]
	p.passing = false
	p.lastDropped = false
	p.dropped = 0
}

// Dropped returns how many events were removed since the last Reset.
func (p *Passthrough) Dropped() int { return p.dropped }

// Feed consumes the next chunk of the stream. The error is the Reader's:
// an oversized event was forwarded untouched and not parsed.
func (p *Passthrough) Feed(chunk []byte) (Result, error) {
	heldBefore := len(p.held) > 0
	evs, err := p.r.Feed(chunk)
	p.out = p.out[:0]
	res := Result{Events: evs}

	fwd := 0         // chunk bytes before fwd are decided
	changed := false // Out differs from chunk
	if p.r.leadLF {
		// chunk[0] is the LF of a CRLF that ended the previous block: it
		// goes (or is dropped) with that block, as if never split.
		fwd = 1
		if p.lastDropped {
			changed = true
		} else {
			p.out = append(p.out, '\n')
		}
	}
	for i := range evs {
		ev := &evs[i]
		if ev.start >= 0 {
			// Bytes before the event's block are complete blocks without
			// an event (comments, keep-alives, extra blank lines).
			p.emitHeld()
			p.out = append(p.out, chunk[fwd:ev.start]...)
			p.passing = false
			fwd = ev.start
		}
		if p.passing { // its head is already gone: it cannot be dropped
			p.out = append(p.out, chunk[fwd:ev.end]...)
			p.passing = false
			p.lastDropped = false
		} else if p.drop != nil && p.drop(ev) {
			p.held = p.held[:0]
			p.lastDropped = true
			res.Dropped++
		} else {
			p.emitHeld()
			p.out = append(p.out, chunk[fwd:ev.end]...)
			p.lastDropped = false
		}
		fwd = ev.end
	}
	if b := p.r.lastBoundary; b > fwd {
		// Blocks after the last event that ended without one.
		p.emitHeld()
		p.out = append(p.out, chunk[fwd:b]...)
		p.passing = false
		p.lastDropped = false
		fwd = b
	}
	rest := chunk[fwd:]
	switch {
	case p.passing:
		p.out = append(p.out, rest...)
	case len(p.held)+len(rest) > p.r.max:
		p.emitHeld()
		p.out = append(p.out, rest...)
		p.passing = true
	default:
		p.held = append(p.held, rest...)
	}
	p.dropped += res.Dropped
	if !changed && !heldBefore && len(p.held) == 0 && res.Dropped == 0 {
		res.Out, res.Unchanged = chunk, true
		return res, err
	}
	res.Out = p.out
	return res, err
}

// Finish ends the stream: it returns the held bytes of an unterminated last
// event (dropped if the DropFunc selects it) and the event itself, if any.
func (p *Passthrough) Finish() (Result, error) {
	evs, err := p.r.Finish()
	res := Result{Events: evs}
	p.out = p.out[:0]
	dropLast := false
	if len(evs) > 0 && !p.passing && p.drop != nil && p.drop(&evs[len(evs)-1]) {
		dropLast = true
		res.Dropped = 1
		p.dropped++
	}
	if !dropLast {
		p.out = append(p.out, p.held...)
	}
	p.held = p.held[:0]
	p.passing = false
	res.Out = p.out
	return res, err
}

func (p *Passthrough) emitHeld() {
	if len(p.held) > 0 {
		p.out = append(p.out, p.held...)
		p.held = p.held[:0]
	}
}
