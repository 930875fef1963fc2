package wasmhost

import (
	"encoding/binary"
	"net"
	"strconv"
	"strings"
)

// Property serialization follows Envoy's serializeValue: strings and bytes
// raw, integers as 8 little-endian bytes, booleans as one byte, maps as
// header pairs.

func int64Bytes(v int64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, uint64(v))
	return b
}

func boolBytes(v bool) []byte {
	if v {
		return []byte{1}
	}
	return []byte{0}
}

// getProperty resolves a NUL-separated attribute path for a context.
func (vm *VM) getProperty(c *vmContext, path string) ([]byte, Status) {
	if path == "" {
		return nil, StatusSerializationFailed
	}
	segs := strings.Split(strings.TrimSuffix(path, "\x00"), "\x00")
	if v, ok := vm.host.cfg.Properties[strings.Join(segs, ".")]; ok {
		return append([]byte(nil), v...), StatusOK
	}
	cfg := vm.host.cfg
	s := c.stream
	top := segs[0]
	rest := segs[1:]
	leaf := func(b []byte) ([]byte, Status) {
		if len(rest) > 0 {
			return nil, StatusNotFound
		}
		return b, StatusOK
	}
	switch top {
	case "plugin_name":
		return leaf([]byte(cfg.PluginName))
	case "plugin_root_id":
		return leaf([]byte(cfg.RootID))
	case "plugin_vm_id":
		return leaf([]byte(cfg.VMID))
	}
	if s != nil {
		switch top {
		case "request":
			return s.requestAttr(rest)
		case "response":
			return s.responseAttr(rest)
		case "source":
			return addrAttr(cfg.SourceAddress, rest)
		case "destination":
			return addrAttr(cfg.DestinationAddress, rest)
		case "connection":
			if len(rest) == 1 {
				switch rest[0] {
				case "id":
					b := make([]byte, 8)
					binary.LittleEndian.PutUint64(b, s.info.connectionID)
					return b, StatusOK
				case "mtls":
					return boolBytes(false), StatusOK
				}
			}
			return nil, StatusNotFound
		case "xds":
			if len(rest) == 1 {
				switch rest[0] {
				case "cluster_name":
					return []byte("upstream"), StatusOK
				case "route_name":
					return []byte{}, StatusOK
				}
			}
			return nil, StatusNotFound
		}
		if v, ok := s.filterState[top]; ok {
			return leaf(append([]byte(nil), v...))
		}
	}
	return nil, StatusNotFound
}

func addrAttr(addr string, rest []string) ([]byte, Status) {
	if len(rest) != 1 {
		return nil, StatusNotFound
	}
	switch rest[0] {
	case "address":
		return []byte(addr), StatusOK
	case "port":
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, StatusNotFound
		}
		n, _ := strconv.Atoi(port)
		return int64Bytes(int64(n)), StatusOK
	}
	return nil, StatusNotFound
}

// requestAttr is Envoy's RequestWrapper: header-derived attributes exist only
// while Envoy still holds the request header map for the plugin (before the
// headers callback continues, or in the access-log phase).
func (s *Stream) requestAttr(rest []string) ([]byte, Status) {
	if len(rest) == 0 {
		return nil, StatusSerializationFailed
	}
	switch rest[0] {
	case "time":
		return leafOf(rest, int64Bytes(s.info.start.UnixNano()))
	case "protocol":
		return leafOf(rest, []byte(s.info.protocol))
	case "size":
		return leafOf(rest, int64Bytes(int64(s.info.bytesRecv)))
	}
	h := s.reqHeaders
	if s.accessLogPhase {
		h = s.alReqHeaders
	}
	if h == nil {
		return nil, StatusNotFound
	}
	get := func(k string) ([]byte, Status) {
		v, ok := h.Get(k)
		if !ok {
			return nil, StatusNotFound
		}
		return leafOf(rest, []byte(v))
	}
	switch rest[0] {
	case "path":
		return get(":path")
	case "url_path":
		v, ok := h.Get(":path")
		if !ok {
			return nil, StatusNotFound
		}
		if i := strings.IndexByte(v, '?'); i >= 0 {
			v = v[:i]
		}
		return leafOf(rest, []byte(v))
	case "query":
		v, ok := h.Get(":path")
		if !ok {
			return nil, StatusNotFound
		}
		q := ""
		if i := strings.IndexByte(v, '?'); i >= 0 {
			q = v[i+1:]
		}
		return leafOf(rest, []byte(q))
	case "host":
		return get(":authority")
	case "scheme":
		return get(":scheme")
	case "method":
		return get(":method")
	case "referer":
		return get("referer")
	case "useragent":
		return get("user-agent")
	case "id":
		return get("x-request-id")
	case "total_size":
		return leafOf(rest, int64Bytes(int64(h.ByteSize())+int64(s.info.bytesRecv)))
	case "headers":
		return mapAttr(h, rest[1:])
	}
	return nil, StatusNotFound
}

func (s *Stream) responseAttr(rest []string) ([]byte, Status) {
	if len(rest) == 0 {
		return nil, StatusSerializationFailed
	}
	h := s.respHeaders
	t := s.respTrailers
	if s.accessLogPhase {
		h, t = s.alRespHeaders, s.alRespTr
	}
	switch rest[0] {
	case "code":
		if s.info.responseCode == 0 {
			return nil, StatusNotFound
		}
		return leafOf(rest, int64Bytes(int64(s.info.responseCode)))
	case "headers":
		if h == nil {
			return nil, StatusNotFound
		}
		return mapAttr(h, rest[1:])
	case "trailers":
		if t == nil {
			return nil, StatusNotFound
		}
		return mapAttr(t, rest[1:])
	}
	return nil, StatusNotFound
}

func leafOf(rest []string, b []byte) ([]byte, Status) {
	if len(rest) > 1 {
		return nil, StatusNotFound
	}
	return b, StatusOK
}

// mapAttr serializes a header map, or looks one header up (values joined
// by commas, as Envoy's CEL header wrapper does).
func mapAttr(h *HeaderMap, rest []string) ([]byte, Status) {
	if len(rest) == 0 {
		return EncodePairs(h.Pairs()), StatusOK
	}
	if len(rest) > 1 {
		return nil, StatusNotFound
	}
	vals := h.Values(rest[0])
	if len(vals) == 0 {
		return nil, StatusNotFound
	}
	return []byte(strings.Join(vals, ",")), StatusOK
}

// setProperty is Envoy's Context::setProperty: a per-stream filter-state
// value under the raw path; root contexts have no stream info (NOT_FOUND).
func (vm *VM) setProperty(c *vmContext, path string, value []byte) Status {
	s := c.stream
	if s == nil {
		return StatusNotFound
	}
	if s.filterState == nil {
		s.filterState = map[string][]byte{}
	}
	s.filterState[path] = append([]byte(nil), value...)
	return StatusOK
}
