// Package modelroute is the model-aware routing filter: it reads the model
// from an OpenAI-style request body, sets the routing header Envoy's routes
// match on (re-selecting the route), rewrites aliases to backend names,
// splits traffic by weight, enforces the caller's allowed models and maps the
// response's model back. The policy lives in filters/modelroute/route; this
// file only wires it to the proxy-wasm callbacks, and wasm/ is the module
// that registers New.
//
// The PluginConfig must set allow_on_headers_stop_iteration: true, or Envoy
// never delivers the body callbacks this filter pauses for.
package modelroute

import (
	"errors"
	"math/rand/v2"
	"strconv"

	"github.com/tollgate/tollgate/filters/modelroute/route"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/proxywasm"
)

// RootID is the root_id a module holding several filters registers New under.
const RootID = "modelroute"

// New creates the filter's root context, for proxywasm.SetPluginFactory or
// proxywasm.RegisterPlugin.
func New(uint32) proxywasm.PluginContext { return &plugin{} }

// plugin is one configured instance of the filter in one VM.
type plugin struct {
	proxywasm.DefaultPluginContext
	policy  *route.Policy
	metrics *proxywasm.Metrics
	// requestNames are the request counters' names by model and target,
	// built once: no string is built per request.
	requestNames map[[2]string]string
	// clientHeaders are the headers a client may not set (the policy's
	// ClientHeaders, listed once).
	clientHeaders []string
}

// OnPluginStart parses the configuration and defines the bounded set of
// metrics, so every model, target and rejection reason shows up at zero.
func (p *plugin) OnPluginStart(config []byte) error {
	pol, err := route.Parse(config)
	if err != nil {
		return err
	}
	p.policy = pol
	p.clientHeaders = pol.ClientHeaders()
	p.metrics = proxywasm.NewMetrics("modelroute")
	p.requestNames = map[[2]string]string{}
	names := []string{}
	for _, m := range pol.Models() {
		for _, t := range m.Targets {
			name := route.RequestsMetric(m.Name, t.Route)
			p.requestNames[[2]string{m.Name, t.Route}] = name
			names = append(names, name)
		}
		names = append(names, route.RewritesMetric(m.Name, "request"))
		if m.MapResponse {
			names = append(names, route.RewritesMetric(m.Name, "response"))
		}
	}
	if pol.Passthrough {
		names = append(names, route.RequestsMetric(route.OtherModel, route.OtherModel))
	}
	for _, code := range rejectionCodes {
		names = append(names, route.RejectionsMetric(code))
	}
	if err := p.metrics.Define(names...); err != nil {
		return err
	}
	proxywasm.Log(proxywasm.LogLevelInfo, "modelroute: "+strconv.Itoa(len(pol.Models()))+" model(s), routing header "+pol.RoutingHeader)
	return nil
}

// rejectionCodes are every error code the filter answers with.
var rejectionCodes = []string{
	route.CodeInvalidJSON, route.CodeMissingModel, route.CodeInvalidModel, route.CodeInvalidContentType,
	route.CodeTooLarge, route.CodeModelNotFound, route.CodeModelNotAllowed, route.CodeNoIdentity, codeInternal,
}

const codeInternal = "internal_error"

// NewHttpContext starts the state of one stream.
func (p *plugin) NewHttpContext(uint32) proxywasm.HttpContext { return &stream{p: p} }

// stream follows one request through buffering, routing and response mapping.
type stream struct {
	proxywasm.DefaultHttpContext
	p        *plugin
	body     proxywasm.BodyGatherer // the request body, gathered before routing
	decision route.Decision
	mapping  route.ResponseKind
	mapper   *route.StreamMapper
	respSeen bool // the response's model was mapped at least once
}

// requestHeaders adapts the host's request headers to route.Headers.
type requestHeaders struct{}

func (requestHeaders) Get(name string) (string, bool) {
	v, err := proxywasm.RequestHeaders.Get(name)
	return v, err == nil
}

// randSource is the runtime's random generator (seeded through WASI random_get).
type randSource struct{}

func (randSource) Uint64N(n uint64) uint64 { return rand.Uint64N(n) }

func (s *stream) OnRequestHeaders(_ int, endOfStream bool) proxywasm.Action {
	pol := s.p.policy
	for _, h := range s.p.clientHeaders {
		_ = proxywasm.RequestHeaders.Remove(h)
	}
	path, _ := proxywasm.RequestHeaders.Get(":path")
	st := pol.Begin(path, requestHeaders{}, endOfStream)
	switch st.Step {
	case route.Reject:
		return s.reject(st.Err)
	case route.Buffer:
		s.body.Limit = pol.MaxBodyBytes
		return s.body.Start()
	}
	return proxywasm.ActionContinue
}

func (s *stream) OnRequestBody(bodySize int, endOfStream bool) proxywasm.Action {
	return s.body.OnBody(bodySize, endOfStream, s)
}

// OnRequestTrailers finishes a request whose body ended with trailers (HTTP/2
// gRPC-style requests never see end_of_stream in a body callback).
func (s *stream) OnRequestTrailers(int) proxywasm.Action {
	return s.body.OnTrailers(s)
}

// BodyTooLarge answers 413 before the whole body is read.
func (s *stream) BodyTooLarge() proxywasm.Action {
	return s.reject(s.p.policy.TooLarge())
}

// BodyUnreadable answers 500 when the host cannot return the body.
func (s *stream) BodyUnreadable(err error) proxywasm.Action {
	return s.internal("read request body", err)
}

