//go:build wasip1

// Command initcall is a test module that calls a proxy-wasm host function
// from a package initialiser, which runs inside _initialize: Envoy forbids it.
package main

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxySetTickPeriodMilliseconds(ms uint32) uint32

//go:wasmimport env proxy_log
func proxyLog(level uint32, msg *byte, size uint32) uint32

func init() {
	msg := "initcall: init running"
	proxyLog(2, &[]byte(msg)[0], uint32(len(msg)))
	proxySetTickPeriodMilliseconds(1000)
}

func main() {}

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 { return 0 }

//go:wasmexport proxy_on_context_create
func onContextCreate(ctx, parent uint32) {}
