// Package hello is the template filter: the smallest filter with every part
// a Tollgate filter has (see CONTRIBUTING.md, "Anatomy of a filter"). It
// greets the caller the apikey filter identified in an x-hello request
// header, says hello in the response, answers 403 for denied paths, and
// counts both outcomes. greet/ is its policy; this file only wires the
// proxy-wasm callbacks to it; wasm/ is its standalone module.
package hello

import (
	"strconv"

	"github.com/tollgate/tollgate/examples/filter/hello/greet"
	"github.com/tollgate/tollgate/shared/proxywasm"
)

// RootID is the root_id a module holding several filters registers New under.
const RootID = "hello"

// New creates the filter's root context, for proxywasm.SetPluginFactory or
// proxywasm.RegisterPlugin.
func New(uint32) proxywasm.PluginContext { return &plugin{} }

// plugin is one configured instance of the filter in one VM.
type plugin struct {
	proxywasm.DefaultPluginContext
	pol     *greet.Policy
	metrics *proxywasm.Metrics
}

// OnPluginStart parses the configuration; an error makes Envoy refuse it.
func (p *plugin) OnPluginStart(raw []byte) error {
	pol, err := greet.Parse(raw)
	if err != nil {
		return err
	}
	p.pol = pol
	p.metrics = proxywasm.NewMetrics("hello")
	return p.metrics.Define(greet.MetricGreeted, greet.MetricDenied)
}

// NewHttpContext starts the state of one stream.
func (p *plugin) NewHttpContext(uint32) proxywasm.HttpContext { return &stream{p: p} }

// stream is one request through the filter.
type stream struct {
	proxywasm.DefaultHttpContext
	p       *plugin
	replied bool
}

// OnRequestHeaders decides on the path and the caller, then greets or refuses.
func (s *stream) OnRequestHeaders(int, bool) proxywasm.Action {
	path, _ := proxywasm.RequestHeaders.Get(":path")
	app, _ := proxywasm.RequestHeaders.Get(greet.AppHeader)
	d := s.p.pol.Decide(path, app)
	if d.Err != nil {
		s.p.metrics.Inc(greet.MetricDenied)
		s.replied = true
		if err := proxywasm.SendError(d.Err, s.p.pol.Style); err != nil {
			proxywasm.Log(proxywasm.LogLevelError, "hello: send "+strconv.Itoa(d.Err.Status)+": "+err.Error())
		}
		return proxywasm.ActionPause
	}
	if err := proxywasm.RequestHeaders.Replace(greet.Header, d.Greeting); err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "hello: set "+greet.Header+": "+err.Error())
	}
	s.p.metrics.Inc(greet.MetricGreeted)
	return proxywasm.ActionContinue
}

// OnResponseHeaders says hello back, except on the filter's own error replies.
func (s *stream) OnResponseHeaders(int, bool) proxywasm.Action {
	if !s.replied {
		_ = proxywasm.ResponseHeaders.Replace(greet.Header, s.p.pol.ResponseGreeting())
	}
	return proxywasm.ActionContinue
}
