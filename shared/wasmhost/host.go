package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// TB is the part of testing.TB the host uses to forward VM logs.
type TB interface {
	Helper()
	Logf(format string, args ...any)
}

// Config describes one Envoy process running one Wasm HTTP filter plugin.
// The zero value of every optional field behaves like Envoy's default.
type Config struct {
	// Module is the compiled .wasm; ModulePath is read when Module is empty.
	Module     []byte
	ModulePath string

	// PluginName, RootID and VMID are the PluginConfig name, root_id and
	// vm_config.vm_id (shared data and queues are scoped by VMID).
	PluginName string
	RootID     string
	VMID       string
	// PluginConfig is PluginConfig.configuration, read by proxy_on_configure.
	PluginConfig []byte
	// VMConfig is vm_config.configuration, read by proxy_on_vm_start.
	VMConfig []byte
	// Env is vm_config.environment_variables ("KEY=value" entries): what
	// WASI environ_get hands the module, e.g. GODEBUG or GOGC for a Go
	// runtime. Envoy's default, like nil here, is an empty environment.
	Env []string
	// AllowOnHeadersStopIteration mirrors allow_on_headers_stop_iteration:
	// without it a PAUSE from a headers callback stops all iteration.
	AllowOnHeadersStopIteration bool
	// FailurePolicy is PluginConfig.failure_policy (default FailClosed).
	FailurePolicy FailurePolicy
	// ReloadBackoff is the FAIL_RELOAD backoff base (Envoy default 1s).
	ReloadBackoff time.Duration

	// Clusters are the targets of proxy_http_call, by cluster name.
	Clusters map[string]http.Handler
	// Upstream is the cluster the route sends streams to (the router).
	// Nil answers 503 "no healthy upstream" like a cluster without hosts.
	Upstream http.Handler
	// RouteTimeout is the route timeout (Envoy default 15s); 0 keeps it.
	RouteTimeout time.Duration

	// Properties adds values for proxy_get_property, keyed by the dotted
	// path ("node.id"), raw bytes as the plugin will receive them.
	Properties map[string][]byte
	// SourceAddress and DestinationAddress are the downstream connection's
	// peer and local "ip:port" (defaults 127.0.0.1:50000 / 127.0.0.1:10000).
	SourceAddress      string
	DestinationAddress string
	// ForeignFunctions adds proxy_call_foreign_function targets; Envoy's
	// clear_route_cache is built in.
	ForeignFunctions map[string]func(args []byte) ([]byte, Status)

	// LogLevel is what proxy_get_log_level answers. The zero value (which
	// would be trace) means LogInfo, Envoy's default level.
	LogLevel LogLevel
	// Logger receives every VM log line when set (typically a *testing.T).
	Logger TB
	// DiscardLogs stops the VM from keeping log lines (benchmarks); they
	// are still forwarded to Logger.
	DiscardLogs bool
	// ManualTicks disables the tick goroutine: ticks then only happen
	// through VM.Tick, for deterministic tests.
	ManualTicks bool
	// NoCustomMetrics makes proxy_define_metric answer UNIMPLEMENTED, as
	// hosts without custom metrics do (Google Cloud Service Extensions).
	NoCustomMetrics bool
	// CallTimeout bounds a single call into the guest; when it fires the VM
	// is killed and marked failed. 0 means no bound (Envoy has none).
	CallTimeout time.Duration
	// CompilationCache shares compiled code between hosts (see
	// NewCompilationCache); nil compiles afresh.
	CompilationCache wazero.CompilationCache
	// Now overrides the wall clock seen by the plugin.
	Now func() time.Time
}

// NewCompilationCache returns a cache that makes every Host after the first
// one for the same module skip compilation. Share one per test binary.
func NewCompilationCache() wazero.CompilationCache {
	return wazero.NewCompilationCache()
}

// Host is one Envoy process: the module compiled once and the state Envoy
// shares between its worker VMs (shared data, shared queues, metrics).
type Host struct {
	cfg      Config
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	abi      string

	shared  *sharedData
	queues  *sharedQueues
	metrics *metrics

	monoStart   time.Time
	vmSeq       atomic.Uint64
	connSeq     atomic.Uint64
	routeClears atomic.Int64

	mu     sync.Mutex
	vms    []*VM
	closed bool
}

// Exported module functions Envoy looks up, with their wasm signatures.
var moduleFunctions = map[string][2][]api.ValueType{
	"_initialize":                 {nil, nil},
	"_start":                      {nil, nil},
	"malloc":                      {{i32}, {i32}},
	"proxy_on_memory_allocate":    {{i32}, {i32}},
	"proxy_on_context_create":     {{i32, i32}, nil},
	"proxy_on_vm_start":           {{i32, i32}, {i32}},
	"proxy_on_configure":          {{i32, i32}, {i32}},
	"proxy_on_tick":               {{i32}, nil},
	"proxy_on_queue_ready":        {{i32, i32}, nil},
	"proxy_on_request_headers":    {{i32, i32, i32}, {i32}},
	"proxy_on_request_body":       {{i32, i32, i32}, {i32}},
	"proxy_on_request_trailers":   {{i32, i32}, {i32}},
	"proxy_on_response_headers":   {{i32, i32, i32}, {i32}},
	"proxy_on_response_body":      {{i32, i32, i32}, {i32}},
	"proxy_on_response_trailers":  {{i32, i32}, {i32}},
	"proxy_on_http_call_response": {{i32, i32, i32, i32, i32}, nil},
	"proxy_on_log":                {{i32}, nil},
	"proxy_on_done":               {{i32}, {i32}},
	"proxy_on_delete":             {{i32}, nil},
	"proxy_on_foreign_function":   {{i32, i32, i32}, nil},
}

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// ErrModule reports a module Envoy would refuse to load.
var ErrModule = errors.New("wasm module rejected")

