// Package wasmhost runs a built proxy-wasm (ABI v0.2.1) .wasm in native Go
// tests the way Envoy 1.40 (V8, proxy-wasm-cpp-host) runs it, restrictions
// included, so a filter that would crash or misbehave in Envoy does so here.
//
// # API
//
// A test builds a Host from the module and a VM per simulated worker, then
// sends requests:
//
//	h, err := wasmhost.NewHost(ctx, wasmhost.Config{
//		ModulePath: "filter.wasm", PluginName: "p", RootID: "r", VMID: "vm",
//		PluginConfig: []byte(`{...}`), Upstream: upstreamHandler,
//		Clusters: map[string]http.Handler{"keystore": ks},
//		Logger: t, CompilationCache: cache,
//	})
//	vm, err := h.NewVM(ctx)      // one Envoy worker
//	resp, err := vm.Do(ctx, req) // one request through filter + router
//
// The pieces:
//
//   - Host is one Envoy process: the module compiled once, plus what Envoy
//     shares between workers (shared data with CAS, shared queues, metrics).
//     Inspect it with SharedData, SetSharedData, Enqueue, Counter, Gauge,
//     Histogram, ClearRouteCacheCalls. NewCompilationCache shares compiled
//     code between hosts of a test binary.
//   - VM is one worker: its own instance, root context (id 1), stream
//     contexts (2, 3, ...), all calls serialised. Logs, LogMessages and
//     WaitForLog expose what the plugin logged; Tick runs proxy_on_tick now
//     (Config.ManualTicks turns the timer off); Failed reports a trap.
//   - VM.Do(ctx, *http.Request) behaves like Envoy's HTTP connection manager
//     with this filter then the router, over HTTP/1.1. Use Chunks(...) as the
//     request body to deliver several data frames. Upstream (an http.Handler)
//     sees the request as the plugin left it; each Flush of its
//     ResponseWriter is one response data frame. Response carries the status,
//     headers (exact map in Headers), body as the client read it, trailers,
//     LocalReply/LocalReplyDetails, RouteCacheClears. A stream paused forever
//     returns ctx's error; a reset returns ErrStreamReset.
//   - VM.NewStream gives the low-level per-stream API (RequestHeaders,
//     RequestBody, RequestTrailers, ResponseHeaders, ResponseBody,
//     ResponseTrailers, Log, Destroy, Finish) returning Envoy's filter
//     statuses; TakeEvents returns continue/local-reply/reset requests.
//
// # Envoy behaviours mirrored
//
// "Observed" means checked on Envoy 1.40.0 (official binary) with the test
// module in testdata/rawplugin, whose callbacks log their arguments;
// "source" means read in proxy-wasm-cpp-host (src/exports.cc, wasm.cc,
// context.cc) or Envoy (source/extensions/common/wasm/context.cc,
// plugin_config.cc).
//
//   - Start: instantiate (a missing import fails the VM: observed "Failed to
//     load Wasm module due to a missing import"), _initialize with only
//     logging/WASI host calls allowed (a proxy_* call traps with
//     "restricted_callback" and Envoy refuses the config: observed), then
//     proxy_on_context_create(1, 0), proxy_on_vm_start, proxy_on_configure;
//     false from either fails (source). The "malloc" export is preferred over
//     proxy_on_memory_allocate (source).
//   - Allocator: never called for empty data (pointer 0, size 0; observed
//     for an empty header value); a 0 return is a failure; inside it only
//     proxy_log, fd_write, clock_time_get and poll_oneoff may be called,
//     anything else traps (observed with proxy_get_log_level).
//   - WASI: exactly cpp-host's list after #533 with its answers (observed):
//     fd_write to stdout/stderr logs at info/error with one trailing newline
//     trimmed, other fds EBADF; fd_read ENOSYS; fd_seek/fd_close log at trace
//     and return 0; poll_oneoff succeeds with 0 events; random_get over
//     64 KiB EINVAL; clocks 0/1 only (others ENOTSUP); no args or env;
//     proc_exit only logs (a Go panic traps via unreachable: observed).
//   - A trap fails the whole VM (source, observed): the stream gets 503 with
//     an empty body and details wasm_fail_stream and no further callbacks.
//     Then FailClosed answers 503 to new streams, FailOpen skips the filter
//     (the trapping stream still got 503: observed), FailReload recreates
//     the VM once ReloadBackoff (Envoy default 1 s) has passed (observed).
//   - Statuses (source): headers PAUSE is StopAllIterationAndWatermark unless
//     AllowOnHeadersStopIteration; body PAUSE is StopIterationAndBuffer and
//     body_size then grows with the buffered body (observed 4, 10, 12, 12 for
//     three chunks); after a local reply, Continue is ignored. While headers
//     are stopped-all, body frames are buffered and delivered in one
//     callback after continue (observed with a callout).
//   - HTTP/1 framing (observed): a body is delivered chunk by chunk, then an
//     empty end-of-stream chunk; a request without body (or content-length
//     0) has end_of_stream on headers; a 204 response likewise.
//   - Maps (observed): keys lower-cased, pairs in Envoy's order
//     (pseudo-headers first; x-forwarded-proto and x-request-id added before
//     the filter), get returns the first of repeated values, missing is
//     NOT_FOUND, remove of a missing key is OK, replace removes all and
//     appends, "host" aliases ":authority", proxy_get_header_map_size is the
//     byte size. Once a headers callback returns Continue (or
//     continue_stream is called) the request map is gone: get answers
//     BAD_ARGUMENT, get_pairs an empty map, request.* properties NOT_FOUND
//     (observed in body and response callbacks). In proxy_on_log the final
//     maps are readable (observed).
//   - Buffers (source, observed): set_buffer_bytes with start 0 drains
//     `size` bytes and prepends (0/0 prepends, 0/len replaces), start at or
//     past the end appends, else BAD_ARGUMENT; configuration buffers are
//     read-only; the plugin configuration is only readable inside
//     proxy_on_configure. Envoy does not fix content-length after a body
//     rewrite: an HTTP/1 peer reads the announced length (observed both
//     ways); Do reproduces it (ContentLengthMismatch, ErrShortBody).
//   - Local reply (observed): deferred until the callback returns; sent
//     during the request it runs through this filter's response callbacks
//     (headers :status, plugin headers, content-length, content-type
//     text/plain when missing; body in one end-of-stream chunk) and the
//     upstream is never reached or is reset; sent from the response headers
//     callback it replaces the response without calling the filter again;
//     once the client has the announced body it changes nothing.
//   - http_call (source, observed): made from the root context, tokens 4, 8,
//     ... per VM; unknown cluster or missing :method/:path/:authority is
//     BAD_ARGUMENT; the response arrives later on proxy_on_http_call_response
//     (root id, token, header count, body size, trailer count) and is
//     readable only then; the upstream sees x-envoy-internal and
//     x-envoy-expected-rq-timeout-ms; a timeout is Envoy's local 504
//     "upstream request timeout" (3 headers), not a 0-header failure; a
//     reset is 0/0/0 with get_status BROKEN_CONNECTION "reset".
//   - Shared data/queues (source, observed): cas starts at 1 and changes on
//     every set, NOT_FOUND, CAS_MISMATCH (8), queue tokens from 1, resolve of
//     an unknown queue NOT_FOUND, enqueue wakes proxy_on_queue_ready on the
//     last registering VM's root context asynchronously, empty dequeue EMPTY.
//   - Metrics (source, observed): ids 4n+type per VM, same name shared;
//     counter increment <= 0 BAD_ARGUMENT, record adds; gauge increment may
//     be negative and wraps as uint64; histograms only record (get and
//     increment BAD_ARGUMENT).
//   - Properties (observed): request.path/url_path/query/method/host/scheme/
//     id/headers/protocol/time, source/destination address and port (int64
//     LE), connection.id, plugin_name/root_id/vm_id, response.code/headers
//     in the response phase, xds.cluster_name; set_property stores a
//     per-stream value readable by its top-level name; root contexts get
//     NOT_FOUND. Config.Properties adds or overrides values by dotted path.
//   - Foreign functions: clear_route_cache answers OK (observed) and is
//     counted; unknown names NOT_FOUND (observed). ABI <= 0.2.1 request
//     header changes also clear the route cache (Envoy changelog).
//   - Ticks: proxy_set_tick_period_milliseconds starts a timer calling
//     proxy_on_tick on the root context (observed); 0 stops it.
//   - Stream end (observed): proxy_on_log, proxy_on_done, proxy_on_delete.
//
// # Differences
//
// gRPC calls answer PARSE_FAILURE for an unknown cluster and UNIMPLEMENTED
// otherwise; proxy_done answers NOT_FOUND (VMs close without waiting);
// HTTP/1.1 only; upstream response headers omit Date; x-request-id is kept
// when the client sends one (observed for loopback clients). Config.CallTimeout
// (off by default, Envoy has none) kills a runaway guest.
package wasmhost
