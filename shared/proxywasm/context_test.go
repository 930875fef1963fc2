package proxywasm

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests drive the dispatch logic natively; host calls answer
// StatusUnimplemented here, and the wasmhost and Envoy conformance suites
// cover the real host.

type recordingPlugin struct {
	DefaultPluginContext
	configured []byte
	startErr   error
	ticks      int
	streams    map[uint32]*recordingStream
}

func (p *recordingPlugin) OnPluginStart(cfg []byte) error { p.configured = cfg; return p.startErr }
func (p *recordingPlugin) OnTick()                        { p.ticks++ }
func (p *recordingPlugin) NewHttpContext(id uint32) HttpContext {
	s := &recordingStream{}
	p.streams[id] = s
	return s
}

type recordingStream struct {
	DefaultHttpContext
	calls   []string
	panicOn string
	done    int
}

func (s *recordingStream) hit(name string) {
	s.calls = append(s.calls, name)
	if s.panicOn == name {
		panic("boom in " + name)
	}
}

func (s *recordingStream) OnRequestHeaders(int, bool) Action { s.hit("reqh"); return ActionPause }
func (s *recordingStream) OnRequestBody(int, bool) Action    { s.hit("reqb"); return ActionContinue }
func (s *recordingStream) OnDone()                           { s.hit("done"); s.done++ }

func newTestVM(p *recordingPlugin) *vmState {
	return &vmState{
		factory:  func(uint32) PluginContext { return p },
		roots:    map[uint32]PluginContext{},
		streams:  map[uint32]*httpState{},
		callouts: map[uint32]callout{},
		pins:     map[uint32][]byte{},
	}
}

func TestDispatchLifecycle(t *testing.T) {
	p := &recordingPlugin{streams: map[uint32]*recordingStream{}}
	v := newTestVM(p)
	v.onContextCreate(1, 0)
	require.Contains(t, v.roots, uint32(1))
	assert.True(t, v.onConfigure(1, 0), "empty configuration is valid")
	assert.Nil(t, p.configured)

	v.onContextCreate(2, 1)
	require.Contains(t, p.streams, uint32(2))
	assert.Equal(t, ActionPause, v.onHTTP(2, "h", true, func(c HttpContext) Action { return c.OnRequestHeaders(3, false) }))
	assert.Equal(t, ActionContinue, v.onHTTP(2, "b", true, func(c HttpContext) Action { return c.OnRequestBody(5, true) }))
	assert.True(t, v.onDone(2))
	v.onDelete(2)
	assert.Equal(t, []string{"reqh", "reqb", "done"}, p.streams[2].calls)
	assert.NotContains(t, v.streams, uint32(2))

	// Callbacks for contexts that no longer exist are harmless.
	assert.Equal(t, ActionContinue, v.onHTTP(2, "h", true, func(c HttpContext) Action { return c.OnRequestHeaders(0, true) }))
	v.onRoot(1, "tick", PluginContext.OnTick)
	v.onRoot(99, "tick", PluginContext.OnTick)
	assert.Equal(t, 1, p.ticks)
	assert.Equal(t, 0, v.depth)
}

func TestConfigureRejects(t *testing.T) {
	p := &recordingPlugin{startErr: errors.New("bad config"), streams: map[uint32]*recordingStream{}}
	v := newTestVM(p)
	v.onContextCreate(1, 0)
	assert.False(t, v.onConfigure(1, 0))
	assert.False(t, v.onConfigure(42, 0), "unknown root context")
}

func TestPanicIsContainedToItsStream(t *testing.T) {
	p := &recordingPlugin{streams: map[uint32]*recordingStream{}}
	v := newTestVM(p)
	v.onContextCreate(1, 0)
	v.onContextCreate(2, 1)
	p.streams[2].panicOn = "reqh"
	assert.NotPanics(t, func() {
		// Natively the local reply cannot be sent, so the stream is let through instead of hanging.
		act := v.onHTTP(2, "h", true, func(c HttpContext) Action { return c.OnRequestHeaders(1, false) })
		assert.Equal(t, ActionContinue, act)
	})
	assert.True(t, v.streams[2].failed)
	// A failed stream is passed through untouched afterwards.
	assert.Equal(t, ActionContinue, v.onHTTP(2, "b", true, func(c HttpContext) Action { return c.OnRequestBody(1, true) }))
	assert.Equal(t, []string{"reqh"}, p.streams[2].calls)
	// OnDone still runs so resources are released.
	v.onDone(2)
	assert.Equal(t, 1, p.streams[2].done)

	// Another stream on the same VM is unaffected.
	v.onContextCreate(3, 1)
	assert.Equal(t, ActionPause, v.onHTTP(3, "h", true, func(c HttpContext) Action { return c.OnRequestHeaders(1, false) }))
	assert.Equal(t, 0, v.depth)
}

