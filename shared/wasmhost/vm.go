package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// guestFn is one exported callback of the module.
type guestFn struct {
	name    string
	fn      api.Function
	results int
}

// vmContext is a proxy-wasm context inside a VM: the VM context (id 0), the
// root (plugin) context, or an HTTP stream context.
type vmContext struct {
	id       uint32
	parentID uint32
	root     bool
	stream   *Stream

	// Root context state.
	pluginConfigVisible bool             // Envoy's temp_plugin_: only during on_configure
	callResponse        *calloutResponse // only during on_http_call_response
	statusCode          uint32
	statusMessage       string
}

// VM is one Envoy worker's instance of the plugin: its own module instance,
// root context and stream contexts. All calls into it are serialised, as
// Envoy runs each VM on one worker thread.
type VM struct {
	host *Host
	name string

	mu       sync.Mutex // the worker thread: held during every guest call
	baseCtx  context.Context
	mod      api.Module
	mem      api.Memory
	fns      map[string]*guestFn
	malloc   *guestFn
	stacks   [][]uint64
	depth    int
	loadedAt time.Time
	gen      uint64

	failState FailState
	failMsg   string

	restricted map[string]bool
	current    *vmContext
	effective  uint32
	stopIter   bool
	after      []func()

	contexts  map[uint32]*vmContext
	nextCtxID uint32
	vmCtx     *vmContext
	root      *vmContext

	nextCounter, nextGauge, nextHistogram uint32
	metricNames                           map[uint32]string
	nextCallout                           uint32
	callouts                              map[uint32]*callout

	tickPeriod time.Duration
	tickReset  chan struct{}

	tasksMu   sync.Mutex
	tasks     []func()
	tasksWake chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closed    bool

	logMu  sync.Mutex
	logs   []LogEntry
	logOff bool

	calls map[string]uint64 // host calls and callbacks by name while counting; nil when not
}

type vmKey struct{}

// ErrVMFailed reports a VM that failed to start or has failed at runtime.
var ErrVMFailed = errors.New("wasm vm failed")

// NewVM starts a worker VM the way Envoy does: instantiate (every import
// must be provided), run _initialize with host calls restricted, create the
// root context, then proxy_on_vm_start and proxy_on_configure; a false
// return from either is an error.
func (h *Host) NewVM(ctx context.Context) (*VM, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, errors.New("host closed")
	}
	h.mu.Unlock()
	vm := &VM{
		host:      h,
		name:      fmt.Sprintf("vm-%d", h.vmSeq.Add(1)),
		tickReset: make(chan struct{}, 1),
		tasksWake: make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	vm.baseCtx = context.WithValue(context.Background(), vmKey{}, vm)
	vm.mu.Lock()
	err := vm.load(ctx)
	vm.mu.Unlock()
	if err != nil {
		vm.mu.Lock()
		if vm.mod != nil {
			_ = vm.mod.Close(ctx)
		}
		vm.mu.Unlock()
		return nil, err
	}
	go vm.dispatch()
	h.mu.Lock()
	h.vms = append(h.vms, vm)
	h.mu.Unlock()
	return vm, nil
}

