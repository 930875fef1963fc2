// Package guard is the guardrails filter: threat protection on the path,
// query, headers and named JSON fields; sensitive-data detectors on the
// texts that reach the model and on its answers, JSON and streamed, with
// block, mask or log actions per product and app; and an optional
// Model Armor-style moderation callout with a shared verdict cache. The
// policy lives in filters/guard/policy, filters/guard/masker and
// filters/guard/detector; this file only wires it to the proxy-wasm
// callbacks.
//
// The PluginConfig must set allow_on_headers_stop_iteration: true, or Envoy
// never delivers the request body this filter pauses for.
package guard

import (
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/filters/guard/policy"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/cache"
	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/table/shareddata"
)

// RootID is the root_id a module holding several filters registers New under.
const RootID = "guard"

// New creates the filter's root context, for proxywasm.SetPluginFactory or
// proxywasm.RegisterPlugin; wasm/ is the standalone module.
func New(uint32) proxywasm.PluginContext { return &plugin{} }

// plugin is one configured instance of the filter in one VM.
type plugin struct {
	proxywasm.DefaultPluginContext
	pol      *policy.Policy
	verdicts *cache.Cache // nil without moderation or cache
	metrics  *proxywasm.Metrics
}

// OnPluginStart compiles the configuration once for every stream.
func (p *plugin) OnPluginStart(config []byte) error {
	pol, err := policy.Parse(config)
	if err != nil {
		return err
	}
	p.pol = pol
	p.metrics = proxywasm.NewMetrics("guard")
	if m := pol.Moderation; m != nil && m.CacheTTL > 0 {
		c, err := cache.New(shareddata.Store{}, cache.Options{Namespace: "tollgate.guard.v1.moderation", MaxEntries: m.CacheEntries})
		if err != nil {
			return err
		}
		if err := c.Init(); err != nil {
			return err
		}
		p.verdicts = c
	}
	proxywasm.Log(proxywasm.LogLevelInfo, "guard: "+strconv.Itoa(len(pol.Names()))+" rules and sets configured")
	return nil
}

// count adds decisions to the Prometheus counters (best effort: hosts
// without custom metrics still run the filter).
func (p *plugin) count(product string, ds []policy.Decision) {
	for _, d := range ds {
		if d.Count > 0 {
			p.metrics.Add(policy.MetricName(d, product), uint64(d.Count))
		}
	}
}

// NewHttpContext starts the state of one stream.
func (p *plugin) NewHttpContext(uint32) proxywasm.HttpContext { return &stream{p: p} }

type stream struct {
	proxywasm.DefaultHttpContext
	p       *plugin
	prof    *policy.Compiled
	product string
	body    proxywasm.BodyGatherer
	replied bool
	ended   bool

	decisions []policy.Decision

	sse      *policy.StreamMasker
	jsonResp bool
	dropRest bool // the answer was replaced: later upstream bytes never reach the client
}

func header(name string) string {
	v, _ := proxywasm.RequestHeaders.Get(name)
	return v
}

func (s *stream) note(ds []policy.Decision) {
	if len(ds) == 0 {
		return
	}
	s.p.count(s.product, ds)
	s.decisions = append(s.decisions, ds...)
	if !s.ended {
		_ = proxywasm.SetProperty([]string{"tollgate.guard.decisions"}, []byte(policy.Summary(s.decisions)))
	}
}

func (s *stream) OnRequestHeaders(_ int, endOfStream bool) proxywasm.Action {
	s.prof, s.product = s.p.pol.Profile(header)
	if s.prof == nil {
		return proxywasm.ActionContinue
	}
	path, _ := proxywasm.RequestHeaders.Get(":path")
	if e, ds := s.prof.CheckHeaders(path, header); e != nil {
		s.note(ds)
		return s.reject(e)
	}
	if s.prof.ScansResponse() {
		// Answers must arrive uncompressed to be scanned.
		_ = proxywasm.RequestHeaders.Remove("accept-encoding")
	}
	if endOfStream || !s.prof.ScansRequestBody() {
		return proxywasm.ActionContinue
	}
	s.body.Limit = s.p.pol.MaxBodyBytes
	return s.body.Start()
}

func (s *stream) OnRequestBody(bodySize int, endOfStream bool) proxywasm.Action {
	return s.body.OnBody(bodySize, endOfStream, s)
}

func (s *stream) OnRequestTrailers(int) proxywasm.Action { return s.body.OnTrailers(s) }

// BodyTooLarge answers 413 before the whole body is read.
func (s *stream) BodyTooLarge() proxywasm.Action {
	return s.reject(apierror.New(413, "request_too_large", "the request body is larger than the gateway scans ("+strconv.FormatInt(s.p.pol.MaxBodyBytes, 10)+" bytes)"))
}