func TestPanicInRootCallbackIsRecovered(t *testing.T) {
	v := newTestVM(&recordingPlugin{streams: map[uint32]*recordingStream{}})
	v.onContextCreate(1, 0)
	assert.NotPanics(t, func() { v.onRoot(1, "tick", func(PluginContext) { panic("tick boom") }) })
	assert.Equal(t, 0, v.depth)
}

func TestPinsLiveUntilOutermostCallbackReturns(t *testing.T) {
	v := newTestVM(&recordingPlugin{streams: map[uint32]*recordingStream{}})
	v.onContextCreate(1, 0)
	v.onRoot(1, "outer", func(PluginContext) {
		v.pins[8] = []byte("abc")
		v.onRoot(1, "nested", func(PluginContext) {})
		assert.Contains(t, v.pins, uint32(8), "a nested callback must not unpin the outer one's buffers")
	})
	assert.Empty(t, v.pins, "everything is unpinned when the outermost callback returns")
}

func TestTakePinned(t *testing.T) {
	saved := vm.pins
	t.Cleanup(func() { vm.pins = saved })
	vm.pins = map[uint32][]byte{16: []byte("hello, world")}
	b, err := takePinned(16, 5)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	assert.NotContains(t, vm.pins, uint32(16))
	_, err = takePinned(16, 5)
	assert.ErrorIs(t, err, ErrInvalidMemoryAccess, "a pointer the guest never handed out")
	b, err = takePinned(0, 0)
	require.NoError(t, err)
	assert.Empty(t, b, "the host returns (0, 0) for empty values")
}

func TestCallResponseHeader(t *testing.T) {
	r := &CallResponse{Headers: [][2]string{{":status", "200"}, {"x-a", "1"}, {"x-a", "2"}}}
	assert.Equal(t, "1", r.Header("x-a"))
	assert.Equal(t, "", r.Header("x-missing"))
}

func TestRequestCallbacksStopAfterLocalReply(t *testing.T) {
	p := &recordingPlugin{streams: map[uint32]*recordingStream{}}
	v := newTestVM(p)
	v.onContextCreate(1, 0)
	v.onContextCreate(2, 1)
	v.streams[2].replied = true // as SendLocalResponse records it
	assert.Equal(t, ActionPause, v.onHTTP(2, "b", true, func(c HttpContext) Action { return c.OnRequestBody(9, false) }))
	assert.Empty(t, p.streams[2].calls, "request data after a local reply never reaches the plugin")
	// The local reply itself passes through the response callbacks.
	assert.Equal(t, ActionContinue, v.onHTTP(2, "rh", false, func(c HttpContext) Action { return c.OnResponseHeaders(1, false) }))
}

type gatherRecorder struct {
	tooLarge, unreadable int
}

func (r *gatherRecorder) BodyComplete([]byte) Action  { return ActionContinue }
func (r *gatherRecorder) BodyTooLarge() Action        { r.tooLarge++; return ActionPause }
func (r *gatherRecorder) BodyUnreadable(error) Action { r.unreadable++; return ActionPause }

func TestBodyGatherer(t *testing.T) {
	var idle BodyGatherer
	h := &gatherRecorder{}
	assert.Equal(t, ActionContinue, idle.OnBody(10, true, h), "not started: pass through")
	assert.Equal(t, ActionContinue, idle.OnTrailers(h))

	g := BodyGatherer{Limit: 100}
	assert.Equal(t, ActionPause, g.Start())
	assert.Equal(t, ActionPause, g.OnBody(50, false, h), "waits for the end")
	assert.Equal(t, ActionPause, g.OnBody(101, false, h))
	assert.Equal(t, 1, h.tooLarge)
	assert.Equal(t, ActionContinue, g.OnBody(150, true, h), "after rejecting, the gatherer is done")

	g = BodyGatherer{}
	g.Start()
	// Natively the host cannot return the body, which must reach the handler, not panic.
	assert.Equal(t, ActionPause, g.OnBody(1<<30, true, h))
	assert.Equal(t, 1, h.unreadable)
	assert.Equal(t, ActionContinue, g.OnTrailers(h), "completion happens once")
}