// NewHost compiles the module and prepares the shared state. It rejects a
// module the way Envoy rejects it at load time (missing ABI marker, bad
// callback signatures); missing imports are reported by NewVM.
func NewHost(ctx context.Context, cfg Config) (*Host, error) {
	code := cfg.Module
	if len(code) == 0 {
		if cfg.ModulePath == "" {
			return nil, fmt.Errorf("%w: no Module or ModulePath", ErrModule)
		}
		b, err := os.ReadFile(cfg.ModulePath)
		if err != nil {
			return nil, fmt.Errorf("read module: %w", err)
		}
		code = b
	}
	if cfg.SourceAddress == "" {
		cfg.SourceAddress = "127.0.0.1:50000"
	}
	if cfg.DestinationAddress == "" {
		cfg.DestinationAddress = "127.0.0.1:10000"
	}
	if cfg.LogLevel == 0 {
		cfg.LogLevel = LogInfo
	}
	if cfg.ReloadBackoff == 0 {
		cfg.ReloadBackoff = time.Second
	}
	if cfg.RouteTimeout == 0 {
		cfg.RouteTimeout = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	rc := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(maxMemoryPages).
		WithCloseOnContextDone(cfg.CallTimeout > 0)
	if cfg.CompilationCache != nil {
		rc = rc.WithCompilationCache(cfg.CompilationCache)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	h := &Host{cfg: cfg, rt: rt, monoStart: time.Now(), shared: newSharedData(), queues: newSharedQueues(), metrics: newMetrics()}
	compiled, err := rt.CompileModule(ctx, code)
	if err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("%w: compile: %w", ErrModule, err)
	}
	h.compiled = compiled
	if err := h.checkExports(); err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	if err := h.instantiateHostModules(ctx); err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	return h, nil
}

// maxMemoryPages is proxy-wasm-cpp-host's 1 GiB memory cap in 64 KiB pages.
const maxMemoryPages = 16384

func (h *Host) checkExports() error {
	exports := h.compiled.ExportedFunctions()
	switch {
	case exports["proxy_abi_version_0_2_1"] != nil:
		h.abi = "0.2.1"
	case exports["proxy_abi_version_0_2_0"] != nil:
		h.abi = "0.2.0"
	case exports["proxy_abi_version_0_1_0"] != nil:
		return fmt.Errorf("%w: ABI 0.1.0 is not supported by this host", ErrModule)
	default:
		return fmt.Errorf("%w: Missing or unknown Proxy-Wasm ABI version", ErrModule)
	}
	names := make([]string, 0, len(moduleFunctions))
	for n := range moduleFunctions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		def := exports[name]
		if def == nil {
			continue
		}
		want := moduleFunctions[name]
		if !sameTypes(def.ParamTypes(), want[0]) || !sameTypes(def.ResultTypes(), want[1]) {
			return fmt.Errorf("%w: Bad function signature for: %s", ErrModule, name)
		}
	}
	if exports["malloc"] == nil && exports["proxy_on_memory_allocate"] == nil {
		return fmt.Errorf("%w: Wasm module is missing malloc function", ErrModule)
	}
	return nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Config returns the configuration the host runs with (defaults filled).
func (h *Host) Config() Config { return h.cfg }

// Close closes every VM and releases the runtime.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	vms := h.vms
	h.vms = nil
	h.mu.Unlock()
	for _, vm := range vms {
		vm.Close(ctx)
	}
	if err := h.rt.Close(ctx); err != nil {
		return fmt.Errorf("close runtime: %w", err)
	}
	return nil
}

// SharedData returns a shared-data entry of the host's vm_id as a plugin
// would read it, for assertions.
func (h *Host) SharedData(key string) (value []byte, cas uint32, ok bool) {
	v, c, st := h.shared.get(h.cfg.VMID, key)
	return v, c, st == StatusOK
}

// SetSharedData writes a shared-data entry (cas 0 = unconditional), for
// seeding state from a test.
func (h *Host) SetSharedData(key string, value []byte, cas uint32) Status {
	return h.shared.set(h.cfg.VMID, key, value, cas)
}

// Enqueue pushes data onto a registered shared queue of the host's vm_id,
// waking the registering VM like another worker's enqueue would.
func (h *Host) Enqueue(queue string, data []byte) Status {
	tok := h.queues.resolve(h.cfg.VMID, queue)
	if tok == 0 {
		return StatusNotFound
	}
	return h.queues.enqueue(tok, data)
}

// Counter returns a counter metric by name (as defined by the plugin).
func (h *Host) Counter(name string) (uint64, bool) {
	h.metrics.mu.Lock()
	defer h.metrics.mu.Unlock()
	v, ok := h.metrics.counters[name]
	return v, ok
}

// Gauge returns a gauge metric by name; Envoy gauges are unsigned and wrap.
func (h *Host) Gauge(name string) (uint64, bool) {
	h.metrics.mu.Lock()
	defer h.metrics.mu.Unlock()
	v, ok := h.metrics.gauges[name]
	return v, ok
}

// Histogram returns the values recorded into a histogram metric.
func (h *Host) Histogram(name string) ([]uint64, bool) {
	h.metrics.mu.Lock()
	defer h.metrics.mu.Unlock()
	v, ok := h.metrics.histograms[name]
	return append([]uint64(nil), v...), ok
}

// ClearRouteCacheCalls counts proxy_call_foreign_function("clear_route_cache")
// calls made by any VM of this host.
func (h *Host) ClearRouteCacheCalls() int64 { return h.routeClears.Load() }
