package proxywasm

// The callbacks of ABI v0.2.1 as plain Go functions: exports_wasm.go exposes
// them to the host with //go:wasmexport, native.go to an in-process test host,
// so both builds run exactly the same dispatch code.

func onRequestHeaders(contextID, numHeaders, endOfStream uint32) Action {
	return vm.onHTTP(contextID, "proxy_on_request_headers", true, func(c HttpContext) Action {
		return c.OnRequestHeaders(int(numHeaders), endOfStream != 0)
	})
}

func onRequestBody(contextID, bodySize, endOfStream uint32) Action {
	return vm.onHTTP(contextID, "proxy_on_request_body", true, func(c HttpContext) Action {
		return c.OnRequestBody(int(bodySize), endOfStream != 0)
	})
}

func onRequestTrailers(contextID, numTrailers uint32) Action {
	return vm.onHTTP(contextID, "proxy_on_request_trailers", true, func(c HttpContext) Action {
		return c.OnRequestTrailers(int(numTrailers))
	})
}

func onResponseHeaders(contextID, numHeaders, endOfStream uint32) Action {
	return vm.onHTTP(contextID, "proxy_on_response_headers", false, func(c HttpContext) Action {
		return c.OnResponseHeaders(int(numHeaders), endOfStream != 0)
	})
}

func onResponseBody(contextID, bodySize, endOfStream uint32) Action {
	return vm.onHTTP(contextID, "proxy_on_response_body", false, func(c HttpContext) Action {
		return c.OnResponseBody(int(bodySize), endOfStream != 0)
	})
}

func onResponseTrailers(contextID, numTrailers uint32) Action {
	return vm.onHTTP(contextID, "proxy_on_response_trailers", false, func(c HttpContext) Action {
		return c.OnResponseTrailers(int(numTrailers))
	})
}

func onTick(contextID uint32) { vm.onRoot(contextID, "proxy_on_tick", PluginContext.OnTick) }

func onQueueReady(contextID, queueID uint32) {
	vm.onRoot(contextID, "proxy_on_queue_ready", func(p PluginContext) { p.OnQueueReady(queueID) })
}

func onLog(contextID uint32) { vm.onStreamEnd(contextID, "proxy_on_log", HttpContext.OnLog) }

func boolToU32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
