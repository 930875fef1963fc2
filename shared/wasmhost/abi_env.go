package wasmhost

import (
	"context"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// hostFunc is one host function exported to the guest.
type hostFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	fn      func(vm *VM, s []uint64)
}

func vmFrom(ctx context.Context) *VM {
	return ctx.Value(vmKey{}).(*VM)
}

// export registers fns in a host module, each guarded by the restriction
// check proxy-wasm-cpp-host performs before every host call.
func export(b wazero.HostModuleBuilder, module string, fns []hostFunc) {
	for _, f := range fns {
		full := module + "." + f.name
		fn := f.fn
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, s []uint64) {
				vm := vmFrom(ctx)
				if vm.restricted != nil && !vm.restricted[full] {
					panic(errRestricted)
				}
				if vm.calls != nil {
					vm.calls[full]++
				}
				fn(vm, s)
			}), f.params, f.results).
			Export(f.name)
	}
}

func (h *Host) instantiateHostModules(ctx context.Context) error {
	env := h.rt.NewHostModuleBuilder("env")
	fns := envFunctions()
	if h.abi == "0.2.1" {
		fns = append(fns, hostFunc{"proxy_get_log_level", p(i32), r32, func(vm *VM, s []uint64) {
			s[0] = st(vm.writeU32(u32(s[0]), uint32(vm.host.cfg.LogLevel)))
		}})
	}
	export(env, "env", fns)
	if _, err := env.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate env: %w", err)
	}
	for _, name := range []string{"wasi_snapshot_preview1", "wasi_unstable"} {
		b := h.rt.NewHostModuleBuilder(name)
		export(b, name, wasiFunctions())
		if _, err := b.Instantiate(ctx); err != nil {
			return fmt.Errorf("instantiate %s: %w", name, err)
		}
	}
	return nil
}

func p(t ...api.ValueType) []api.ValueType { return t }

var r32 = []api.ValueType{i32}

func u32(v uint64) uint32 { return uint32(v) }

// st converts a memory-write success flag into OK / INVALID_MEMORY_ACCESS.
func st(ok bool) uint64 {
	if ok {
		return uint64(StatusOK)
	}
	return uint64(StatusInvalidMemoryAccess)
}

// ctxOrEffective is proxy-wasm-cpp-host's contextOrEffectiveContext().
func (vm *VM) ctxOrEffective() *vmContext {
	if vm.effective != 0 {
		if c := vm.contexts[vm.effective]; c != nil {
			return c
		}
	}
	if vm.current == nil {
		return vm.vmCtx
	}
	return vm.current
}

// rootOf returns the root context of c (c itself for root contexts).
func (vm *VM) rootOf(c *vmContext) *vmContext {
	if c.root {
		return c
	}
	if r := vm.contexts[c.parentID]; r != nil {
		return r
	}
	return c
}

