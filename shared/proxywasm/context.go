package proxywasm

import (
	"path"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/shared/reqview"
)

// PluginContext is the root context of one plugin in one VM: it receives the
// plugin configuration and creates a per-stream HttpContext.
type PluginContext interface {
	// OnPluginStart receives the raw plugin configuration; an error rejects the configuration and Envoy fails the listener update.
	OnPluginStart(config []byte) error
	// NewHttpContext creates the state for one HTTP stream.
	NewHttpContext(contextID uint32) HttpContext
	// OnTick runs every period set by SetTickPeriod.
	OnTick()
	// OnQueueReady runs when a shared queue this VM registered receives an item.
	OnQueueReady(queueID uint32)
	// OnPluginDone runs when the host is shutting the plugin down; return false to finish later with Done.
	OnPluginDone() bool
}

// VMStarter is implemented by plugin contexts that need the VM configuration (vm_config.configuration).
type VMStarter interface {
	OnVMStart(vmConfig []byte) error
}

// HttpContext handles the callbacks of one HTTP stream.
type HttpContext interface {
	OnRequestHeaders(numHeaders int, endOfStream bool) Action
	OnRequestBody(bodySize int, endOfStream bool) Action
	OnRequestTrailers(numTrailers int) Action
	OnResponseHeaders(numHeaders int, endOfStream bool) Action
	OnResponseBody(bodySize int, endOfStream bool) Action
	OnResponseTrailers(numTrailers int) Action
	// OnLog runs in the access-log phase, after the response.
	OnLog()
	// OnDone runs once when the stream ends for any reason (complete, reset or aborted): release resources here.
	OnDone()
}

// DefaultPluginContext gives no-op implementations so plugins embed it and override what they need.
type DefaultPluginContext struct{}

// OnPluginStart accepts any configuration.
func (DefaultPluginContext) OnPluginStart([]byte) error { return nil }

// NewHttpContext returns a pass-through context.
func (DefaultPluginContext) NewHttpContext(uint32) HttpContext { return DefaultHttpContext{} }

// OnTick does nothing.
func (DefaultPluginContext) OnTick() {}

// OnQueueReady does nothing.
func (DefaultPluginContext) OnQueueReady(uint32) {}

// OnPluginDone finishes at once.
func (DefaultPluginContext) OnPluginDone() bool { return true }

// DefaultHttpContext continues every callback; embed it and override what the filter needs.
type DefaultHttpContext struct{}

// OnRequestHeaders continues.
func (DefaultHttpContext) OnRequestHeaders(int, bool) Action { return ActionContinue }

// OnRequestBody continues.
func (DefaultHttpContext) OnRequestBody(int, bool) Action { return ActionContinue }

// OnRequestTrailers continues.
func (DefaultHttpContext) OnRequestTrailers(int) Action { return ActionContinue }

// OnResponseHeaders continues.
func (DefaultHttpContext) OnResponseHeaders(int, bool) Action { return ActionContinue }

// OnResponseBody continues.
func (DefaultHttpContext) OnResponseBody(int, bool) Action { return ActionContinue }

// OnResponseTrailers continues.
func (DefaultHttpContext) OnResponseTrailers(int) Action { return ActionContinue }

// OnLog does nothing.
func (DefaultHttpContext) OnLog() {}

// OnDone does nothing.
func (DefaultHttpContext) OnDone() {}

// CallResponse is the answer to DispatchHttpCall, read eagerly so callbacks need no host calls.
type CallResponse struct {
	// Failed is true when the host reported no response (timeout, reset, unknown upstream).
	Failed   bool
	Status   int
	Headers  [][2]string
	Body     []byte
	Trailers [][2]string
}

// Header returns the first value of a response header (lower-case name), or "".
func (r *CallResponse) Header(name string) string {
	for _, h := range r.Headers {
		if h[0] == name {
			return h[1]
		}
	}
	return ""
}

// CallResponseHandler receives an HTTP call's response.
type CallResponseHandler func(resp *CallResponse)

