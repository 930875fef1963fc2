//go:build !wasip1

package proxywasm_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

// kitPlugin pauses every stream in its request headers; the test decides
// from outside (through OnTick) how each one finishes.
type kitPlugin struct {
	proxywasm.DefaultPluginContext
	metrics *proxywasm.Metrics
	paused  []uint32
	finish  func(id uint32) bool
	body    []byte // replaces the request body when set
}

func (p *kitPlugin) OnPluginStart([]byte) error {
	p.metrics = proxywasm.NewMetrics("kit")
	return p.metrics.Define("kit_defined")
}

func (p *kitPlugin) OnTick() {
	for _, id := range p.paused {
		if err := proxywasm.Resume(id, func() bool { return p.finish(id) }); err != nil {
			proxywasm.Log(proxywasm.LogLevelWarn, "kit: "+err.Error())
		}
	}
	p.paused = nil
}

func (p *kitPlugin) NewHttpContext(id uint32) proxywasm.HttpContext { return &kitStream{p: p, id: id} }

type kitStream struct {
	proxywasm.DefaultHttpContext
	p      *kitPlugin
	id     uint32
	gather proxywasm.BodyGatherer
}

func (s *kitStream) OnRequestHeaders(_ int, eos bool) proxywasm.Action {
	if s.p.body != nil && !eos {
		return s.gather.Start()
	}
	s.p.paused = append(s.p.paused, s.id)
	return proxywasm.ActionPause
}

func (s *kitStream) OnRequestBody(size int, eos bool) proxywasm.Action {
	return s.gather.OnBody(size, eos, s)
}

func (s *kitStream) BodyComplete([]byte) proxywasm.Action {
	if err := proxywasm.ReplaceRequestBody(s.p.body); err != nil {
		panic(err)
	}
	s.p.metrics.Inc("kit_replaced")
	s.p.metrics.Record("kit_sizes", uint64(len(s.p.body)))
	s.p.metrics.GaugeAdd("kit_gauge", 2)
	s.p.metrics.GaugeSet("kit_set", 7)
	return proxywasm.ActionContinue
}

func (s *kitStream) BodyTooLarge() proxywasm.Action               { return proxywasm.ActionContinue }
func (s *kitStream) BodyUnreadable(error) proxywasm.Action        { return proxywasm.ActionContinue }
func (s *kitStream) OnDone()                                      {}
func (s *kitStream) OnResponseHeaders(int, bool) proxywasm.Action { return proxywasm.ActionContinue }

func kitHost(t *testing.T, p *kitPlugin) *hosttest.Host {
	t.Helper()
	return hosttest.New(t, hosttest.Config{AllowOnHeadersStopIteration: true,
		Plugin: func(uint32) proxywasm.PluginContext { return p }})
}

func TestReplaceRequestBodyFixesContentLength(t *testing.T) {
	p := &kitPlugin{body: []byte(`{"model":"longer-name"}`)}
	h := kitHost(t, p)
	res := h.Do(hosttest.Request{Body: []byte(`{"model":"m"}`)})
	require.Equal(t, 200, res.Status)
	assert.Equal(t, string(p.body), string(res.Upstream.Body))
	assert.Equal(t, "23", res.Upstream.Header("content-length"))
	assert.EqualValues(t, 1, h.Counter("kit_replaced"))
	assert.EqualValues(t, 0, h.Counter("kit_defined"))
	assert.Contains(t, h.Metrics(), "kit_defined", "defined up front, shown at zero")
	assert.Equal(t, []uint64{23}, h.Histogram("kit_sizes"))
	assert.EqualValues(t, 2, h.Gauge("kit_gauge"))
	assert.EqualValues(t, 7, h.Gauge("kit_set"))

	chunked := h.Do(hosttest.Request{Chunks: [][]byte{[]byte(`{"model":`), []byte(`"m"}`)}})
	require.Equal(t, 200, chunked.Status)
	assert.Empty(t, chunked.Upstream.Header("content-length"), "no length announced, none added")
}

func TestResume(t *testing.T) {
	p := &kitPlugin{}
	h := kitHost(t, p)
	var calls []uint32
	p.finish = func(id uint32) bool {
		calls = append(calls, id)
		switch len(calls) {
		case 1:
			return false // let it through
		case 2:
			require.NoError(t, proxywasm.SendLocalResponse(403, nil, []byte("no"), "kit"))
			return true
		}
		panic("finish blew up")
	}
	streams := []*hosttest.Result{h.Do(hosttest.Request{}), h.Do(hosttest.Request{}), h.Do(hosttest.Request{})}
	for _, r := range streams {
		require.True(t, r.Paused)
	}
	gone := h.Do(hosttest.Request{})
	gone.Stream.End()
	h.Tick()
	require.Len(t, calls, 3, "the ended stream is not finished")
	assert.True(t, h.Logged("resume stream"), "a gone stream is an error")

	ok := streams[0].Stream.Finish()
	assert.Equal(t, 200, ok.Status)
	assert.NotNil(t, ok.Upstream)
	denied := streams[1].Stream.Finish()
	assert.Equal(t, 403, denied.Status)
	assert.Nil(t, denied.Upstream)
	panicked := streams[2].Stream.Finish()
	assert.Equal(t, 500, panicked.Status)
	assert.Contains(t, string(panicked.Body), "filter_panic")
	assert.Nil(t, panicked.Upstream)
	assert.True(t, h.Logged("finish blew up"))
}
