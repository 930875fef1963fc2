//go:build !wasip1

package hosttest_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

// probe is a plugin whose streams do what the test asks in each callback
// and record what the host answered.
type probe struct {
	proxywasm.DefaultPluginContext
	cfg   []byte
	ticks int
	onReq func(s *probeStream) proxywasm.Action
	onBdy func(s *probeStream, size int, eos bool) proxywasm.Action
	onRsp func(s *probeStream) proxywasm.Action
}

func (p *probe) OnPluginStart(cfg []byte) error {
	p.cfg = cfg
	if string(cfg) == "reject" {
		return errors.New("rejected")
	}
	return nil
}
func (p *probe) OnTick() { p.ticks++ }
func (p *probe) NewHttpContext(id uint32) proxywasm.HttpContext {
	return &probeStream{p: p, id: id}
}

type probeStream struct {
	proxywasm.DefaultHttpContext
	p        *probe
	id       uint32
	sizes    []int
	respSeen []string
	done     bool
}

func (s *probeStream) OnRequestHeaders(int, bool) proxywasm.Action {
	if s.p.onReq != nil {
		return s.p.onReq(s)
	}
	return proxywasm.ActionContinue
}

func (s *probeStream) OnRequestBody(size int, eos bool) proxywasm.Action {
	s.sizes = append(s.sizes, size)
	if s.p.onBdy != nil {
		return s.p.onBdy(s, size, eos)
	}
	return proxywasm.ActionContinue
}

func (s *probeStream) OnResponseHeaders(int, bool) proxywasm.Action {
	st, _ := proxywasm.ResponseHeaders.Get(":status")
	s.respSeen = append(s.respSeen, st)
	if s.p.onRsp != nil {
		return s.p.onRsp(s)
	}
	return proxywasm.ActionContinue
}

func (s *probeStream) OnDone() { s.done = true }

func start(t *testing.T, p *probe, cfg hosttest.Config) *hosttest.Host {
	t.Helper()
	cfg.Plugin = func(uint32) proxywasm.PluginContext { return p }
	return hosttest.New(t, cfg)
}

func TestConfigure(t *testing.T) {
	p := &probe{}
	start(t, p, hosttest.Config{PluginConfig: []byte(`{"a":1}`)})
	assert.Equal(t, `{"a":1}`, string(p.cfg))
	_, err := hosttest.Start(t, hosttest.Config{PluginConfig: []byte("reject"),
		Plugin: func(uint32) proxywasm.PluginContext { return &probe{} }})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rejected")
}

func TestRequestMapGoneAfterContinue(t *testing.T) {
	var during, after error
	p := &probe{
		onReq: func(*probeStream) proxywasm.Action {
			_, during = proxywasm.RequestHeaders.Get(":path")
			_ = proxywasm.RequestHeaders.Replace("x-added", "1")
			return proxywasm.ActionContinue
		},
		onBdy: func(*probeStream, int, bool) proxywasm.Action {
			_, after = proxywasm.RequestHeaders.Get(":path")
			return proxywasm.ActionContinue
		},
	}
	h := start(t, p, hosttest.Config{})
	res := h.Do(hosttest.Request{Path: "/x", Body: []byte("hello")})
	require.Equal(t, 200, res.Status)
	assert.NoError(t, during)
	assert.ErrorIs(t, after, proxywasm.ErrBadArgument, "Envoy frees the request map on continue")
	assert.Equal(t, "1", res.Upstream.Header("x-added"))
	assert.Equal(t, "hello", string(res.Upstream.Body))
}

func TestBodyBufferingAndReplace(t *testing.T) {
	p := &probe{onBdy: func(_ *probeStream, _ int, eos bool) proxywasm.Action {
		if !eos {
			return proxywasm.ActionPause
		}
		body, _ := proxywasm.RequestBody.GetAll()
		_ = proxywasm.RequestBody.Replace(append([]byte("<"), append(body, '>')...))
		return proxywasm.ActionContinue
	}}
	h := start(t, p, hosttest.Config{})
	res := h.Do(hosttest.Request{Chunks: [][]byte{[]byte("ab"), []byte("cd")}})
	require.Equal(t, 200, res.Status)
	assert.Equal(t, "<abcd>", string(res.Upstream.Body))
}

