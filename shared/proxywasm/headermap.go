package proxywasm

import (
	"encoding/binary"
	"errors"
	"unsafe"
)

// errMalformedMap reports a header-map buffer from the host that does not follow the wire format.
var errMalformedMap = errors.New("proxy-wasm: malformed header map")

// EncodeHeaderMap serialises pairs in the ABI's wire format: u32 count, then
// (u32 key length, u32 value length) per pair, then each key and value followed by a NUL.
func EncodeHeaderMap(pairs [][2]string) []byte {
	size := 4 + 8*len(pairs)
	for _, p := range pairs {
		size += len(p[0]) + len(p[1]) + 2
	}
	buf := make([]byte, size)
	binary.LittleEndian.PutUint32(buf, uint32(len(pairs)))
	off := 4
	for _, p := range pairs {
		binary.LittleEndian.PutUint32(buf[off:], uint32(len(p[0])))
		binary.LittleEndian.PutUint32(buf[off+4:], uint32(len(p[1])))
		off += 8
	}
	for _, p := range pairs {
		off += copy(buf[off:], p[0])
		buf[off] = 0
		off++
		off += copy(buf[off:], p[1])
		buf[off] = 0
		off++
	}
	return buf
}

// DecodeHeaderMap parses the ABI's header-map wire format; it never panics on hostile input.
func DecodeHeaderMap(buf []byte) ([][2]string, error) { return decodeHeaderMap(buf, false) }

// decodeHeaderMap is DecodeHeaderMap; owned says buf is a fresh buffer from
// the host that nothing writes again, so the strings can view it instead of
// copying it (one allocation per map read instead of two).
func decodeHeaderMap(buf []byte, owned bool) ([][2]string, error) {
	if len(buf) == 0 {
		return nil, nil
	}
	if len(buf) < 4 {
		return nil, errMalformedMap
	}
	n := binary.LittleEndian.Uint32(buf)
	if uint64(n)*8 > uint64(len(buf)-4) {
		return nil, errMalformedMap
	}
	sizes := buf[4 : 4+8*int(n)]
	// One string for every key and value: at most two allocations per map,
	// not two per pair.
	rest := buf[4+8*int(n):]
	data := ownedString(rest)
	if !owned {
		data = string(rest)
	}
	pairs := make([][2]string, 0, n)
	off := uint64(0)
	for i := 0; i < int(n); i++ {
		kl := uint64(binary.LittleEndian.Uint32(sizes[8*i:]))
		vl := uint64(binary.LittleEndian.Uint32(sizes[8*i+4:]))
		if off+kl+vl+2 > uint64(len(data)) {
			return nil, errMalformedMap
		}
		k := data[off : off+kl]
		off += kl + 1
		v := data[off : off+vl]
		off += vl + 1
		pairs = append(pairs, [2]string{k, v})
	}
	return pairs, nil
}

// EncodePropertyPath joins path segments with NUL bytes, as proxy_get_property expects.
func EncodePropertyPath(path []string) []byte {
	size := 0
	for i, p := range path {
		if i > 0 {
			size++
		}
		size += len(p)
	}
	buf := make([]byte, 0, size)
	for i, p := range path {
		if i > 0 {
			buf = append(buf, 0)
		}
		buf = append(buf, p...)
	}
	return buf
}

// ownedString views b as a string without copying. Only for buffers the
// host filled for this call (takePinned's), which nothing writes again.
func ownedString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