type httpState struct {
	ctx     HttpContext
	rootID  uint32
	failed  bool // a callback panicked: later callbacks pass through untouched
	replied bool // a local response was sent: the request must never continue upstream
	memo    reqview.Memo
}

type callout struct {
	handler CallResponseHandler
	ctxID   uint32    // context that dispatched the call
	hook    *linkHook // the chain link that dispatched it, nil outside chains
}

// bufferView shows a chain link the part of a stream's body buffer it has
// not passed on yet, as Envoy would show it to a filter of its own.
type bufferView struct {
	ctx uint32 // the stream; 0 when no view is set
	buf BufferType
	off uint32
}

// at reports the view's offset for buffer t of the current context.
func (w *bufferView) at(t BufferType) uint32 {
	if w.ctx == 0 || w.ctx != vm.current || w.buf != t {
		return 0
	}
	return w.off
}

// vmState is the one piece of mutable state of the Wasm entry point: the
// contexts Envoy created in this VM and the pending HTTP calls.
type vmState struct {
	factory  func(rootContextID uint32) PluginContext
	plugins  map[string]func(rootContextID uint32) PluginContext // by root_id
	roots    map[uint32]PluginContext
	streams  map[uint32]*httpState
	callouts map[uint32]callout
	current  uint32 // context of the callback now running
	depth    int    // nesting of exported callbacks
	pins     map[uint32][]byte
	hook     *linkHook   // the chain link whose code runs (chain.go), nil outside chains
	view     bufferView  // the body a chain link sees (chain.go)
	bufDirty bool        // a body buffer was written since the chain last looked
	hdr      headerCache // the stream's header maps as read in this callback
	body     bodyCache   // a body buffer as known in this callback
	now      time.Time   // the callback's time (Now), valid when nowSet
	nowSet   bool
	ret      hostRet // results of host calls (hostcalls.go)
}

// hostRet receives the results of a host call. A local passed by address
// to an imported function escapes to the heap (the compiler cannot see
// what the host does with it), so every host call with results would
// allocate them; the calls that read data use this one scratch instead and
// copy the results out at once. Only calls during which the host re-enters
// the module through the allocator alone (proxy_on_memory_allocate, which
// makes no such call) use it: proxy_http_call and foreign functions, which
// a host may answer by running other callbacks inline, keep locals.
type hostRet struct{ a, b, c uint32 }

var vm = vmState{
	roots:    map[uint32]PluginContext{},
	streams:  map[uint32]*httpState{},
	callouts: map[uint32]callout{},
	pins:     map[uint32][]byte{},
}

// SetPluginFactory registers the plugin; call it from init(), because c-shared modules never run main.
func SetPluginFactory(f func(rootContextID uint32) PluginContext) { vm.factory = f }

// RegisterPlugin registers a plugin under the root_id its PluginConfig names,
// so one module can hold several filters; call it from init(). A module with
// registered plugins refuses a root_id it does not know rather than guessing.
func RegisterPlugin(rootID string, f func(rootContextID uint32) PluginContext) {
	if vm.plugins == nil {
		vm.plugins = map[string]func(uint32) PluginContext{}
	}
	vm.plugins[rootID] = f
}

// factoryFor picks the constructor of a new root context: by root_id when
// plugins were registered, else the one SetPluginFactory set.
func (v *vmState) factoryFor() (func(uint32) PluginContext, string) {
	if len(v.plugins) == 0 {
		if v.factory == nil {
			return nil, "no plugin registered; call SetPluginFactory or RegisterPlugin in init()"
		}
		return v.factory, ""
	}
	id, err := GetProperty("plugin_root_id")
	if err != nil {
		return nil, "reading plugin_root_id: " + err.Error()
	}
	if f, ok := v.plugins[string(id)]; ok {
		return f, ""
	}
	return nil, "no plugin registered for root_id " + strconv.Quote(string(id))
}

// enter marks the start of an exported callback.
func (v *vmState) enter(ctxID uint32) (prev uint32) {
	v.hdr.reset()
	v.body.reset()
	v.nowSet = false
	v.depth++
	prev = v.current
	v.current = ctxID
	return prev
}