func TestHeadersPauseHoldsBodyUntilResume(t *testing.T) {
	var sizes *[]int
	p := &probe{onReq: func(s *probeStream) proxywasm.Action {
		sizes = &s.sizes
		_, err := proxywasm.DispatchHttpCall("c", [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "a"}}, nil, nil, 0,
			func(*proxywasm.CallResponse) { _ = proxywasm.ContinueRequest() })
		require.NoError(t, err)
		return proxywasm.ActionPause
	}}
	h := start(t, p, hosttest.Config{})
	res := h.Do(hosttest.Request{Chunks: [][]byte{[]byte("ab"), []byte("cd")}})
	require.True(t, res.Paused)
	assert.Empty(t, *sizes, "no body callback while headers stop all iteration")
	c := h.Callouts()
	require.Len(t, c, 1)
	h.Respond(c[0].Token, &hosttest.Response{Status: 200})
	res = res.Stream.Finish()
	require.Equal(t, 200, res.Status)
	assert.Equal(t, []int{4}, *sizes, "the held frames arrive in one callback")
	assert.Equal(t, "abcd", string(res.Upstream.Body))
}

func TestLocalReplyRunsThroughResponseCallbacks(t *testing.T) {
	var st *probeStream
	p := &probe{onReq: func(s *probeStream) proxywasm.Action {
		st = s
		require.NoError(t, proxywasm.SendLocalResponse(403, [][2]string{{"x-why", "no"}}, []byte(`{"e":1}`), "denied here"))
		assert.Empty(t, s.respSeen, "the reply waits until the callback returns")
		return proxywasm.ActionPause
	}}
	h := start(t, p, hosttest.Config{})
	res := h.Do(hosttest.Request{Body: []byte("x")})
	assert.Equal(t, 403, res.Status)
	assert.True(t, res.LocalReply)
	assert.Equal(t, "denied_here", res.Details)
	assert.Equal(t, "no", res.Header("x-why"))
	assert.Equal(t, "7", res.Header("content-length"))
	assert.Equal(t, "text/plain", res.Header("content-type"))
	assert.Equal(t, `{"e":1}`, string(res.Body))
	assert.Nil(t, res.Upstream)
	assert.Equal(t, []string{"403"}, st.respSeen)
	assert.Empty(t, st.sizes, "no request body callback after a local reply")
	assert.True(t, st.done)
}

func TestPanicIsA500(t *testing.T) {
	p := &probe{onReq: func(*probeStream) proxywasm.Action { panic("boom") }}
	h := start(t, p, hosttest.Config{})
	res := h.Do(hosttest.Request{})
	assert.Equal(t, 500, res.Status)
	assert.Contains(t, string(res.Body), "filter_panic")
	assert.True(t, h.Logged("boom"))
}

func TestSharedDataMetricsQueuesTicks(t *testing.T) {
	p := &probe{}
	h := start(t, p, hosttest.Config{VMID: "vm"})
	h.SetSharedData("k", []byte("v1"))
	v, cas, ok := h.SharedData("k")
	require.True(t, ok)
	assert.Equal(t, "v1", string(v))
	assert.NotZero(t, cas)

	p.onReq = func(*probeStream) proxywasm.Action {
		_, c, err := proxywasm.GetSharedData("k")
		require.NoError(t, err)
		require.NoError(t, proxywasm.SetSharedData("k", []byte("v2"), c))
		assert.ErrorIs(t, proxywasm.SetSharedData("k", []byte("v3"), c), proxywasm.ErrCASMismatch)
		ctr, err := proxywasm.DefineCounter("requests")
		require.NoError(t, err)
		require.NoError(t, ctr.Increment(2))
		g, _ := proxywasm.DefineGauge("inflight")
		require.NoError(t, g.Add(-1))
		q, err := proxywasm.RegisterSharedQueue("q")
		require.NoError(t, err)
		require.NoError(t, proxywasm.EnqueueSharedQueue(q, []byte("item")))
		require.NoError(t, proxywasm.SetTickPeriod(1500000000))
		_, err = proxywasm.GetProperty("plugin_vm_id")
		require.NoError(t, err)
		return proxywasm.ActionContinue
	}
	require.Equal(t, 200, h.Do(hosttest.Request{}).Status)
	v, _, _ = h.SharedData("k")
	assert.Equal(t, "v2", string(v))
	assert.EqualValues(t, 2, h.Counter("requests"))
	assert.Equal(t, ^uint64(0), h.Gauge("inflight"), "gauges wrap like Envoy's uint64")
	assert.NotZero(t, h.TickPeriod())
	h.Tick()
	assert.Equal(t, 1, p.ticks)
}

