package wasmhost

// What a plugin can reach from a context, following Envoy's wasm Context
// (getMap/getConstMap/getBuffer) and proxy-wasm-cpp-host's exports.

// constMap is Envoy's getConstMap: the map a read sees, and whether it is
// available at all (an unavailable map answers BAD_ARGUMENT to a get).
func (vm *VM) constMap(c *vmContext, t uint32) (*HeaderMap, bool) {
	s := c.stream
	switch t {
	case mapRequestHeaders, mapRequestTrailers, mapResponseHeaders, mapResponseTrailers:
		if s == nil {
			return nil, false
		}
		var m *HeaderMap
		switch t {
		case mapRequestHeaders:
			m = s.reqHeaders
			if s.accessLogPhase {
				m = s.alReqHeaders
			}
		case mapRequestTrailers:
			if !s.accessLogPhase {
				m = s.reqTrailers
			}
		case mapResponseHeaders:
			m = s.respHeaders
			if s.accessLogPhase {
				m = s.alRespHeaders
			}
		case mapResponseTrailers:
			m = s.respTrailers
			if s.accessLogPhase {
				m = s.alRespTr
			}
		}
		return m, m != nil
	case mapHTTPCallHeaders, mapHTTPCallTrailers:
		r := vm.rootOf(c).callResponse
		if r == nil {
			return nil, false
		}
		if t == mapHTTPCallHeaders {
			return r.headers, true
		}
		return r.trailers, r.trailers != nil
	}
	return nil, false // gRPC metadata: no gRPC in this host
}

// mutMap is Envoy's getMap (used by every write and by get_header_map_size):
// only the stream's own maps, and trailers are created on demand while the
// last body chunk is being processed (addDecodedTrailers).
func (vm *VM) mutMap(c *vmContext, t uint32) *HeaderMap {
	s := c.stream
	if s == nil {
		return nil
	}
	switch t {
	case mapRequestHeaders:
		return s.reqHeaders
	case mapRequestTrailers:
		if s.reqTrailers == nil && s.reqChunk != nil && s.endOfStream {
			s.reqTrailers = NewHeaderMap()
			s.addedReqTrailers = s.reqTrailers
		}
		return s.reqTrailers
	case mapResponseHeaders:
		return s.respHeaders
	case mapResponseTrailers:
		if s.respTrailers == nil && s.respChunk != nil && s.endOfStream {
			s.respTrailers = NewHeaderMap()
			s.addedRespTrailers = s.respTrailers
		}
		return s.respTrailers
	}
	return nil
}

// modifyMap implements add/replace/remove_header_map_value.
func (vm *VM) modifyMap(t, kp, kn, vp, vn uint32, withValue bool, op func(m *HeaderMap, k, v string)) Status {
	if t > mapMax {
		return StatusBadArgument
	}
	key, ok := vm.readString(kp, kn)
	if !ok {
		return StatusInvalidMemoryAccess
	}
	var val string
	if withValue {
		if val, ok = vm.readString(vp, vn); !ok {
			return StatusInvalidMemoryAccess
		}
	}
	c := vm.ctxOrEffective()
	m := vm.mutMap(c, t)
	if m == nil {
		return StatusBadArgument
	}
	op(m, key, val)
	vm.headersModified(c, t)
	return StatusOK
}

// headersModified: for ABI versions up to 0.2.1 Envoy clears the route
// cache whenever the plugin changes request headers.
func (vm *VM) headersModified(c *vmContext, t uint32) {
	if t == mapRequestHeaders && c.stream != nil {
		c.stream.routeClears++
	}
}

// buffer is a proxy-wasm buffer: either a mutable body (Envoy Buffer::
// Instance) or a read-only string (configuration, http call body).
type buffer struct {
	data    *[]byte
	ro      []byte
	mutable bool
}

func (b *buffer) size() int {
	if b.mutable {
		if b.data == nil {
			return 0
		}
		return len(*b.data)
	}
	return len(b.ro)
}