// leave ends a callback; at the outermost level every buffer the host allocated has been read and is unpinned.
func (v *vmState) leave(prev uint32) {
	v.hdr.reset()
	v.body.reset()
	v.nowSet = false
	v.current = prev
	v.depth--
	if v.depth == 0 {
		clear(v.pins)
	}
}

func (v *vmState) onContextCreate(ctxID, parentID uint32) {
	prev := v.enter(ctxID)
	defer v.leave(prev)
	defer v.recoverRoot("proxy_on_context_create")
	if parentID == 0 {
		f, problem := v.factoryFor()
		if f == nil {
			Log(LogLevelCritical, "proxywasm: "+problem)
			return
		}
		v.roots[ctxID] = f(ctxID)
		return
	}
	root, ok := v.roots[parentID]
	if !ok {
		return
	}
	if hc := root.NewHttpContext(ctxID); hc != nil {
		v.streams[ctxID] = &httpState{ctx: hc, rootID: parentID}
	}
}

func (v *vmState) onVMStart(ctxID, size uint32) (ok bool) {
	prev := v.enter(ctxID)
	defer v.leave(prev)
	defer func() {
		if r := recover(); r != nil {
			logPanic("proxy_on_vm_start", r)
			ok = false
		}
	}()
	root, found := v.roots[ctxID]
	if !found {
		return false
	}
	if s, isStarter := root.(VMStarter); isStarter {
		cfg, err := getBufferBytes(BufferVMConfiguration, 0, size)
		if err != nil && size > 0 {
			Log(LogLevelError, "proxywasm: reading VM configuration: "+err.Error())
			return false
		}
		if err := s.OnVMStart(cfg); err != nil {
			Log(LogLevelError, "proxywasm: VM start rejected: "+err.Error())
			return false
		}
	}
	return true
}

func (v *vmState) onConfigure(ctxID, size uint32) (ok bool) {
	prev := v.enter(ctxID)
	defer v.leave(prev)
	defer func() {
		if r := recover(); r != nil {
			logPanic("proxy_on_configure", r)
			ok = false
		}
	}()
	root, found := v.roots[ctxID]
	if !found {
		return false
	}
	var cfg []byte
	if size > 0 {
		var err error
		if cfg, err = getBufferBytes(BufferPluginConfiguration, 0, size); err != nil {
			Log(LogLevelError, "proxywasm: reading plugin configuration: "+err.Error())
			return false
		}
	}
	if err := root.OnPluginStart(cfg); err != nil {
		Log(LogLevelError, "proxywasm: plugin configuration rejected: "+err.Error())
		return false
	}
	return true
}

// onHTTP runs one stream callback with panic protection. Once a local
// response was sent, request callbacks are answered PAUSE without reaching the
// plugin: Envoy sends the local reply only after the callback returns, and
// request data arriving meanwhile must not be let through to the upstream.
func (v *vmState) onHTTP(ctxID uint32, name string, request bool, f func(HttpContext) Action) (action Action) {
	st, ok := v.streams[ctxID]
	if !ok {
		return ActionContinue
	}
	if request && st.replied {
		return ActionPause
	}
	if st.failed {
		return ActionContinue
	}
	if !request {
		st.memo.Reset() // the request body went upstream: do not hold it through the response
	}
	prev := v.enter(ctxID)
	defer v.leave(prev)
	defer func() {
		if r := recover(); r != nil {
			action = v.failStream(st, name, r)
		}
	}()
	return f(st.ctx)
}

// failStream turns a panic into a logged 500 so that the VM keeps serving.
func (v *vmState) failStream(st *httpState, name string, r any) Action {
	st.failed = true
	logPanic(name, r)
	if err := SendPanic("tollgate_filter_panic"); err != nil {
		// The response has already started; let the stream finish rather than hang it.
		return ActionContinue
	}
	return ActionPause
}

var panicBody = []byte(`{"error":{"message":"internal error in a gateway filter","type":"server_error","param":null,"code":"filter_panic"}}`)

