//go:build wasip1

// Command miniplugin is a tiny proxy-wasm plugin written against the raw ABI
// (no dependency on shared/proxywasm) that the harness self-test loads into
// real Envoy: it logs its plugin configuration, adds x-mini to requests, and
// on the path /trap dies with an unrecovered panic, so the test can prove the
// crash detector matches what Envoy really logs.
package main

import "unsafe"

//go:wasmimport env proxy_log
func proxyLog(level int32, p unsafe.Pointer, n int32) int32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(typ, start, max int32, pp unsafe.Pointer, pn unsafe.Pointer) int32

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(m int32, kp unsafe.Pointer, kn int32, vp unsafe.Pointer, vn unsafe.Pointer) int32

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(m int32, kp unsafe.Pointer, kn int32, vp unsafe.Pointer, vn int32) int32

const (
	bufferPluginConfiguration = 7
	mapRequestHeaders         = 0
	logInfo                   = 2
)

// live keeps memory handed to the host reachable until the guest reads it.
var live = map[uintptr][]byte{}

func main() {}

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size int32) unsafe.Pointer {
	b := make([]byte, size+1) // never zero-sized
	p := unsafe.Pointer(&b[0])
	live[uintptr(p)] = b
	return p
}

// take copies and releases a host-filled buffer.
func take(p unsafe.Pointer, n int32) string {
	if p == nil {
		return ""
	}
	s := string(unsafe.Slice((*byte)(p), n))
	delete(live, uintptr(p))
	return s
}

func logf(msg string) {
	b := []byte(msg)
	proxyLog(logInfo, unsafe.Pointer(&b[0]), int32(len(b)))
}

//go:wasmexport proxy_on_context_create
func onContextCreate(ctx, parent int32) {}

//go:wasmexport proxy_on_vm_start
func onVMStart(root, size int32) int32 { return 1 }

//go:wasmexport proxy_on_configure
func onConfigure(root, size int32) int32 {
	var p unsafe.Pointer
	var n int32
	cfg := ""
	if size > 0 && proxyGetBufferBytes(bufferPluginConfiguration, 0, size, unsafe.Pointer(&p), unsafe.Pointer(&n)) == 0 {
		cfg = take(p, n)
	}
	logf("miniplugin config: " + cfg)
	return 1
}

func requestHeader(name string) string {
	k := []byte(name)
	var p unsafe.Pointer
	var n int32
	if proxyGetHeaderMapValue(mapRequestHeaders, unsafe.Pointer(&k[0]), int32(len(k)), unsafe.Pointer(&p), unsafe.Pointer(&n)) != 0 {
		return ""
	}
	return take(p, n)
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(ctx, headers, endOfStream int32) int32 {
	if requestHeader(":path") == "/trap" {
		panic("miniplugin: deliberate trap")
	}
	k, v := []byte("x-mini"), []byte("yes")
	proxyAddHeaderMapValue(mapRequestHeaders, unsafe.Pointer(&k[0]), int32(len(k)), unsafe.Pointer(&v[0]), int32(len(v)))
	return 0
}

//go:wasmexport proxy_on_done
func onDone(ctx int32) int32 { return 1 }

//go:wasmexport proxy_on_delete
func onDelete(ctx int32) {}