// load instantiates the module and runs the start sequence. Caller holds mu.
func (vm *VM) load(ctx context.Context) error {
	h := vm.host
	mod, err := h.rt.InstantiateModule(vm.baseCtx, h.compiled,
		wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		vm.logf(LogError, 0, "Failed to load Wasm module: %v", err)
		return fmt.Errorf("%w: instantiate: %w", ErrModule, err)
	}
	vm.mod = mod
	vm.mem = mod.Memory()
	vm.loadedAt = time.Now()
	vm.gen++
	vm.failState, vm.failMsg = FailNone, ""
	vm.contexts = map[uint32]*vmContext{}
	vm.nextCtxID = 1
	vm.vmCtx = &vmContext{id: 0, root: true}
	vm.contexts[0] = vm.vmCtx
	vm.metricNames = map[uint32]string{}
	vm.nextCounter, vm.nextGauge, vm.nextHistogram = uint32(MetricCounter), uint32(MetricGauge), uint32(MetricHistogram)
	vm.nextCallout = 0
	vm.callouts = map[uint32]*callout{}
	vm.tickPeriod = 0
	vm.fns = map[string]*guestFn{}
	for name, sig := range moduleFunctions {
		if f := mod.ExportedFunction(name); f != nil {
			vm.fns[name] = &guestFn{name: name, fn: f, results: len(sig[1])}
		}
	}
	vm.malloc = vm.fns["malloc"]
	if vm.malloc == nil {
		vm.malloc = vm.fns["proxy_on_memory_allocate"]
	}

	// startVm: _initialize (+ main/__main_void) or _start, with only the
	// host calls proxy-wasm-cpp-host allows during initialisation.
	vm.restricted = initAllowed
	if f := vm.fns["_initialize"]; f != nil {
		vm.callFn(vm.vmCtx, f)
		if m := mod.ExportedFunction("main"); m != nil && len(m.Definition().ParamTypes()) == 2 {
			vm.callFn(vm.vmCtx, &guestFn{name: "main", fn: m, results: len(m.Definition().ResultTypes())}, 0, 0)
		} else if m := mod.ExportedFunction("__main_void"); m != nil {
			vm.callFn(vm.vmCtx, &guestFn{name: "__main_void", fn: m, results: len(m.Definition().ResultTypes())})
		}
	} else if f := vm.fns["_start"]; f != nil {
		vm.callFn(vm.vmCtx, f)
	}
	vm.restricted = nil
	vm.runAfter()
	if vm.failState != FailNone {
		vm.failState = FailUnableToInitialize
		return fmt.Errorf("%w: Failed to initialize Wasm code: %s", ErrVMFailed, vm.failMsg)
	}

	// WasmBase::start: root context, on_context_create(root, 0), on_vm_start.
	vm.root = vm.newContext(0, true)
	vm.callFn(vm.root, vm.fns["proxy_on_context_create"], uint64(vm.root.id), 0)
	ok := true
	if f := vm.fns["proxy_on_vm_start"]; f != nil {
		ok = uint32(vm.callFn(vm.root, f, uint64(vm.root.id), uint64(len(h.cfg.VMConfig)))) != 0
	}
	vm.runAfter()
	if vm.failState != FailNone {
		return fmt.Errorf("%w: Failed to start Wasm: %s", ErrVMFailed, vm.failMsg)
	}
	if !ok {
		vm.failState = FailStart
		vm.logf(LogCritical, 0, "Failed to start thread-local Wasm")
		return fmt.Errorf("%w: proxy_on_vm_start returned false", ErrVMFailed)
	}
	ok = true
	if f := vm.fns["proxy_on_configure"]; f != nil {
		vm.root.pluginConfigVisible = true
		ok = uint32(vm.callFn(vm.root, f, uint64(vm.root.id), uint64(len(h.cfg.PluginConfig)))) != 0
		vm.root.pluginConfigVisible = false
	}
	vm.runAfter()
	if vm.failState != FailNone {
		return fmt.Errorf("%w: Failed to configure Wasm: %s", ErrVMFailed, vm.failMsg)
	}
	if !ok {
		vm.failState = FailConfigure
		vm.logf(LogCritical, 0, "Failed to configure thread-local Wasm plugin")
		return fmt.Errorf("%w: proxy_on_configure returned false", ErrVMFailed)
	}
	return nil
}

// Host calls proxy-wasm-cpp-host allows while _initialize runs (WasmBase::
// startVm); anything else traps with "restricted_callback".
var initAllowed = func() map[string]bool {
	m := map[string]bool{"env.emscripten_notify_memory_growth": true, "env.proxy_log": true}
	for _, f := range []string{"fd_write", "args_sizes_get", "args_get", "environ_sizes_get", "environ_get",
		"clock_time_get", "clock_res_get", "random_get", "poll_oneoff", "fd_fdstat_get", "fd_fdstat_set_flags",
		"fd_advise", "fd_allocate", "fd_datasync", "fd_fdstat_set_rights", "fd_filestat_get",
		"fd_filestat_set_size", "fd_filestat_set_times", "fd_pread", "fd_prestat_dir_name", "fd_prestat_get",
		"fd_pwrite", "fd_readdir", "fd_renumber", "fd_sync", "fd_tell", "path_create_directory",
		"path_filestat_get", "path_filestat_set_times", "path_link", "path_readlink", "path_remove_directory",
		"path_rename", "path_symlink", "path_unlink_file", "sock_accept", "sock_recv", "sock_send", "sock_shutdown"} {
		m["wasi_unstable."+f] = true
		m["wasi_snapshot_preview1."+f] = true
	}
	return m
}()

