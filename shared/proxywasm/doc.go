// Package proxywasm is Tollgate's binding of the proxy-wasm ABI v0.2.1 for the
// upstream Go toolchain (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared).
//
// TinyGo-only SDKs export no proxy_on_* callbacks when built with upstream Go,
// so this package declares the host imports with //go:wasmimport and the
// callbacks with //go:wasmexport itself, and offers a small typed API above
// them. Plugin code never touches pointers:
//
//	func init() {
//		proxywasm.SetPluginFactory(func(rootID uint32) proxywasm.PluginContext { return &plugin{} })
//	}
//
// Guarantees, by construction:
//   - Memory the host fills through proxy_on_memory_allocate is pinned in a
//     table until the outermost callback returns, so the GC can never free it
//     before the guest has read it. Memory the guest passes to the host is kept
//     alive for the duration of the host call.
//   - A panic in any callback is recovered and logged. In an HTTP context the
//     stream is answered with a 500 JSON error; the VM keeps serving.
//   - Zero-length values and missing headers are ordinary results
//     ("" / nil with ErrNotFound), never crashes.
//
// Host calls act on the context Envoy made current for the running callback.
// An HTTP call's response is delivered with the dispatching HTTP context made
// current again (proxy_set_effective_context) while it still exists.
//
// NewChain runs several plugins as one Envoy filter (the suite module's
// fused filter): one configuration with a section per plugin, every
// callback crossing into the VM once, each plugin driven exactly as Envoy's
// own filter chain would drive it (chain.go); RequestMemo lets the plugins
// of one stream share one parse of its body.
//
// Envoy behaviours a plugin author must know (verified on Envoy 1.40):
//   - PAUSE from a request-headers callback without the PluginConfig option
//     allow_on_headers_stop_iteration stops body callbacks until the plugin
//     resumes the stream; set the option to buffer the body before routing.
//   - Body PAUSE means "buffer": the next body callback reports the
//     accumulated size, and RequestBody.Get returns the whole buffer.
package proxywasm