// onStreamEnd runs OnLog or OnDone with panic protection; nothing can be sent any more, so panics are only logged.
func (v *vmState) onStreamEnd(ctxID uint32, name string, f func(HttpContext)) {
	st, ok := v.streams[ctxID]
	if !ok {
		return
	}
	prev := v.enter(ctxID)
	defer v.leave(prev)
	defer v.recoverRoot(name)
	f(st.ctx)
}

func (v *vmState) onDone(ctxID uint32) bool {
	if _, ok := v.streams[ctxID]; ok {
		v.onStreamEnd(ctxID, "proxy_on_done", HttpContext.OnDone)
		return true
	}
	root, ok := v.roots[ctxID]
	if !ok {
		return true
	}
	prev := v.enter(ctxID)
	defer v.leave(prev)
	done := true
	func() {
		defer v.recoverRoot("proxy_on_done")
		done = root.OnPluginDone()
	}()
	return done
}

func (v *vmState) onDelete(ctxID uint32) {
	delete(v.streams, ctxID)
	delete(v.roots, ctxID)
}

func (v *vmState) onRoot(ctxID uint32, name string, f func(PluginContext)) {
	root, ok := v.roots[ctxID]
	if !ok {
		return
	}
	prev := v.enter(ctxID)
	defer v.leave(prev)
	defer v.recoverRoot(name)
	f(root)
}

func (v *vmState) onHttpCallResponse(ctxID, token, numHeaders, bodySize, numTrailers uint32) {
	c, ok := v.callouts[token]
	if !ok {
		return
	}
	delete(v.callouts, token)
	target := ctxID
	st, streamAlive := v.streams[c.ctxID]
	if streamAlive && c.ctxID != ctxID {
		target = c.ctxID
	}
	prev := v.enter(target)
	defer v.leave(prev)
	if target != ctxID {
		_ = setEffectiveContext(target)
	}
	resp := readCallResponse(numHeaders, bodySize, numTrailers)
	prevHook := vm.hook
	vm.hook = c.hook
	defer func() { vm.hook = prevHook }()
	defer func() {
		if r := recover(); r != nil {
			if streamAlive {
				v.failStream(st, "http call response", r)
				return
			}
			logPanic("http call response", r)
		}
	}()
	c.handler(resp)
}

func readCallResponse(numHeaders, bodySize, numTrailers uint32) *CallResponse {
	resp := &CallResponse{}
	if numHeaders == 0 {
		resp.Failed = true
		return resp
	}
	resp.Headers, _ = getHeaderMapPairs(MapHttpCallResponseHeaders)
	for _, h := range resp.Headers {
		if h[0] == ":status" {
			resp.Status, _ = strconv.Atoi(h[1])
		}
	}
	if bodySize > 0 {
		resp.Body, _ = getBufferBytes(BufferHttpCallResponseBody, 0, bodySize)
	}
	if numTrailers > 0 {
		resp.Trailers, _ = getHeaderMapPairs(MapHttpCallResponseTrailers)
	}
	return resp
}

func (v *vmState) recoverRoot(name string) {
	if r := recover(); r != nil {
		logPanic(name, r)
	}
}

func logPanic(where string, r any) {
	Log(LogLevelError, "proxywasm: recovered from a panic in "+where+": "+panicText(r)+"; at "+panicSite())
}

// panicText words a recovered panic value without fmt: errors (runtime
// errors included), strings and Stringers as themselves.
func panicText(r any) string {
	switch v := r.(type) {
	case error:
		return v.Error()
	case string:
		return v
	case interface{ String() string }:
		return v.String()
	}
	return "a panic value that is not an error, string or Stringer"
}

// panicSite names the frames that led to a recovered panic in one line, so a
// recovered panic never looks like Go's crash output in the host log.
func panicSite() string {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(4, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	var b strings.Builder
	for i := 0; i < 8; {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "runtime.") {
			if i > 0 {
				b.WriteString(" <- ")
			}
			b.WriteString(f.Function + " " + path.Base(f.File) + ":" + strconv.Itoa(f.Line))
			i++
		}
		if !more {
			break
		}
	}
	return b.String()
}