// Host calls allowed inside the guest allocator (WasmBase::allocMemory).
var allocAllowed = map[string]bool{
	"env.proxy_log":                         true,
	"wasi_unstable.fd_write":                true,
	"wasi_snapshot_preview1.fd_write":       true,
	"wasi_unstable.clock_time_get":          true,
	"wasi_snapshot_preview1.clock_time_get": true,
	"wasi_unstable.poll_oneoff":             true,
	"wasi_snapshot_preview1.poll_oneoff":    true,
}

func (vm *VM) newContext(parent uint32, root bool) *vmContext {
	for vm.contexts[vm.nextCtxID] != nil {
		vm.nextCtxID++
	}
	c := &vmContext{id: vm.nextCtxID, parentID: parent, root: root}
	vm.nextCtxID++
	vm.contexts[c.id] = c
	return c
}

// errRestricted is the trap raised by a host call made where Envoy forbids it.
var errRestricted = errors.New("restricted_callback")

// callFn calls an exported function the way proxy-wasm-cpp-host's V8 glue
// does: the current context is saved and restored, the effective context
// is reset, and a trap marks the VM failed (RuntimeError) and yields 0.
// Caller holds mu.
func (vm *VM) callFn(c *vmContext, f *guestFn, args ...uint64) uint64 {
	if f == nil || f.fn == nil {
		return 0
	}
	if vm.calls != nil {
		vm.calls["guest."+f.name]++
	}
	savedCur, savedEff := vm.current, vm.effective
	vm.current, vm.effective = c, 0
	if vm.depth >= len(vm.stacks) {
		vm.stacks = append(vm.stacks, make([]uint64, 8))
	}
	stack := vm.stacks[vm.depth]
	copy(stack, args)
	vm.depth++
	ctx := vm.baseCtx
	var cancel context.CancelFunc
	if vm.depth == 1 && vm.host.cfg.CallTimeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, vm.host.cfg.CallTimeout)
	}
	err := f.fn.CallWithStack(ctx, stack)
	if cancel != nil {
		cancel()
	}
	vm.depth--
	vm.current, vm.effective = savedCur, savedEff
	if err != nil {
		msg := err.Error()
		if i := strings.Index(msg, "\nwasm stack trace"); i >= 0 {
			msg = msg[:i]
		}
		vm.fail(FailRuntimeError, fmt.Sprintf("Function: %s failed: %s", f.name, msg))
		return 0
	}
	if f.results == 0 {
		return 0
	}
	return stack[0]
}

// CountCalls starts counting, from zero, every call that crosses between
// host and guest: callbacks into the module as "guest.<export>" and host
// functions the module calls as "<module>.<function>" (WASI included). It is
// how a filter's per-request crossings are measured; counting costs a map
// update per call, so it is off until asked for.
func (vm *VM) CountCalls() {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.calls = map[string]uint64{}
}

// Calls returns what was counted since CountCalls (nil when not counting).
func (vm *VM) Calls() map[string]uint64 {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return maps.Clone(vm.calls)
}

// fail marks the VM failed; only the first failure is kept, as in Envoy.
func (vm *VM) fail(state FailState, msg string) {
	vm.logf(LogError, 0, "%s", msg)
	if vm.failState == FailNone {
		vm.failState, vm.failMsg = state, msg
	}
}

// runAfter resets stop-iteration and runs the actions deferred until the
// outermost VM call returns (proxy-wasm-cpp-host DeferAfterCallActions).
func (vm *VM) runAfter() {
	vm.stopIter = false
	for len(vm.after) > 0 {
		f := vm.after[0]
		vm.after = vm.after[1:]
		f()
	}
}

// Failed reports whether the VM has failed, and why.
func (vm *VM) Failed() (FailState, string) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.failState, vm.failMsg
}

// RootContextID is the id of the plugin's root context (1, as in Envoy).
func (vm *VM) RootContextID() uint32 {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.root == nil {
		return 0
	}
	return vm.root.id
}

// Host returns the host the VM belongs to.
func (vm *VM) Host() *Host { return vm.host }

// Close stops the VM's timers and async deliveries and releases the module
// instance. Envoy's shutdown callbacks (on_done/on_delete on the root) are
// run first.
func (vm *VM) Close(ctx context.Context) {
	vm.mu.Lock()
	if vm.closed {
		vm.mu.Unlock()
		return
	}
	if vm.failState == FailNone && vm.root != nil {
		if uint32(vm.callFn(vm.root, vm.fns["proxy_on_done"], uint64(vm.root.id))) != 0 || vm.fns["proxy_on_done"] == nil {
			vm.callFn(vm.root, vm.fns["proxy_on_delete"], uint64(vm.root.id))
		}
		vm.runAfter()
	}
	vm.closed = true
	for _, co := range vm.callouts {
		co.cancel()
	}
	close(vm.stop)
	vm.mu.Unlock()
	<-vm.done
	vm.mu.Lock()
	if vm.mod != nil {
		_ = vm.mod.Close(ctx)
	}
	vm.mu.Unlock()
	vm.logMu.Lock()
	vm.logOff = true
	vm.logMu.Unlock()
}

