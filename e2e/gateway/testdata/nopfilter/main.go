// Command nopfilter is the cheapest proxy-wasm filter upstream Go can build:
// its callbacks return at once, without the proxywasm package, a map or an
// allocation. BenchmarkFilterAlone loads it to measure what Envoy and V8
// charge for calling into a Go module at all, and, configured with
// "get N", "remove N" or "setall N", what one host call costs: its request
// headers callback then reads :path N times (each a host call that
// re-enters the module through proxy_on_memory_allocate to return the
// value), removes an absent header N times (a host call that returns
// nothing), or reads the request headers once and writes them back whole N
// times (Envoy rebuilds the map each time).
package main

import "unsafe"

//go:wasmimport env proxy_get_buffer_bytes
func getBufferBytes(bufferType, start, maxSize uint32, retData, retSize unsafe.Pointer) uint32

//go:wasmimport env proxy_get_header_map_value
func getHeaderMapValue(mapType uint32, key unsafe.Pointer, keyLen uint32, retData, retSize unsafe.Pointer) uint32

//go:wasmimport env proxy_remove_header_map_value
func removeHeaderMapValue(mapType uint32, key unsafe.Pointer, keyLen uint32) uint32

//go:wasmimport env proxy_get_header_map_pairs
func getHeaderMapPairs(mapType uint32, retData, retSize unsafe.Pointer) uint32

//go:wasmimport env proxy_set_header_map_pairs
func setHeaderMapPairs(mapType uint32, data unsafe.Pointer, size uint32) uint32

// heap is the memory handed to the host; values are read into it and dropped.
var heap [64 << 10]byte

// gets, removes and setalls are the host calls per request, from the configuration.
var gets, removes, setalls int

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func memoryAllocate(size uint32) uint32 {
	if size > uint32(len(heap)) {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&heap[0])))
}

//go:wasmexport proxy_on_context_create
func contextCreate(contextID, parentID uint32) {}

//go:wasmexport proxy_on_vm_start
func vmStart(contextID, size uint32) uint32 { return 1 }

//go:wasmexport proxy_on_configure
func configure(contextID, size uint32) uint32 {
	if size == 0 {
		return 1
	}
	var addr, n uint32
	if getBufferBytes(7, 0, size, unsafe.Pointer(&addr), unsafe.Pointer(&n)) != 0 || n > uint32(len(heap)) {
		return 0
	}
	cfg := string(heap[:n])
	count := 0
	i := 0
	for i < len(cfg) && (cfg[i] < '0' || cfg[i] > '9') {
		i++
	}
	for ; i < len(cfg) && cfg[i] >= '0' && cfg[i] <= '9'; i++ {
		count = count*10 + int(cfg[i]-'0')
	}
	switch {
	case len(cfg) >= 3 && cfg[:3] == "get":
		gets = count
	case len(cfg) >= 6 && cfg[:6] == "remove":
		removes = count
	case len(cfg) >= 6 && cfg[:6] == "setall":
		setalls = count
	}
	return 1
}

var (
	path   = []byte(":path")
	absent = []byte("x-nopfilter-absent")
)

//go:wasmexport proxy_on_request_headers
func requestHeaders(contextID, n, end uint32) uint32 {
	var addr, size uint32
	for range gets {
		getHeaderMapValue(0, unsafe.Pointer(&path[0]), uint32(len(path)), unsafe.Pointer(&addr), unsafe.Pointer(&size))
	}
	for range removes {
		removeHeaderMapValue(0, unsafe.Pointer(&absent[0]), uint32(len(absent)))
	}
	if setalls > 0 {
		if getHeaderMapPairs(0, unsafe.Pointer(&addr), unsafe.Pointer(&size)) == 0 && size > 0 {
			saved := make([]byte, size) // the next read reuses heap
			copy(saved, heap[:size])
			for range setalls {
				setHeaderMapPairs(0, unsafe.Pointer(&saved[0]), size)
			}
		}
	}
	return 0
}

//go:wasmexport proxy_on_request_body
func requestBody(contextID, n, end uint32) uint32 { return 0 }

//go:wasmexport proxy_on_response_headers
func responseHeaders(contextID, n, end uint32) uint32 { return 0 }

//go:wasmexport proxy_on_response_body
func responseBody(contextID, n, end uint32) uint32 { return 0 }

//go:wasmexport proxy_on_log
func onLog(contextID uint32) {}

//go:wasmexport proxy_on_done
func onDone(contextID uint32) uint32 { return 1 }

//go:wasmexport proxy_on_delete
func onDelete(contextID uint32) {}

func main() {}