// TestRegisterPluginByRootID: a module holding several plugins picks the one
// its root_id names and refuses an unknown root_id.
func TestRegisterPluginByRootID(t *testing.T) {
	a, b := &probe{}, &probe{}
	proxywasm.RegisterPlugin("a", func(uint32) proxywasm.PluginContext { return a })
	proxywasm.RegisterPlugin("b", func(uint32) proxywasm.PluginContext { return b })
	hosttest.New(t, hosttest.Config{RootID: "b", PluginConfig: []byte("cfg-b")})
	assert.Equal(t, "cfg-b", string(b.cfg))
	assert.Nil(t, a.cfg)
	_, err := hosttest.Start(t, hosttest.Config{RootID: "c"})
	assert.Error(t, err)
}

func TestResponsePhaseLocalReplyAndReset(t *testing.T) {
	p := &probe{onRsp: func(*probeStream) proxywasm.Action {
		st, _ := proxywasm.ResponseHeaders.Get(":status")
		if st == "502" {
			require.NoError(t, proxywasm.SendLocalResponse(503, nil, []byte("replaced"), "swap"))
		}
		return proxywasm.ActionContinue
	}}
	up := 502
	h := start(t, p, hosttest.Config{Upstream: func(*hosttest.Upstream) *hosttest.Response {
		return &hosttest.Response{Status: up, Body: []byte("upstream")}
	}})
	res := h.Do(hosttest.Request{})
	assert.Equal(t, 503, res.Status, "a reply from the response headers callback replaces the response")
	assert.Equal(t, "replaced", string(res.Body))
	assert.NotNil(t, res.Upstream)
	assert.True(t, res.LocalReply)
}

func TestTrailersEndAGatheredBody(t *testing.T) {
	p := &probe{onBdy: func(_ *probeStream, _ int, eos bool) proxywasm.Action {
		assert.False(t, eos, "the body frames of a request with trailers never end the stream")
		return proxywasm.ActionPause
	}}
	h := start(t, p, hosttest.Config{AllowOnHeadersStopIteration: true})
	s := h.NewStream()
	s.SendRequest(hosttest.Request{Chunks: [][]byte{[]byte("ab"), []byte("cd")}, Trailers: [][2]string{{"x-sum", "1"}}})
	res := s.Finish()
	require.Equal(t, 200, res.Status)
	assert.Equal(t, "abcd", string(res.Upstream.Body), "trailers release the buffered body")
	assert.Equal(t, [][2]string{{"x-sum", "1"}}, res.Upstream.Trailers)
}

func TestQueueWakesTheRegisteringWorker(t *testing.T) {
	var ready []uint32
	reg := &queuePlugin{ready: &ready}
	h := hosttest.New(t, hosttest.Config{VMID: "vm", Plugin: func(uint32) proxywasm.PluginContext { return reg }})
	other := h.NewWorker(t)
	require.Equal(t, 200, h.Do(hosttest.Request{Path: "/register"}).Status)
	require.Equal(t, 200, other.Do(hosttest.Request{Path: "/put"}).Status)
	h.Do(hosttest.Request{Path: "/"}) // the registering worker runs its deferred wake-up
	require.Len(t, ready, 1)
	assert.Equal(t, "item", reg.last)
}

// queuePlugin registers a queue on /register, enqueues on /put and reads
// what OnQueueReady delivered.
type queuePlugin struct {
	proxywasm.DefaultPluginContext
	ready *[]uint32
	last  string
}

func (q *queuePlugin) OnQueueReady(id uint32) {
	*q.ready = append(*q.ready, id)
	b, err := proxywasm.DequeueSharedQueue(id)
	if err == nil {
		q.last = string(b)
	}
}

func (q *queuePlugin) NewHttpContext(uint32) proxywasm.HttpContext { return &queueStream{} }

type queueStream struct{ proxywasm.DefaultHttpContext }

func (queueStream) OnRequestHeaders(int, bool) proxywasm.Action {
	path, _ := proxywasm.RequestHeaders.Get(":path")
	switch path {
	case "/register":
		_, _ = proxywasm.RegisterSharedQueue("q")
	case "/put":
		id, err := proxywasm.ResolveSharedQueue("vm", "q")
		if err == nil {
			_ = proxywasm.EnqueueSharedQueue(id, []byte("item"))
		}
	}
	return proxywasm.ActionContinue
}
