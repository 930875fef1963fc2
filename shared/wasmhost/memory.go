package wasmhost

// Guest memory helpers with proxy-wasm-cpp-host's bounds rules: a range is
// valid when ptr+size does not pass the end of memory (size 0 included).

func (vm *VM) read(ptr, size uint32) ([]byte, bool) {
	return vm.mem.Read(ptr, size)
}

// readString copies a guest range into a Go string.
func (vm *VM) readString(ptr, size uint32) (string, bool) {
	b, ok := vm.mem.Read(ptr, size)
	if !ok {
		return "", false
	}
	return string(b), true
}

func (vm *VM) writeU32(ptr, v uint32) bool { return vm.mem.WriteUint32Le(ptr, v) }

func (vm *VM) writeU64(ptr uint32, v uint64) bool { return vm.mem.WriteUint64Le(ptr, v) }

// allocMemory calls the guest allocator with Envoy's restrictions: only
// logging, clock and poll_oneoff may be called from inside it, and a 0
// return (or a block outside memory) is a failure.
func (vm *VM) allocMemory(size uint32) (uint32, bool) {
	if vm.malloc == nil {
		return 0, false
	}
	saved := vm.restricted
	vm.restricted = allocAllowed
	addr := uint32(vm.callFn(vm.vmCtx, vm.malloc, uint64(size)))
	vm.restricted = nil
	_ = saved // Envoy clears the restriction unconditionally afterwards.
	if addr == 0 {
		return 0, false
	}
	if _, ok := vm.mem.Read(addr, size); !ok {
		return 0, false
	}
	return addr, true
}

// copyToPointerSize hands data to the guest like WasmBase::copyToPointerSize:
// empty data is returned as pointer 0 / size 0 without calling the allocator.
func (vm *VM) copyToPointerSize(data []byte, ptrPtr, sizePtr uint32) bool {
	var addr uint32
	if len(data) > 0 {
		a, ok := vm.allocMemory(uint32(len(data)))
		if !ok {
			return false
		}
		if !vm.mem.Write(a, data) {
			return false
		}
		addr = a
	}
	return vm.writeU32(ptrPtr, addr) && vm.writeU32(sizePtr, uint32(len(data)))
}

// copyStringToPointerSize is copyToPointerSize for a string.
func (vm *VM) copyStringToPointerSize(s string, ptrPtr, sizePtr uint32) bool {
	var addr uint32
	if len(s) > 0 {
		a, ok := vm.allocMemory(uint32(len(s)))
		if !ok {
			return false
		}
		if !vm.mem.WriteString(a, s) {
			return false
		}
		addr = a
	}
	return vm.writeU32(ptrPtr, addr) && vm.writeU32(sizePtr, uint32(len(s)))
}