// BodyComplete decides on the whole body and applies the decision.
func (s *stream) BodyComplete(body []byte) proxywasm.Action {
	pol := s.p.policy
	d, aerr := pol.DecideMemo(proxywasm.RequestMemo(), body, requestHeaders{}, randSource{})
	if aerr != nil {
		return s.reject(aerr)
	}
	model := d.Model
	if model == "" {
		model = route.OtherModel
	}
	if d.Body != nil {
		if err := proxywasm.ReplaceRequestBody(d.Body); err != nil {
			return s.internal("rewrite request body", err)
		}
		s.p.metrics.Inc(route.RewritesMetric(model, "request"))
	}
	for _, h := range d.Headers(pol) {
		if err := proxywasm.RequestHeaders.Replace(h[0], h[1]); err != nil {
			return s.internal("set "+h[0], err)
		}
	}
	// Header changes already clear the route cache for ABI 0.2.x modules;
	// the foreign function makes it explicit where the host has it.
	if err := proxywasm.ClearRouteCache(); err != nil && !errors.Is(err, proxywasm.ErrNotFound) && !errors.Is(err, proxywasm.ErrUnimplemented) {
		proxywasm.Log(proxywasm.LogLevelDebug, "modelroute: clear_route_cache: "+err.Error())
	}
	target := d.Target
	if d.Model == "" {
		target = route.OtherModel
	}
	name, ok := s.p.requestNames[[2]string{model, target}]
	if !ok {
		name = route.RequestsMetric(model, target)
	}
	s.p.metrics.Inc(name)
	d.Body = nil // the proxy holds the body now; do not keep megabytes for the stream's lifetime
	s.decision = d
	return proxywasm.ActionContinue
}

func (s *stream) reject(e *apierror.Error) proxywasm.Action {
	s.p.metrics.Inc(route.RejectionsMetric(e.Code))
	if err := proxywasm.SendError(e, s.p.policy.Style); err != nil {
		proxywasm.Log(proxywasm.LogLevelError, "modelroute: send "+strconv.Itoa(e.Status)+": "+err.Error())
	}
	return proxywasm.ActionPause
}

func (s *stream) internal(what string, err error) proxywasm.Action {
	proxywasm.Log(proxywasm.LogLevelError, "modelroute: "+what+": "+err.Error())
	return s.reject(apierror.New(500, codeInternal, "the gateway could not route this request"))
}

func (s *stream) OnResponseHeaders(_ int, endOfStream bool) proxywasm.Action {
	if !s.decision.MapResponse || endOfStream {
		return proxywasm.ActionContinue
	}
	ct, _ := proxywasm.ResponseHeaders.Get("content-type")
	ce, _ := proxywasm.ResponseHeaders.Get("content-encoding")
	kind := route.ResponseKindFor(ct, ce)
	if kind == route.ResponseJSON {
		if cl, err := proxywasm.ResponseHeaders.Get("content-length"); err == nil {
			if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n > s.p.policy.MaxResponseBytes {
				kind = route.ResponseUntouched
			}
		}
	}
	if kind == route.ResponseUntouched {
		return proxywasm.ActionContinue
	}
	// The mapped body has another length; HTTP/1 falls back to chunked.
	_ = proxywasm.ResponseHeaders.Remove("content-length")
	s.mapping = kind
	if kind == route.ResponseSSE {
		s.mapper = route.NewStreamMapper(s.decision.BackendModel, s.decision.Model, int(s.p.policy.MaxResponseBytes))
	}
	return proxywasm.ActionContinue
}

func (s *stream) OnResponseBody(bodySize int, endOfStream bool) proxywasm.Action {
	switch s.mapping {
	case route.ResponseJSON:
		if int64(bodySize) > s.p.policy.MaxResponseBytes {
			s.mapping = route.ResponseUntouched // too large to hold: forward unmapped
			return proxywasm.ActionContinue
		}
		if !endOfStream {
			return proxywasm.ActionPause
		}
		s.mapJSON()
	case route.ResponseSSE:
		return s.mapStream(endOfStream)
	}
	return proxywasm.ActionContinue
}

// OnResponseTrailers finishes mapping when the body ended with trailers.
func (s *stream) OnResponseTrailers(int) proxywasm.Action {
	switch s.mapping {
	case route.ResponseJSON:
		s.mapJSON()
	case route.ResponseSSE:
		s.mapStream(true)
	}
	return proxywasm.ActionContinue
}

func (s *stream) mapJSON() {
	s.mapping = route.ResponseUntouched
	body, err := proxywasm.ResponseBody.GetAll()
	if err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "modelroute: read response body: "+err.Error())
		return
	}
	out, ok := route.MapModel(body, s.decision.BackendModel, s.decision.Model)
	if !ok {
		return
	}
	if err := proxywasm.ResponseBody.Replace(out); err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "modelroute: rewrite response body: "+err.Error())
		return
	}
	s.p.metrics.Inc(route.RewritesMetric(s.decision.Model, "response"))
}

func (s *stream) mapStream(final bool) proxywasm.Action {
	buf, err := proxywasm.ResponseBody.GetAll()
	if err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "modelroute: read response body: "+err.Error())
		s.mapping = route.ResponseUntouched
		return proxywasm.ActionContinue
	}
	out, unchanged, hold := s.mapper.Map(buf, final)
	if hold {
		return proxywasm.ActionPause
	}
	if !unchanged {
		if err := proxywasm.ResponseBody.Replace(out); err != nil {
			proxywasm.Log(proxywasm.LogLevelWarn, "modelroute: rewrite response body: "+err.Error())
		}
	}
	if !s.respSeen && s.mapper.Mapped() > 0 {
		s.respSeen = true
		s.p.metrics.Inc(route.RewritesMetric(s.decision.Model, "response"))
	}
	if final {
		s.mapping = route.ResponseUntouched
	}
	return proxywasm.ActionContinue
}