// BodyUnreadable answers 500 when the host cannot return the body.
func (s *stream) BodyUnreadable(err error) proxywasm.Action {
	proxywasm.Log(proxywasm.LogLevelError, "guard: read request body: "+err.Error())
	return s.reject(apierror.New(500, "internal_error", "the gateway could not read the request body"))
}

// BodyComplete scans the whole body, rewrites it when masked, and asks the
// moderation service when the profile wants it.
func (s *stream) BodyComplete(body []byte) proxywasm.Action {
	res := s.prof.CheckBody(body, s.p.pol.MaxBodyBytes)
	s.note(res.Decisions)
	if res.Err != nil {
		return s.reject(res.Err)
	}
	if res.Body != nil {
		if err := proxywasm.ReplaceRequestBody(res.Body); err != nil {
			proxywasm.Log(proxywasm.LogLevelError, "guard: rewrite request body: "+err.Error())
			return s.reject(apierror.New(500, "internal_error", "the gateway could not rewrite the request body"))
		}
	}
	if len(res.Texts) == 0 {
		return proxywasm.ActionContinue
	}
	return s.moderate(res.Texts, policy.Request, proxywasm.ContinueRequest)
}

// moderate checks texts with the moderation service (or its cached
// verdict); resume continues the paused side when the answer allows it.
func (s *stream) moderate(texts []string, dir policy.Direction, resume func() error) proxywasm.Action {
	m := s.p.pol.Moderation
	call := m.NewCall(texts)
	now := time.Now()
	if s.p.verdicts != nil {
		if v, _, ok, err := s.p.verdicts.Get(call.Key, now); err == nil && ok {
			if vd, ok := policy.DecodeVerdict(v); ok {
				return s.verdict(vd, dir)
			}
		}
	}
	_, err := proxywasm.DispatchHttpCall(m.Cluster, m.Headers(call.Body), call.Body, nil, m.Timeout, func(r *proxywasm.CallResponse) {
		if s.ended {
			return
		}
		var act proxywasm.Action
		if r.Failed {
			act = s.moderationFailed(dir, "no answer")
		} else if vd, err := policy.ParseVerdict(r.Status, r.Body, s.prof.Moderation); err != nil {
			act = s.moderationFailed(dir, err.Error())
		} else {
			if s.p.verdicts != nil {
				_ = s.p.verdicts.Put(call.Key, vd.Encode(), time.Now().Add(m.CacheTTL), time.Now())
			}
			act = s.verdict(vd, dir)
		}
		if act == proxywasm.ActionContinue {
			if err := resume(); err != nil {
				proxywasm.Log(proxywasm.LogLevelWarn, "guard: resume: "+err.Error())
			}
		}
	})
	if err != nil {
		return s.moderationFailed(dir, err.Error())
	}
	return proxywasm.ActionPause
}

func (s *stream) verdict(v policy.Verdict, dir policy.Direction) proxywasm.Action {
	if v.Category == "" {
		return proxywasm.ActionContinue
	}
	s.note([]policy.Decision{{Rule: "moderation", Action: "block", Direction: dir, Count: 1}})
	return s.refuse(policy.ModerationError(v, dir), dir)
}

func (s *stream) moderationFailed(dir policy.Direction, why string) proxywasm.Action {
	proxywasm.Log(proxywasm.LogLevelWarn, "guard: moderation: "+why)
	if s.prof.ModerationFailOpen(s.p.pol.Moderation) {
		s.note([]policy.Decision{{Rule: "moderation", Action: "fail_open", Direction: dir, Count: 1}})
		return proxywasm.ActionContinue
	}
	s.note([]policy.Decision{{Rule: "moderation", Action: "fail_closed", Direction: dir, Count: 1}})
	return s.refuse(apierror.New(503, "guard_moderation_unavailable", "the content safety check is unavailable; try again later"), dir)
}

// refuse answers an error on the request side, or replaces a held answer.
func (s *stream) refuse(e *apierror.Error, dir policy.Direction) proxywasm.Action {
	if dir == policy.Request {
		return s.reject(e)
	}
	s.replaceAnswer(e)
	return proxywasm.ActionContinue
}

func (s *stream) reject(e *apierror.Error) proxywasm.Action {
	s.replied = true
	if err := proxywasm.SendError(e, s.p.pol.Style); err != nil {
		proxywasm.Log(proxywasm.LogLevelError, "guard: send "+strconv.Itoa(e.Status)+": "+err.Error())
	}
	return proxywasm.ActionPause
}