func (b *buffer) bytes() []byte {
	if b.mutable {
		if b.data == nil {
			return nil
		}
		return *b.data
	}
	return b.ro
}

// copyFrom is Envoy's Buffer::copyFrom: start 0 drains `length` bytes then
// prepends (so 0/0 prepends and 0/len replaces everything), start at or
// past the end appends, anything else is BAD_ARGUMENT, and read-only
// buffers cannot be set.
func (b *buffer) copyFrom(start, length uint32, data []byte) Status {
	if !b.mutable || b.data == nil {
		return StatusBadArgument
	}
	cur := *b.data
	switch {
	case start == 0:
		if int(length) > len(cur) {
			length = uint32(len(cur))
		}
		out := make([]byte, 0, len(data)+len(cur)-int(length))
		out = append(out, data...)
		out = append(out, cur[length:]...)
		*b.data = out
	case int(start) >= len(cur):
		*b.data = append(cur, data...)
	default:
		return StatusBadArgument
	}
	return StatusOK
}

// buffer is Envoy's getBuffer for a context; nil means NOT_FOUND.
func (vm *VM) buffer(c *vmContext, t uint32) *buffer {
	switch t {
	case bufVMConfig:
		return &buffer{ro: vm.host.cfg.VMConfig}
	case bufPluginConfig:
		if c.pluginConfigVisible {
			return &buffer{ro: vm.host.cfg.PluginConfig}
		}
		return nil
	case bufRequestBody, bufResponseBody:
		if c.stream == nil {
			return &buffer{mutable: true}
		}
		return c.stream.buffer(t)
	case bufHTTPCallBody:
		r := vm.rootOf(c).callResponse
		if r == nil {
			return nil
		}
		return &buffer{ro: r.body}
	}
	return &buffer{mutable: true} // network, gRPC and foreign-call buffers: empty here
}

func (s *Stream) buffer(t uint32) *buffer {
	if t == bufRequestBody {
		if s.bufferingReq {
			if s.decodingBuf == nil {
				s.decodingBuf = &[]byte{}
			}
			return &buffer{data: s.decodingBuf, mutable: true}
		}
		return &buffer{data: s.reqChunk, mutable: true}
	}
	if s.bufferingRs {
		if s.encodingBuf == nil {
			s.encodingBuf = &[]byte{}
		}
		return &buffer{data: s.encodingBuf, mutable: true}
	}
	return &buffer{data: s.respChunk, mutable: true}
}

// continueStream is Envoy's Context::continueStream, deferred until the
// current callback returns. It also drops the request maps and body from
// the plugin's reach, as Envoy does (for both directions).
func (vm *VM) continueStream(t uint32) Status {
	if t > streamMax {
		return StatusBadArgument
	}
	c := vm.ctxOrEffective()
	s := c.stream
	switch t {
	case streamRequest:
		if s != nil {
			vm.after = append(vm.after, func() { s.push(EventContinueRequest) })
		}
	case streamResponse:
		if s != nil {
			vm.after = append(vm.after, func() { s.push(EventContinueResponse) })
		}
	case streamDownstream:
		return StatusOK
	case streamUpstream:
		return StatusUnimplemented
	}
	if s != nil {
		s.reqHeaders, s.reqChunk, s.reqTrailers = nil, nil, nil
	}
	return StatusOK
}

// closeStream is Envoy's Context::closeStream: a deferred stream reset.
func (vm *VM) closeStream(t uint32) Status {
	if t > streamMax {
		return StatusBadArgument
	}
	s := vm.ctxOrEffective().stream
	if (t == streamRequest || t == streamResponse) && s != nil {
		if s.resetDetails == "" {
			s.resetDetails = "wasm_close_stream"
		}
		vm.after = append(vm.after, func() { s.push(EventReset) })
	}
	return StatusOK
}