func envFunctions() []hostFunc {
	return []hostFunc{
		{"pthread_equal", p(i32, i32), r32, func(vm *VM, s []uint64) {
			if u32(s[0]) == u32(s[1]) {
				s[0] = 1
			} else {
				s[0] = 0
			}
		}},
		{"emscripten_notify_memory_growth", p(i32), nil, func(vm *VM, s []uint64) {}},
		{"proxy_log", p(i32, i32, i32), r32, func(vm *VM, s []uint64) {
			level := u32(s[0])
			if level > uint32(LogCritical) {
				s[0] = uint64(StatusBadArgument)
				return
			}
			msg, ok := vm.readString(u32(s[1]), u32(s[2]))
			if !ok {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			vm.logf(LogLevel(level), vm.ctxOrEffective().id, "%s", msg)
			s[0] = 0
		}},
		{"proxy_get_current_time_nanoseconds", p(i32), r32, func(vm *VM, s []uint64) {
			s[0] = st(vm.writeU64(u32(s[0]), uint64(vm.host.cfg.Now().UnixNano())))
		}},
		{"proxy_set_tick_period_milliseconds", p(i32), r32, func(vm *VM, s []uint64) {
			vm.setTickPeriod(time.Duration(u32(s[0])) * time.Millisecond)
			s[0] = 0
		}},
		{"proxy_get_status", p(i32, i32, i32), r32, func(vm *VM, s []uint64) {
			root := vm.rootOf(vm.ctxOrEffective())
			if !vm.writeU32(u32(s[0]), root.statusCode) {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			s[0] = st(vm.copyStringToPointerSize(root.statusMessage, u32(s[1]), u32(s[2])))
		}},
		{"proxy_set_property", p(i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			path, ok1 := vm.readString(u32(s[0]), u32(s[1]))
			val, ok2 := vm.read(u32(s[2]), u32(s[3]))
			if !ok1 || !ok2 {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			s[0] = uint64(vm.setProperty(vm.ctxOrEffective(), path, val))
		}},
		{"proxy_get_property", p(i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			path, ok := vm.readString(u32(s[0]), u32(s[1]))
			if !ok {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			val, status := vm.getProperty(vm.ctxOrEffective(), path)
			if status != StatusOK {
				s[0] = uint64(status)
				return
			}
			s[0] = st(vm.copyToPointerSize(val, u32(s[2]), u32(s[3])))
		}},
		{"proxy_send_local_response", p(i32, i32, i32, i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			details, ok1 := vm.readString(u32(s[1]), u32(s[2]))
			body, ok2 := vm.readString(u32(s[3]), u32(s[4]))
			hdrs, ok3 := vm.read(u32(s[5]), u32(s[6]))
			if !ok1 || !ok2 || !ok3 {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			pairs, _ := DecodePairs(hdrs)
			c := vm.ctxOrEffective()
			if c.stream != nil {
				lr := &LocalReply{StatusCode: int(u32(s[0])), Body: []byte(body), Details: details, GrpcStatus: int32(u32(s[7]))}
				for _, pr := range pairs {
					lr.Headers = append(lr.Headers, Pair{pr.Key, pr.Value})
				}
				str := c.stream
				vm.after = append(vm.after, func() { str.sendLocalReply(lr) })
			}
			vm.stopIter = true
			s[0] = 0
		}},
		{"proxy_get_shared_data", p(i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			key, ok := vm.readString(u32(s[0]), u32(s[1]))
			if !ok {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			val, cas, status := vm.host.shared.get(vm.host.cfg.VMID, key)
			if status != StatusOK {
				s[0] = uint64(status)
				return
			}
			if !vm.copyToPointerSize(val, u32(s[2]), u32(s[3])) {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			s[0] = st(vm.writeU32(u32(s[4]), cas))
		}},
		{"proxy_set_shared_data", p(i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			key, ok1 := vm.readString(u32(s[0]), u32(s[1]))
			val, ok2 := vm.read(u32(s[2]), u32(s[3]))
			if !ok1 || !ok2 {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			s[0] = uint64(vm.host.shared.set(vm.host.cfg.VMID, key, val, u32(s[4])))
		}},
		{"proxy_register_shared_queue", p(i32, i32, i32), r32, func(vm *VM, s []uint64) {
			name, ok := vm.readString(u32(s[0]), u32(s[1]))
			if !ok {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			// onQueueReady goes to the root context even when a stream registers.
			tok := vm.host.queues.register(vm.host.cfg.VMID, name, vm, vm.rootOf(vm.ctxOrEffective()).id)
			s[0] = st(vm.writeU32(u32(s[2]), tok))
		}},
		{"proxy_resolve_shared_queue", p(i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			vmID, ok1 := vm.readString(u32(s[0]), u32(s[1]))
			name, ok2 := vm.readString(u32(s[2]), u32(s[3]))
			if !ok1 || !ok2 {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			if vmID == "" {
				vmID = vm.host.cfg.VMID
			}
			tok := vm.host.queues.resolve(vmID, name)
			if tok == 0 || vm.failState != FailNone {
				s[0] = uint64(StatusNotFound)
				return
			}
			s[0] = st(vm.writeU32(u32(s[4]), tok))
		}},
		{"proxy_dequeue_shared_queue", p(i32, i32, i32), r32, func(vm *VM, s []uint64) {
			data, status := vm.host.queues.dequeue(u32(s[0]))
			if status != StatusOK {
				s[0] = uint64(status)
				return
			}
			s[0] = st(vm.copyToPointerSize(data, u32(s[1]), u32(s[2])))
		}},
		{"proxy_enqueue_shared_queue", p(i32, i32, i32), r32, func(vm *VM, s []uint64) {
			data, ok := vm.read(u32(s[1]), u32(s[2]))
			if !ok {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			s[0] = uint64(vm.host.queues.enqueue(u32(s[0]), data))
		}},
		{"proxy_get_header_map_value", p(i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			t := u32(s[0])
			if t > mapMax {
				s[0] = uint64(StatusBadArgument)
				return
			}
			key, ok := vm.readString(u32(s[1]), u32(s[2]))
			if !ok {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			c := vm.ctxOrEffective()
			m, avail := vm.constMap(c, t)
			if !avail {
				if c.stream != nil && c.stream.accessLogPhase {
					s[0] = uint64(StatusNotFound)
				} else {
					s[0] = uint64(StatusBadArgument)
				}
				return
			}
			v, found := m.Get(key)
			if !found {
				s[0] = uint64(StatusNotFound)
				return
			}
			s[0] = st(vm.copyStringToPointerSize(v, u32(s[3]), u32(s[4])))
		}},
		{"proxy_add_header_map_value", p(i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			s[0] = uint64(vm.modifyMap(u32(s[0]), u32(s[1]), u32(s[2]), u32(s[3]), u32(s[4]), true, func(m *HeaderMap, k, v string) { m.Add(k, v) }))
		}},
		{"proxy_replace_header_map_value", p(i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			s[0] = uint64(vm.modifyMap(u32(s[0]), u32(s[1]), u32(s[2]), u32(s[3]), u32(s[4]), true, func(m *HeaderMap, k, v string) { m.Set(k, v) }))
		}},
		{"proxy_remove_header_map_value", p(i32, i32, i32), r32, func(vm *VM, s []uint64) {
			s[0] = uint64(vm.modifyMap(u32(s[0]), u32(s[1]), u32(s[2]), 0, 0, false, func(m *HeaderMap, k, _ string) { m.Remove(k) }))
		}},
		{"proxy_get_header_map_pairs", p(i32, i32, i32), r32, func(vm *VM, s []uint64) {
			t := u32(s[0])
			if t > mapMax {
				s[0] = uint64(StatusBadArgument)
				return
			}
			m, _ := vm.constMap(vm.ctxOrEffective(), t)
			pairs := m.Pairs()
			if len(pairs) == 0 {
				s[0] = st(vm.copyToPointerSize(nil, u32(s[1]), u32(s[2])))
				return
			}
			size := pairsSize(pairs)
			addr, ok := vm.allocMemory(uint32(size))
			if !ok {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			buf, _ := vm.mem.Read(addr, uint32(size))
			encodePairsInto(buf, pairs)
			s[0] = st(vm.writeU32(u32(s[1]), addr) && vm.writeU32(u32(s[2]), uint32(size)))
		}},
		{"proxy_set_header_map_pairs", p(i32, i32, i32), r32, func(vm *VM, s []uint64) {
			t := u32(s[0])
			if t > mapMax {
				s[0] = uint64(StatusBadArgument)
				return
			}
			data, ok := vm.read(u32(s[1]), u32(s[2]))
			if !ok {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			c := vm.ctxOrEffective()
			m := vm.mutMap(c, t)
			if m == nil {
				s[0] = uint64(StatusBadArgument)
				return
			}
			pairs, _ := DecodePairs(data) // malformed input is an empty list, as in Envoy
			m.pairs = m.pairs[:0]
			for _, pr := range pairs {
				m.Add(pr.Key, pr.Value)
			}
			vm.headersModified(c, t)
			s[0] = 0
		}},
		{"proxy_get_header_map_size", p(i32, i32), r32, func(vm *VM, s []uint64) {
			t := u32(s[0])
			if t > mapMax {
				s[0] = uint64(StatusBadArgument)
				return
			}
			m := vm.mutMap(vm.ctxOrEffective(), t)
			if m == nil {
				s[0] = uint64(StatusBadArgument)
				return
			}
			s[0] = st(vm.writeU32(u32(s[1]), uint32(m.ByteSize())))
		}},
		{"proxy_get_buffer_status", p(i32, i32, i32), r32, func(vm *VM, s []uint64) {
			t := u32(s[0])
			if t > bufMax {
				s[0] = uint64(StatusBadArgument)
				return
			}
			b := vm.buffer(vm.ctxOrEffective(), t)
			if b == nil {
				s[0] = uint64(StatusNotFound)
				return
			}
			if !vm.writeU32(u32(s[1]), uint32(b.size())) {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			s[0] = st(vm.writeU32(u32(s[2]), 0))
		}},
		{"proxy_get_buffer_bytes", p(i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			t, start, length := u32(s[0]), u64(s[1]), u64(s[2])
			if t > bufMax {
				s[0] = uint64(StatusBadArgument)
				return
			}
			b := vm.buffer(vm.ctxOrEffective(), t)
			if b == nil {
				s[0] = uint64(StatusNotFound)
				return
			}
			size := uint64(b.size())
			if start > size {
				length = 0
			} else if start+length > size {
				length = size - start
			}
			if length == 0 {
				s[0] = st(vm.writeU32(u32(s[3]), 0) && vm.writeU32(u32(s[4]), 0))
				return
			}
			s[0] = st(vm.copyToPointerSize(b.bytes()[start:start+length], u32(s[3]), u32(s[4])))
		}},
		{"proxy_set_buffer_bytes", p(i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			t := u32(s[0])
			if t > bufMax {
				s[0] = uint64(StatusBadArgument)
				return
			}
			b := vm.buffer(vm.ctxOrEffective(), t)
			if b == nil {
				s[0] = uint64(StatusNotFound)
				return
			}
			data, ok := vm.read(u32(s[3]), u32(s[4]))
			if !ok {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			s[0] = uint64(b.copyFrom(u32(s[1]), u32(s[2]), data))
		}},
		{"proxy_http_call", p(i32, i32, i32, i32, i32, i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			s[0] = uint64(vm.httpCallABI(s))
		}},
		{"proxy_grpc_call", p(i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			s[0] = uint64(vm.grpcStart(u32(s[0]), u32(s[1]), u32(s[11])))
		}},
		{"proxy_grpc_stream", p(i32, i32, i32, i32, i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			s[0] = uint64(vm.grpcStart(u32(s[0]), u32(s[1]), u32(s[8])))
		}},
		{"proxy_grpc_cancel", p(i32), r32, func(vm *VM, s []uint64) { s[0] = uint64(grpcToken(u32(s[0]))) }},
		{"proxy_grpc_close", p(i32), r32, func(vm *VM, s []uint64) { s[0] = uint64(grpcToken(u32(s[0]))) }},
		{"proxy_grpc_send", p(i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			if _, ok := vm.read(u32(s[1]), u32(s[2])); !ok {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			tok := u32(s[0])
			if tok&3 != 2 {
				s[0] = uint64(StatusBadArgument)
				return
			}
			s[0] = uint64(StatusNotFound)
		}},
		{"proxy_define_metric", p(i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			t := u32(s[0])
			name, ok := vm.readString(u32(s[1]), u32(s[2]))
			if !ok {
				s[0] = uint64(StatusInvalidMemoryAccess)
				return
			}
			if t > uint32(MetricHistogram) {
				s[0] = uint64(StatusBadArgument)
				return
			}
			if vm.host.cfg.NoCustomMetrics {
				s[0] = uint64(StatusUnimplemented)
				return
			}
			var id uint32
			switch MetricType(t) {
			case MetricCounter:
				vm.nextCounter += 4
				id = vm.nextCounter
			case MetricGauge:
				vm.nextGauge += 4
				id = vm.nextGauge
			default:
				vm.nextHistogram += 4
				id = vm.nextHistogram
			}
			vm.host.metrics.define(MetricType(t), name)
			vm.metricNames[id] = name
			s[0] = st(vm.writeU32(u32(s[3]), id))
		}},
		{"proxy_increment_metric", p(i32, i64), r32, func(vm *VM, s []uint64) {
			s[0] = uint64(vm.incrementMetric(u32(s[0]), int64(s[1])))
		}},
		{"proxy_record_metric", p(i32, i64), r32, func(vm *VM, s []uint64) {
			s[0] = uint64(vm.recordMetric(u32(s[0]), s[1]))
		}},
		{"proxy_get_metric", p(i32, i32), r32, func(vm *VM, s []uint64) {
			v, status := vm.getMetric(u32(s[0]))
			if status != StatusOK {
				s[0] = uint64(status)
				return
			}
			s[0] = st(vm.writeU64(u32(s[1]), v))
		}},
		{"proxy_set_effective_context", p(i32), r32, func(vm *VM, s []uint64) {
			id := u32(s[0])
			if vm.contexts[id] == nil {
				s[0] = uint64(StatusBadArgument)
				return
			}
			vm.effective = id
			s[0] = 0
		}},
		{"proxy_done", nil, r32, func(vm *VM, s []uint64) {
			// Only meaningful for a root context whose on_done returned false
			// during shutdown; this host closes VMs without waiting.
			s[0] = uint64(StatusNotFound)
		}},
		{"proxy_call_foreign_function", p(i32, i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			s[0] = uint64(vm.callForeign(s))
		}},
		{"proxy_continue_stream", p(i32), r32, func(vm *VM, s []uint64) {
			s[0] = uint64(vm.continueStream(u32(s[0])))
		}},
		{"proxy_close_stream", p(i32), r32, func(vm *VM, s []uint64) {
			s[0] = uint64(vm.closeStream(u32(s[0])))
		}},
	}
}

func u64(v uint64) uint64 { return uint64(uint32(v)) }

func (vm *VM) setTickPeriod(d time.Duration) {
	vm.tickPeriod = d
	select {
	case vm.tickReset <- struct{}{}:
	default:
	}
}

func (vm *VM) incrementMetric(id uint32, offset int64) Status {
	name, ok := vm.metricNames[id]
	m := vm.host.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	switch MetricType(id & 3) {
	case MetricCounter:
		if !ok {
			return StatusNotFound
		}
		if offset <= 0 {
			return StatusBadArgument
		}
		m.counters[name] += uint64(offset)
		return StatusOK
	case MetricGauge:
		if !ok {
			return StatusNotFound
		}
		m.gauges[name] += uint64(offset) // negative offsets subtract (wrapping like Envoy's uint64 gauge)
		return StatusOK
	}
	return StatusBadArgument
}

func (vm *VM) recordMetric(id uint32, value uint64) Status {
	name, ok := vm.metricNames[id]
	if !ok {
		return StatusNotFound
	}
	m := vm.host.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	switch MetricType(id & 3) {
	case MetricCounter:
		m.counters[name] += value
	case MetricGauge:
		m.gauges[name] = value
	case MetricHistogram:
		m.histograms[name] = append(m.histograms[name], value)
	default:
		return StatusNotFound
	}
	return StatusOK
}

func (vm *VM) getMetric(id uint32) (uint64, Status) {
	name, ok := vm.metricNames[id]
	m := vm.host.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	switch MetricType(id & 3) {
	case MetricCounter:
		if !ok {
			return 0, StatusNotFound
		}
		return m.counters[name], StatusOK
	case MetricGauge:
		if !ok {
			return 0, StatusNotFound
		}
		return m.gauges[name], StatusOK
	}
	return 0, StatusBadArgument
}

// grpcStart answers proxy_grpc_call / proxy_grpc_stream: Envoy reports an
// unknown cluster as PARSE_FAILURE; this host has no gRPC client, so a known
// cluster gets UNIMPLEMENTED.
func (vm *VM) grpcStart(svcPtr, svcLen, tokenPtr uint32) Status {
	svc, ok := vm.readString(svcPtr, svcLen)
	if !ok {
		return StatusInvalidMemoryAccess
	}
	if _, known := vm.host.cfg.Clusters[svc]; !known {
		return StatusParseFailure
	}
	_ = tokenPtr
	return StatusUnimplemented
}

// grpcToken answers cancel/close for tokens this host never hands out.
func grpcToken(tok uint32) Status {
	if tok&3 == 1 || tok&3 == 2 {
		return StatusNotFound
	}
	return StatusBadArgument
}

func (vm *VM) callForeign(s []uint64) Status {
	name, ok1 := vm.readString(u32(s[0]), u32(s[1]))
	args, ok2 := vm.read(u32(s[2]), u32(s[3]))
	if !ok1 || !ok2 {
		return StatusInvalidMemoryAccess
	}
	resPtr, resSizePtr := u32(s[4]), u32(s[5])
	var result []byte
	status := StatusOK
	switch {
	case name == "clear_route_cache":
		vm.host.routeClears.Add(1)
		if st := vm.ctxOrEffective().stream; st != nil {
			st.routeClears++
		}
	case vm.host.cfg.ForeignFunctions[name] != nil:
		result, status = vm.host.cfg.ForeignFunctions[name](append([]byte(nil), args...))
	default:
		return StatusNotFound
	}
	var addr uint32
	if result != nil && resPtr != 0 {
		a, ok := vm.allocMemory(uint32(len(result)))
		if !ok {
			return StatusInvalidMemoryAccess
		}
		vm.mem.Write(a, result)
		addr = a
	}
	if resPtr != 0 && !vm.writeU32(resPtr, addr) {
		return StatusInvalidMemoryAccess
	}
	if resSizePtr != 0 && !vm.writeU32(resSizePtr, uint32(len(result))) {
		return StatusInvalidMemoryAccess
	}
	return status
}