// ---- response ----

func (s *stream) OnResponseHeaders(_ int, endOfStream bool) proxywasm.Action {
	if s.prof == nil || s.replied || endOfStream || !s.prof.ScansResponse() {
		return proxywasm.ActionContinue
	}
	status, _ := proxywasm.ResponseHeaders.Get(":status")
	if !strings.HasPrefix(status, "2") {
		return proxywasm.ActionContinue
	}
	if ce, _ := proxywasm.ResponseHeaders.Get("content-encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		proxywasm.Log(proxywasm.LogLevelWarn, "guard: "+ce+" answer passes unscanned")
		return proxywasm.ActionContinue
	}
	ct, _ := proxywasm.ResponseHeaders.Get("content-type")
	mt, _, _ := strings.Cut(strings.ToLower(ct), ";")
	switch strings.TrimSpace(mt) {
	case "text/event-stream":
		if s.prof.Response.Empty() {
			return proxywasm.ActionContinue
		}
		_ = proxywasm.ResponseHeaders.Remove("content-length")
		s.sse = s.prof.NewStreamMasker(s.p.pol.MaxHold)
		return proxywasm.ActionContinue
	case "application/json":
		s.jsonResp = true
		return proxywasm.ActionPause // until the answer is scanned
	}
	return proxywasm.ActionContinue
}

func (s *stream) OnResponseBody(bodySize int, endOfStream bool) proxywasm.Action {
	switch {
	case s.dropRest:
		if bodySize > 0 {
			_ = proxywasm.ResponseBody.Replace(nil)
		}
		return proxywasm.ActionContinue
	case s.sse != nil:
		var chunk []byte
		if bodySize > 0 {
			chunk, _ = proxywasm.ResponseBody.Get(0, bodySize)
		}
		now := time.Now()
		out := append([]byte(nil), s.sse.Feed(chunk, now)...)
		if endOfStream {
			out = append(out, s.sse.Finish(now)...)
			s.note(s.sse.Decisions())
			s.sse = nil
		}
		if err := proxywasm.ResponseBody.Replace(out); err != nil {
			proxywasm.Log(proxywasm.LogLevelWarn, "guard: rewrite stream: "+err.Error())
		}
		return proxywasm.ActionContinue
	case s.jsonResp:
		if int64(bodySize) > s.p.pol.MaxResponseBytes {
			s.jsonResp = false
			s.replaceAnswer(apierror.New(502, "guard_answer_too_large", "the answer is larger than the gateway scans"))
			s.dropRest = !endOfStream
			return proxywasm.ActionContinue
		}
		if !endOfStream {
			return proxywasm.ActionPause
		}
		s.jsonResp = false
		return s.scanAnswer()
	}
	return proxywasm.ActionContinue
}

// OnResponseTrailers ends a held answer whose body ended with trailers.
func (s *stream) OnResponseTrailers(int) proxywasm.Action {
	if s.jsonResp {
		s.jsonResp = false
		return s.scanAnswer()
	}
	return proxywasm.ActionContinue
}

func (s *stream) scanAnswer() proxywasm.Action {
	body, _ := proxywasm.ResponseBody.GetAll()
	res := s.prof.CheckAnswer(body, s.p.pol.MaxResponseBytes)
	s.note(res.Decisions)
	if res.Err != nil {
		s.replaceAnswer(res.Err)
		return proxywasm.ActionContinue
	}
	if res.Body != nil {
		_ = proxywasm.ResponseBody.Replace(res.Body)
		_ = proxywasm.ResponseHeaders.Replace("content-length", strconv.Itoa(len(res.Body)))
	}
	if len(res.Texts) == 0 {
		return proxywasm.ActionContinue
	}
	return s.moderate(res.Texts, policy.Response, proxywasm.ContinueResponse)
}

// replaceAnswer turns a held answer into an error answer.
func (s *stream) replaceAnswer(e *apierror.Error) {
	body := e.Body(s.p.pol.Style)
	_ = proxywasm.ResponseHeaders.Replace(":status", strconv.Itoa(e.Status))
	_ = proxywasm.ResponseHeaders.Replace("content-type", "application/json")
	_ = proxywasm.ResponseHeaders.Replace("content-length", strconv.Itoa(len(body)))
	_ = proxywasm.ResponseBody.Replace(body)
}

// OnDone marks the stream gone so late callouts do nothing, and counts
// the decisions of a streamed answer cut short.
func (s *stream) OnDone() {
	s.ended = true
	if s.sse != nil {
		s.note(s.sse.Decisions())
		s.sse = nil
	}
}