// post queues work for the VM's dispatcher, which runs it serialised with
// every other call into the VM, after the current callback returns.
func (vm *VM) post(f func()) {
	vm.tasksMu.Lock()
	vm.tasks = append(vm.tasks, f)
	vm.tasksMu.Unlock()
	select {
	case vm.tasksWake <- struct{}{}:
	default:
	}
}

// dispatch is the worker event loop: posted tasks and the tick timer.
func (vm *VM) dispatch() {
	defer close(vm.done)
	var tick <-chan time.Time
	var ticker *time.Ticker
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
	}()
	for {
		select {
		case <-vm.stop:
			return
		case <-vm.tickReset:
			if ticker != nil {
				ticker.Stop()
				ticker, tick = nil, nil
			}
			vm.mu.Lock()
			p := vm.tickPeriod
			vm.mu.Unlock()
			if p > 0 && !vm.host.cfg.ManualTicks {
				ticker = time.NewTicker(p)
				tick = ticker.C
			}
		case <-tick:
			vm.Tick()
		case <-vm.tasksWake:
			for {
				vm.tasksMu.Lock()
				if len(vm.tasks) == 0 {
					vm.tasksMu.Unlock()
					break
				}
				f := vm.tasks[0]
				vm.tasks = vm.tasks[1:]
				vm.tasksMu.Unlock()
				select {
				case <-vm.stop:
					return
				default:
				}
				f()
			}
		}
	}
}

// Tick calls proxy_on_tick on the root context now, as the tick timer does.
func (vm *VM) Tick() {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed || vm.failState != FailNone || vm.root == nil {
		return
	}
	vm.callFn(vm.root, vm.fns["proxy_on_tick"], uint64(vm.root.id))
	vm.runAfter()
}

// TickPeriod is the period the plugin asked for (0 = off).
func (vm *VM) TickPeriod() time.Duration {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.tickPeriod
}

func (vm *VM) onQueueReady(ctxID, token uint32) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed || vm.failState != FailNone {
		return
	}
	c := vm.contexts[ctxID]
	if c == nil {
		return
	}
	vm.callFn(c, vm.fns["proxy_on_queue_ready"], uint64(c.id), uint64(token))
	vm.runAfter()
}

// logf records a log line attributed to a context and forwards it.
func (vm *VM) logf(level LogLevel, ctxID uint32, format string, args ...any) {
	vm.addLog(LogEntry{Level: level, Message: fmt.Sprintf(format, args...), Context: ctxID, Time: time.Now()})
}

func (vm *VM) addLog(e LogEntry) {
	vm.logMu.Lock()
	defer vm.logMu.Unlock()
	if !vm.host.cfg.DiscardLogs {
		vm.logs = append(vm.logs, e)
	}
	if vm.logOff || vm.host.cfg.Logger == nil {
		return
	}
	func() {
		defer func() { _ = recover() }() // the test may have finished
		vm.host.cfg.Logger.Logf("[%s %s ctx=%d] %s", vm.name, e.Level, e.Context, e.Message)
	}()
}

// Logs returns every line logged so far.
func (vm *VM) Logs() []LogEntry {
	vm.logMu.Lock()
	defer vm.logMu.Unlock()
	return append([]LogEntry(nil), vm.logs...)
}

// LogMessages returns the messages logged at level or above.
func (vm *VM) LogMessages(level LogLevel) []string {
	var out []string
	for _, e := range vm.Logs() {
		if e.Level >= level {
			out = append(out, e.Message)
		}
	}
	return out
}

// WaitForLog polls the logs until one contains substr or ctx ends.
func (vm *VM) WaitForLog(ctx context.Context, substr string) (LogEntry, error) {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		for _, e := range vm.Logs() {
			if strings.Contains(e.Message, substr) {
				return e, nil
			}
		}
		select {
		case <-ctx.Done():
			return LogEntry{}, fmt.Errorf("waiting for log %q: %w", substr, ctx.Err())
		case <-t.C:
		}
	}
}
