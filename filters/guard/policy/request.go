package policy

import (
	"bytes"
	"errors"
	"sort"

	"github.com/tollgate/tollgate/filters/guard/masker"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/jsonenc"
	"github.com/tollgate/tollgate/shared/reqview"
)

// Direction labels a decision's side of the exchange.
type Direction string

// Directions.
const (
	Request  Direction = "request"
	Response Direction = "response"
)

// Decision is one counted decision: which rule (detector, pattern, threat
// set or "moderation") did what, on which side. It never holds matched text.
type Decision struct {
	Rule      string
	Action    string // block, mask, log (or fail_open / fail_closed for moderation errors)
	Direction Direction
	Count     int
}

// Decisions turns a scan report into decisions.
func Decisions(sc *masker.Scanner, rep masker.Report, dir Direction) []Decision {
	var out []Decision
	for i, n := range rep.Counts {
		if n > 0 {
			r := sc.Rules()[i]
			out = append(out, Decision{Rule: r.Name, Action: r.Action.String(), Direction: dir, Count: n})
		}
	}
	return out
}

// BlockError is the 400 a blocking rule answers; its code names the rule.
func BlockError(rule, where string, dir Direction) *apierror.Error {
	msg := "the request was blocked by the gateway's content policy: " + rule + " detected"
	if dir == Response {
		msg = "the answer was withheld by the gateway's content policy: " + rule + " detected"
	}
	if where != "" {
		msg += " in " + where
	}
	e := apierror.New(400, "guard_"+rule, msg)
	if dir == Request {
		e.Param = where
	}
	return e
}

// CheckHeaders applies threat protection to the path, query and headers.
func (c *Compiled) CheckHeaders(path string, header func(string) string) (*apierror.Error, []Decision) {
	if c == nil || c.Threat == nil {
		return nil, nil
	}
	if hit, ok := c.Threat.CheckHeaders(path, header); ok {
		return BlockError(hit.Set, hit.Where, Request), []Decision{{hit.Set, "block", Request, 1}}
	}
	return nil, nil
}

// RequestResult is the outcome for a request body.
type RequestResult struct {
	// Err refuses the request (nil: it goes on).
	Err *apierror.Error
	// Body is the rewritten body; nil when unchanged.
	Body []byte
	// Decisions are the counted decisions.
	Decisions []Decision
	// Texts are the prompt texts (after masking) for the moderation check,
	// when the profile enables it.
	Texts []string
}

// CheckBody parses a request body and applies the profile: threat sets on
// the configured fields (and on prompts if opted in), then the request
// detectors on every text that reaches the model, masking in place.
//
// An empty body and a multipart body (an audio upload: it starts with its
// "--" boundary) carry no JSON text fields and pass unchanged; any other
// body must be a JSON request, so that nothing slips past unscanned.
func (c *Compiled) CheckBody(body []byte, maxBytes int64) RequestResult {
	if len(body) == 0 || bytes.HasPrefix(body, []byte("--")) {
		return RequestResult{}
	}
	req, err := reqview.ParseRequest(body, reqview.Limits{MaxBytes: int(maxBytes)})
	if err != nil {
		var re *reqview.Error
		if errors.As(err, &re) {
			return RequestResult{Err: re.API()}
		}
		return RequestResult{Err: apierror.New(400, "invalid_json", "the request body is not valid JSON")}
	}
	if hit, ok := c.Threat.CheckBody(req.Root()); ok {
		return RequestResult{Err: BlockError(hit.Set, hit.Where, Request), Decisions: []Decision{{hit.Set, "block", Request, 1}}}
	}
	var res RequestResult
	var edits []edit
	rep := c.Request.NewReport()
	moderate := c.Moderation != nil && c.Moderation.Request
	req.Texts(func(param string, v reqview.Value) bool {
		text := v.Str()
		if hit, ok := c.Threat.CheckText(param, text); ok {
			res.Err = BlockError(hit.Set, hit.Where, Request)
			res.Decisions = []Decision{{hit.Set, "block", Request, 1}}
			return false
		}
		if !c.Request.Empty() {
			one := c.Request.NewReport()
			masked := c.Request.Mask(text, &one)
			rep.Merge(one)
			if one.Block >= 0 {
				res.Err = BlockError(c.Request.Rules()[one.Block].Name, param, Request)
				return false
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
		return true
	})
	if !c.Request.Empty() {
		res.Decisions = append(res.Decisions, Decisions(c.Request, rep, Request)...)
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

// edit replaces body[start:end] with repl.
type edit struct {
	start, end int
	repl       []byte
}

// splice applies non-overlapping edits.
func splice(body []byte, edits []edit) []byte {
	sort.Slice(edits, func(i, j int) bool { return edits[i].start < edits[j].start })
	var out bytes.Buffer
	out.Grow(len(body) + 64*len(edits))
	at := 0
	for _, e := range edits {
		out.Write(body[at:e.start])
		out.Write(e.repl)
		at = e.end
	}
	out.Write(body[at:])
	return out.Bytes()
}

// Quote encodes s as a JSON string (shared/jsonenc: invalid UTF-8 becomes
// U+FFFD), so a rewritten body is always valid JSON.
func Quote(s string) []byte { return jsonenc.AppendString(make([]byte, 0, len(s)+2), s) }
