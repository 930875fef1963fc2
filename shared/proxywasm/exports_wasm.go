//go:build wasip1

package proxywasm

//lint:file-ignore U1000 the host calls these through //go:wasmexport, which staticcheck does not follow

import "unsafe"

// This file is the Wasm entry point: the callbacks the host invokes.

//go:wasmexport proxy_abi_version_0_2_1
func proxyABIVersion021() {}

// proxyOnMemoryAllocate hands the host a Go-allocated buffer, pinned until the current callback returns.
//
//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) uint32 {
	if size == 0 {
		size = 1
	}
	b := make([]byte, size)
	addr := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	vm.pins[addr] = b
	return addr
}

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(contextID, parentID uint32) { vm.onContextCreate(contextID, parentID) }

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(contextID, vmConfigSize uint32) uint32 {
	return boolToU32(vm.onVMStart(contextID, vmConfigSize))
}

//go:wasmexport proxy_on_configure
func proxyOnConfigure(contextID, configSize uint32) uint32 {
	return boolToU32(vm.onConfigure(contextID, configSize))
}

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(contextID, numHeaders, endOfStream uint32) uint32 {
	return uint32(onRequestHeaders(contextID, numHeaders, endOfStream))
}

//go:wasmexport proxy_on_request_body
func proxyOnRequestBody(contextID, bodySize, endOfStream uint32) uint32 {
	return uint32(onRequestBody(contextID, bodySize, endOfStream))
}

//go:wasmexport proxy_on_request_trailers
func proxyOnRequestTrailers(contextID, numTrailers uint32) uint32 {
	return uint32(onRequestTrailers(contextID, numTrailers))
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(contextID, numHeaders, endOfStream uint32) uint32 {
	return uint32(onResponseHeaders(contextID, numHeaders, endOfStream))
}

//go:wasmexport proxy_on_response_body
func proxyOnResponseBody(contextID, bodySize, endOfStream uint32) uint32 {
	return uint32(onResponseBody(contextID, bodySize, endOfStream))
}

//go:wasmexport proxy_on_response_trailers
func proxyOnResponseTrailers(contextID, numTrailers uint32) uint32 {
	return uint32(onResponseTrailers(contextID, numTrailers))
}

//go:wasmexport proxy_on_http_call_response
func proxyOnHttpCallResponse(contextID, token, numHeaders, bodySize, numTrailers uint32) {
	vm.onHttpCallResponse(contextID, token, numHeaders, bodySize, numTrailers)
}

//go:wasmexport proxy_on_tick
func proxyOnTick(contextID uint32) { onTick(contextID) }

//go:wasmexport proxy_on_queue_ready
func proxyOnQueueReady(contextID, queueID uint32) { onQueueReady(contextID, queueID) }

//go:wasmexport proxy_on_log
func proxyOnLog(contextID uint32) { onLog(contextID) }

//go:wasmexport proxy_on_done
func proxyOnDone(contextID uint32) uint32 { return boolToU32(vm.onDone(contextID)) }

//go:wasmexport proxy_on_delete
func proxyOnDelete(contextID uint32) { vm.onDelete(contextID) }
