package meter

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/usagelog"
)

// fakeStreamHost is one stream's proxy: request and response headers and
// bodies, local replies, resumes, logs and usage records; callouts go
// through the embedded fakeAccountHost (pending until answered).
type fakeStreamHost struct {
	*fakeAccountHost
	req, resp    map[string]string
	reqBody      []byte // the body as replaced (nil: untouched)
	replaceErr   error
	respBody     []byte // the buffered response body
	respReplaced []byte
	replies      []*apierror.Error
	replyHeaders [][2]string
	resumedReq   int
	resumedResp  int
	errs         []string
	records      []usagelog.Record
	now          time.Time
}

func newFakeStreamHost(headers map[string]string) *fakeStreamHost {
	req := map[string]string{":method": "POST", ":path": "/v1/chat/completions", "x-team": "t1", "x-request-id": "req-1"}
	for k, v := range headers {
		if v == "" {
			delete(req, k)
		} else {
			req[k] = v
		}
	}
	return &fakeStreamHost{fakeAccountHost: newFakeAccountHost(), req: req, resp: map[string]string{},
		now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (h *fakeStreamHost) Now() time.Time                   { h.now = h.now.Add(time.Millisecond); return h.now }
func (h *fakeStreamHost) Error(msg string)                 { h.errs = append(h.errs, msg) }
func (h *fakeStreamHost) RequestHeader(name string) string { return h.req[name] }
func (h *fakeStreamHost) RemoveRequestHeader(name string)  { delete(h.req, name) }
func (h *fakeStreamHost) ReplaceRequestBody(b []byte) error {
	if h.replaceErr != nil {
		return h.replaceErr
	}
	h.reqBody = b
	return nil
}
func (h *fakeStreamHost) ResumeRequest() { h.resumedReq++ }
func (h *fakeStreamHost) SendError(e *apierror.Error, extra ...[2]string) {
	h.replies, h.replyHeaders = append(h.replies, e), extra
}
func (h *fakeStreamHost) ResponseHeader(name string) (string, bool) {
	v, ok := h.resp[name]
	return v, ok
}
func (h *fakeStreamHost) RemoveResponseHeader(name string)     { delete(h.resp, name) }
func (h *fakeStreamHost) SetResponseHeader(name, value string) { h.resp[name] = value }
func (h *fakeStreamHost) ResponseChunk(size int) []byte        { return h.respBody[:size] }
func (h *fakeStreamHost) ResponseBody() []byte                 { return h.respBody }
func (h *fakeStreamHost) ReplaceResponseBody(b []byte)         { h.respReplaced = b }
func (h *fakeStreamHost) ResumeResponse()                      { h.resumedResp++ }
func (h *fakeStreamHost) Report(rec *usagelog.Record)          { h.records = append(h.records, *rec) }

// answer answers the oldest pending callout.
func (h *fakeStreamHost) answer(t *testing.T, failed bool, status int, body string) {
	t.Helper()
	require.NotEmpty(t, h.pending, "no callout pending")
	done := h.pending[0]
	h.pending = h.pending[1:]
	done(failed, status, []byte(body))
}

// paths lists the callouts sent, by keystore path.
func (h *fakeStreamHost) paths() []string {
	var out []string
	for _, c := range h.sent {
		out = append(out, c.Path)
	}
	return out
}

const (
	streamCfg  = `{"static_quota": {"header": "x-team", "limit": 100000, "time_unit": "hour"}, "usage": {"enabled": true}}`
	clampCfg   = `{"static_quota": {"header": "x-team", "limit": 100000, "time_unit": "hour"}, "strict": {"enabled": true, "clamp_max_tokens": true}}`
	streamChat = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello there"}],"max_tokens":100}`
	allowed    = `{"results":[{"allowed":true,"limit":100000,"used":300,"remaining":99700,"reset_after_ms":60000,"id":"r1"}]}`
	allowed2   = `{"results":[{"allowed":true,"limit":100000,"used":90,"remaining":10,"reset_after_ms":60000,"id":"r2"}]}`
	denied     = `{"results":[{"allowed":false,"limit":100000,"used":99800,"remaining":200,"reset_after_ms":60000,"retry_after_ms":60000}]}`
	settled    = `{"results":[{"allowed":true,"limit":100000,"used":25,"remaining":99975,"reset_after_ms":60000}]}`
	jsonAnswer = `{"id":"c1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":5,"total_tokens":25}}`
	sseUsage   = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
		"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":5,\"total_tokens\":25}}\n\n" +
		"data: [DONE]\n\n"
	sseNoUsage = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
		"data: [DONE]\n\n"
)

// asked drives a stream to its reservation in flight.
func asked(t *testing.T, s *Stream) {
	t.Helper()
	require.Equal(t, Gather, s.OnRequestHeaders(false))
	require.Equal(t, Pause, s.OnRequestBody([]byte(streamChat)))
	require.True(t, s.Reserving())
}

// reserved drives a stream to an allowed reservation and a resumed request.
func reserved(t *testing.T, s *Stream, h *fakeStreamHost) {
	t.Helper()
	asked(t, s)
	h.answer(t, false, 200, allowed)
	require.False(t, s.Reserving())
	require.Equal(t, 1, h.resumedReq)
}

// respond delivers response headers and a whole body in one chunk.
func respond(s *Stream, h *fakeStreamHost, status, contentType, body string) (Action, Action) {
	h.resp[":status"], h.resp["content-type"] = status, contentType
	a := s.OnResponseHeaders(false)
	h.respBody = []byte(body)
	return a, s.OnResponseBody(len(body), true)
}

func TestStream(t *testing.T) {
	tests := []struct {
		name    string
		cfg     string
		headers map[string]string
		drive   func(t *testing.T, s *Stream, h *fakeStreamHost)
		// what the stream ended with
		status  int      // the local reply's status (0: none)
		paths   []string // the callouts sent, in order
		outcome Outcome  // counted once in the requests metric ("" none)
		record  string   // the usage record's outcome ("" none)
		resumed int      // ContinueRequest calls
	}{
		{name: "GET passes unmetered", headers: map[string]string{":method": "GET"},
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				assert.Equal(t, Continue, s.OnRequestHeaders(true))
				assert.Equal(t, Continue, s.OnResponseHeaders(true))
				s.OnDone()
			}},
		{name: "unknown path refused under a quota", headers: map[string]string{":path": "/v1/images/generations"},
			drive: func(t *testing.T, s *Stream, _ *fakeStreamHost) {
				assert.Equal(t, Pause, s.OnRequestHeaders(false))
				s.OnDone()
			}, status: 403, outcome: OutcomeRejected, record: usagelog.OutcomeRefused},
		{name: "no body", drive: func(t *testing.T, s *Stream, _ *fakeStreamHost) {
			assert.Equal(t, Pause, s.OnRequestHeaders(true))
			s.OnDone()
		}, status: 400, outcome: OutcomeRejected, record: usagelog.OutcomeRefused},
		{name: "body too large", drive: func(t *testing.T, s *Stream, _ *fakeStreamHost) {
			assert.Equal(t, Gather, s.OnRequestHeaders(false))
			assert.Equal(t, Pause, s.BodyTooLarge())
			s.OnDone()
		}, status: 413, outcome: OutcomeRejected, record: usagelog.OutcomeRefused},
		{name: "body unreadable", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			assert.Equal(t, Gather, s.OnRequestHeaders(false))
			assert.Equal(t, Pause, s.BodyUnreadable(errors.New("gone")))
			assert.Len(t, h.errs, 1)
			s.OnDone()
		}, status: 500, outcome: OutcomeRejected, record: usagelog.OutcomeRefused},
		{name: "bad JSON", drive: func(t *testing.T, s *Stream, _ *fakeStreamHost) {
			assert.Equal(t, Gather, s.OnRequestHeaders(false))
			assert.Equal(t, Pause, s.OnRequestBody([]byte(`{"model":`)))
			s.OnDone()
		}, status: 400, outcome: OutcomeRejected, record: usagelog.OutcomeRefused},
		{name: "no quota: unmetered, no callout", cfg: `{"usage": {"enabled": true}}`,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				assert.Equal(t, Gather, s.OnRequestHeaders(false))
				assert.Equal(t, Continue, s.OnRequestBody([]byte(streamChat)))
				a, b := respond(s, h, "200", "application/json", jsonAnswer)
				assert.Equal(t, Continue, a)
				assert.Equal(t, Continue, b)
				s.OnDone()
			}, outcome: OutcomeUnmetered, record: usagelog.OutcomeOK},
		{name: "reserve denied", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			asked(t, s)
			h.answer(t, false, 200, denied)
			assert.EqualValues(t, 1, h.counts[RefusedMetric(s.labels("gpt-4o-mini"))])
			assert.NotEmpty(t, h.replyHeaders, "the refusal carries the budget headers")
			assert.Equal(t, Continue, s.OnResponseHeaders(false), "the local reply's headers pass")
			s.OnDone()
		}, status: 429, paths: []string{PathReserve}, outcome: OutcomeRefused, record: usagelog.OutcomeRefused},
		{name: "denied, clamped and reserved again",
			cfg: `{"static_quota": {"header": "x-team", "limit": 100000, "time_unit": "hour"}, "strict": {"enabled": true, "clamp_max_tokens": true}, "usage": {"enabled": true}}`,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				asked(t, s)
				h.answer(t, false, 200, denied)
				require.True(t, s.Reserving(), "a smaller reservation is on its way")
				assert.Contains(t, string(h.reqBody), `"max_tokens":`)
				assert.NotContains(t, string(h.reqBody), `"max_tokens":100`)
				h.answer(t, false, 200, allowed2)
				assert.Equal(t, 1, h.resumedReq)
				_, b := respond(s, h, "200", "application/json", jsonAnswer)
				assert.Equal(t, Pause, b, "held until settled")
				h.answer(t, false, 200, settled)
				s.OnDone()
			}, paths: []string{PathReserve, PathReserve, PathSettle}, outcome: OutcomeSettled, record: usagelog.OutcomeOK, resumed: 1},
		{name: "denied twice: no second clamp",
			cfg: clampCfg,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				asked(t, s)
				h.answer(t, false, 200, denied)
				h.answer(t, false, 200, denied)
				s.OnDone()
			}, status: 429, paths: []string{PathReserve, PathReserve}, outcome: OutcomeRefused},
		{name: "clamp cannot rewrite the body: refused",
			cfg: clampCfg,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				asked(t, s)
				h.replaceErr = errors.New("no buffer")
				h.answer(t, false, 200, denied)
				assert.Len(t, h.warns, 1)
				s.OnDone()
			}, status: 429, paths: []string{PathReserve}, outcome: OutcomeRefused},
		{name: "clamp's second reservation not sent, fail closed",
			cfg: clampCfg,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				asked(t, s)
				h.refuse = errors.New("no cluster")
				h.answer(t, false, 200, denied)
				s.OnDone()
			}, status: 503, paths: []string{PathReserve}, outcome: OutcomeFailed},
		{name: "clamp's second reservation not sent, fail open",
			cfg: `{"static_quota": {"header": "x-team", "limit": 100000, "time_unit": "hour"}, "strict": {"enabled": true, "clamp_max_tokens": true}, "failure_mode": "open"}`,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				asked(t, s)
				h.refuse = errors.New("no cluster")
				h.answer(t, false, 200, denied)
				assert.Equal(t, 1, h.resumedReq, "the clamped request goes on unreserved")
				respond(s, h, "200", "application/json", jsonAnswer)
				s.OnDone()
				assert.EqualValues(t, 1, h.counts[KeystoreErrorsMetric(OpConsume)], "the consume could not be sent either")
			}, paths: []string{PathReserve}, outcome: OutcomeFailOpen, resumed: 1},
		{name: "SSE ended by trailers", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			reserved(t, s, h)
			h.resp[":status"], h.resp["content-type"] = "200", "text/event-stream"
			assert.Equal(t, Continue, s.OnResponseHeaders(false))
			h.respBody = []byte(sseUsage)
			assert.Equal(t, Continue, s.OnResponseBody(len(sseUsage), false))
			assert.Equal(t, Continue, s.OnResponseTrailers())
			assert.Equal(t, Continue, s.OnResponseTrailers(), "accounted once")
			s.OnDone()
			assert.Contains(t, string(h.sent[1].Body), `"actual":25`)
		}, paths: []string{PathReserve, PathSettle}, outcome: OutcomeSettled, record: usagelog.OutcomeOK, resumed: 1},
		{name: "keystore down, fail closed", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			asked(t, s)
			h.answer(t, true, 0, "")
			assert.EqualValues(t, 1, h.counts[KeystoreErrorsMetric(OpReserve)])
			s.OnDone()
		}, status: 503, paths: []string{PathReserve}, outcome: OutcomeFailed, record: usagelog.OutcomeRefused},
		{name: "keystore down, fail open: the usage is consumed",
			cfg: `{"static_quota": {"header": "x-team", "limit": 100000, "time_unit": "hour"}, "failure_mode": "open"}`,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				asked(t, s)
				h.answer(t, false, 503, `{"error":{"message":"down"}}`)
				assert.Equal(t, 1, h.resumedReq)
				a, b := respond(s, h, "200", "application/json", jsonAnswer)
				assert.Equal(t, Continue, a, "nothing reserved: nothing held")
				assert.Equal(t, Continue, b)
				assert.Empty(t, h.pending, "the consume waits for OnDone")
				s.OnDone()
				assert.Contains(t, string(h.sent[1].Body), `"n":25`)
			}, paths: []string{PathReserve, PathConsume}, outcome: OutcomeFailOpen, resumed: 1},
		{name: "callout not sent, fail open",
			cfg: `{"static_quota": {"header": "x-team", "limit": 100000, "time_unit": "hour"}, "failure_mode": "open"}`,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				h.refuse = errors.New("no cluster")
				assert.Equal(t, Gather, s.OnRequestHeaders(false))
				assert.Equal(t, Continue, s.OnRequestBody([]byte(streamChat)))
				s.OnDone() // no response: nothing seen, nothing consumed, nothing counted
				assert.EqualValues(t, 1, h.counts[KeystoreErrorsMetric(OpReserve)])
			}},
		{name: "JSON held until settled", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			reserved(t, s, h)
			h.resp["content-length"] = "300"
			a, b := respond(s, h, "200", "application/json", jsonAnswer)
			assert.Equal(t, Pause, a, "headers held")
			assert.Equal(t, Pause, b, "body held while the settle is out")
			assert.Empty(t, h.resp[s.pol.Headers.Remaining], "no budget shown before the settle")
			h.answer(t, false, 200, settled)
			assert.Equal(t, 1, h.resumedResp)
			assert.Equal(t, "99975", h.resp[s.pol.Headers.Remaining], "the settled budget is shown")
			s.OnDone()
			assert.Contains(t, string(h.sent[1].Body), `"actual":25`)
		}, paths: []string{PathReserve, PathSettle}, outcome: OutcomeSettled, record: usagelog.OutcomeOK, resumed: 1},
		{name: "JSON held, settle fails: the reservation is shown", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			reserved(t, s, h)
			_, b := respond(s, h, "200", "application/json", jsonAnswer)
			assert.Equal(t, Pause, b)
			h.answer(t, true, 0, "")
			assert.Equal(t, 1, h.resumedResp)
			assert.Equal(t, "99700", h.resp[s.pol.Headers.Remaining])
			assert.Equal(t, []string{OpSettle}, h.queued, "queued for retry")
			s.OnDone()
		}, paths: []string{PathReserve, PathSettle}, outcome: OutcomeSettled, record: usagelog.OutcomeOK, resumed: 1},
		{name: "JSON held, client gone before the settle answered", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			reserved(t, s, h)
			_, b := respond(s, h, "200", "application/json", jsonAnswer)
			assert.Equal(t, Pause, b)
			s.OnDone()
			h.answer(t, false, 200, settled)
			assert.Zero(t, h.resumedResp, "nothing resumed on a gone stream")
		}, paths: []string{PathReserve, PathSettle}, outcome: OutcomeSettled, record: usagelog.OutcomeOK, resumed: 1},
		{name: "JSON too large to hold passes", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			reserved(t, s, h)
			h.resp["content-length"] = "999999999"
			a, b := respond(s, h, "200", "application/json", jsonAnswer)
			assert.Equal(t, Continue, a)
			assert.Equal(t, Continue, b)
			assert.Equal(t, "99700", h.resp[s.pol.Headers.Remaining], "the reservation is shown")
			assert.Equal(t, []string{PathReserve}, h.paths(), "the settle waits for OnDone")
			s.OnDone()
		}, paths: []string{PathReserve, PathSettle}, outcome: OutcomeSettled, record: usagelog.OutcomeOK, resumed: 1},
		{name: "held body outgrows the hold limit", cfg: `{"static_quota": {"header": "x-team", "limit": 100000, "time_unit": "hour"}, "hold_response_bytes": 64}`,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				reserved(t, s, h)
				h.resp[":status"], h.resp["content-type"] = "200", "application/json"
				assert.Equal(t, Pause, s.OnResponseHeaders(false))
				h.respBody = []byte(jsonAnswer)
				assert.Equal(t, Continue, s.OnResponseBody(len(jsonAnswer), true))
				assert.Equal(t, "99700", h.resp[s.pol.Headers.Remaining])
				s.OnDone()
			}, paths: []string{PathReserve, PathSettle}, outcome: OutcomeSettled, resumed: 1},
		{name: "JSON held, ended by trailers", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			reserved(t, s, h)
			h.resp[":status"], h.resp["content-type"] = "200", "application/json"
			assert.Equal(t, Pause, s.OnResponseHeaders(false))
			h.respBody = []byte(jsonAnswer)
			assert.Equal(t, Pause, s.OnResponseBody(len(jsonAnswer), false))
			assert.Equal(t, Pause, s.OnResponseTrailers())
			h.answer(t, false, 200, settled)
			assert.Equal(t, 1, h.resumedResp)
			s.OnDone()
		}, paths: []string{PathReserve, PathSettle}, outcome: OutcomeSettled, record: usagelog.OutcomeOK, resumed: 1},
		{name: "upstream error releases", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			reserved(t, s, h)
			a, b := respond(s, h, "503", "application/json", `{"error":{"message":"overloaded"}}`)
			assert.Equal(t, Continue, a)
			assert.Equal(t, Continue, b)
			assert.Equal(t, strconv.FormatInt(min(99700+s.plan.Amount, 100000), 10), h.resp[s.pol.Headers.Remaining], "the budget without the reservation")
			s.OnDone()
		}, paths: []string{PathReserve, PathRelease}, outcome: OutcomeReleased, record: usagelog.OutcomeOK, resumed: 1},
		{name: "SSE with usage settles at OnDone", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			reserved(t, s, h)
			a, b := respond(s, h, "200", "text/event-stream", sseUsage)
			assert.Equal(t, Continue, a, "a stream is never held")
			assert.Equal(t, Continue, b)
			assert.Equal(t, "99700", h.resp[s.pol.Headers.Remaining])
			assert.Equal(t, []string{PathReserve}, h.paths())
			s.OnDone()
			assert.Contains(t, string(h.sent[1].Body), `"actual":25`)
		}, paths: []string{PathReserve, PathSettle}, outcome: OutcomeSettled, record: usagelog.OutcomeOK, resumed: 1},
		{name: "SSE without usage settles an estimate", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			reserved(t, s, h)
			respond(s, h, "200", "text/event-stream", sseNoUsage)
			s.OnDone()
			assert.NotContains(t, string(h.sent[1].Body), `"actual":0`)
		}, paths: []string{PathReserve, PathSettle}, outcome: OutcomeSettled, record: usagelog.OutcomeOK, resumed: 1},
		{name: "SSE aborted mid-stream settles what streamed", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			reserved(t, s, h)
			h.resp[":status"], h.resp["content-type"] = "200", "text/event-stream"
			assert.Equal(t, Continue, s.OnResponseHeaders(false))
			first := sseNoUsage[:strings.Index(sseNoUsage, "data: [DONE]")]
			h.respBody = []byte(first)
			assert.Equal(t, Continue, s.OnResponseBody(len(first), false))
			s.OnDone()
		}, paths: []string{PathReserve, PathSettle}, outcome: OutcomeAborted, record: usagelog.OutcomeAborted, resumed: 1},
		{name: "SSE aborted, on_abort release", cfg: `{"static_quota": {"header": "x-team", "limit": 100000, "time_unit": "hour"}, "on_abort": "release"}`,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				reserved(t, s, h)
				h.resp[":status"], h.resp["content-type"] = "200", "text/event-stream"
				s.OnResponseHeaders(false)
				s.OnDone()
			}, paths: []string{PathReserve, PathRelease}, outcome: OutcomeReleased, resumed: 1},
		{name: "gone before any response: released", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			reserved(t, s, h)
			s.OnDone()
		}, paths: []string{PathReserve, PathRelease}, outcome: OutcomeReleased, record: usagelog.OutcomeAborted, resumed: 1},
		{name: "gone while reserving: the late reservation is released", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			asked(t, s)
			s.OnDone()
			h.answer(t, false, 200, allowed)
			assert.Zero(t, h.resumedReq)
		}, paths: []string{PathReserve, PathRelease}, record: usagelog.OutcomeAborted},
		{name: "gone while reserving, then denied: nothing to release", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			asked(t, s)
			s.OnDone()
			h.answer(t, false, 200, denied)
			assert.Empty(t, h.replies)
		}, paths: []string{PathReserve}, record: usagelog.OutcomeAborted},
		{name: "OnDone twice sends once", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			reserved(t, s, h)
			respond(s, h, "200", "text/event-stream", sseUsage)
			s.OnDone()
			s.OnDone()
		}, paths: []string{PathReserve, PathSettle}, outcome: OutcomeSettled, record: usagelog.OutcomeOK, resumed: 1},
		{name: "body rewrite fails", drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
			h.replaceErr = errors.New("no buffer")
			assert.Equal(t, Gather, s.OnRequestHeaders(false))
			body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}],"stream":true}`
			assert.Equal(t, Pause, s.OnRequestBody([]byte(body)), "include_usage is injected: the body is rewritten")
			s.OnDone()
		}, status: 500, outcome: OutcomeRejected, record: usagelog.OutcomeRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg == "" {
				cfg = streamCfg
			}
			pol := mustParse(t, cfg)
			h := newFakeStreamHost(tt.headers)
			s := NewStream(h, pol, NewLabelSet(pol.MetricModels, pol.MaxMetricModels), NewLabelSet(nil, pol.MaxMetricApps), pol.Usage.Enabled)
			tt.drive(t, s, h)
			if tt.status != 0 {
				require.Len(t, h.replies, 1)
				assert.Equal(t, tt.status, h.replies[0].Status)
			} else {
				assert.Empty(t, h.replies)
			}
			assert.Equal(t, tt.paths, h.paths())
			for len(h.pending) > 0 { // the settlements OnDone sent without waiting: answering them changes nothing
				resumed := h.resumedResp
				h.answer(t, false, 200, settled)
				assert.Equal(t, resumed, h.resumedResp)
			}
			if tt.outcome != "" {
				model := ""
				if s.plan != nil {
					model = s.plan.Model
				}
				assert.EqualValues(t, 1, h.counts[RequestsMetric(s.labels(model), tt.outcome)], "outcome %s: %v", tt.outcome, h.counts)
			}
			assert.Equal(t, tt.resumed, h.resumedReq)
			if tt.record == "" {
				assert.Empty(t, h.records)
				return
			}
			require.Len(t, h.records, 1)
			rec := h.records[0]
			assert.Equal(t, tt.record, rec.Outcome)
			assert.Equal(t, "req-1", rec.RequestID)
			assert.Positive(t, rec.Latency)
		})
	}
}
