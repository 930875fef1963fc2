//go:build wasip1

// Command missingimport is a test module importing a host function that
// neither Envoy nor the test host provides: instantiation must fail.
package main

//go:wasmimport env proxy_does_not_exist
func proxyDoesNotExist() uint32

func main() {}

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 { return 0 }

//go:wasmexport proxy_on_context_create
func onContextCreate(ctx, parent uint32) {
	if ctx == 12345 {
		proxyDoesNotExist()
	}
}
