package wasmhost

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// Pair is one entry of a header map: Envoy keeps headers as an ordered list
// of key/value pairs, repeated keys included.
type Pair struct {
	Key   string
	Value string
}

// HeaderMap is an ordered multimap with Envoy's HeaderMapImpl semantics:
// keys are lower-cased, pseudo-headers (":path") stay in front of regular
// headers, replace removes every entry of a key and appends one at the end,
// and in request header maps "host" is an alias of ":authority".
type HeaderMap struct {
	pairs   []Pair
	request bool
}

// NewHeaderMap builds a header map from pairs, applying Envoy's key rules.
func NewHeaderMap(pairs ...Pair) *HeaderMap {
	m := &HeaderMap{}
	for _, p := range pairs {
		m.Add(p.Key, p.Value)
	}
	return m
}

// newRequestHeaderMap builds a request header map ("host" aliases ":authority").
func newRequestHeaderMap(pairs ...Pair) *HeaderMap {
	m := &HeaderMap{request: true}
	for _, p := range pairs {
		m.Add(p.Key, p.Value)
	}
	return m
}

func (m *HeaderMap) key(k string) string {
	k = strings.ToLower(k)
	if m.request && k == "host" {
		return ":authority"
	}
	return k
}

// Len is the number of entries; Envoy passes it as num_headers.
func (m *HeaderMap) Len() int {
	if m == nil {
		return 0
	}
	return len(m.pairs)
}

// ByteSize is the sum of key and value lengths, which Envoy answers to
// proxy_get_header_map_size.
func (m *HeaderMap) ByteSize() int {
	if m == nil {
		return 0
	}
	n := 0
	for _, p := range m.pairs {
		n += len(p.Key) + len(p.Value)
	}
	return n
}

// Pairs returns a copy of the entries in order.
func (m *HeaderMap) Pairs() []Pair {
	if m == nil {
		return nil
	}
	return append([]Pair(nil), m.pairs...)
}

// Get returns the first value of a key, as proxy_get_header_map_value does.
func (m *HeaderMap) Get(k string) (string, bool) {
	if m == nil {
		return "", false
	}
	k = m.key(k)
	for _, p := range m.pairs {
		if p.Key == k {
			return p.Value, true
		}
	}
	return "", false
}

// Values returns every value of a key in order.
func (m *HeaderMap) Values(k string) []string {
	if m == nil {
		return nil
	}
	k = m.key(k)
	var out []string
	for _, p := range m.pairs {
		if p.Key == k {
			out = append(out, p.Value)
		}
	}
	return out
}

// Add appends an entry; pseudo-headers go after the last pseudo-header.
func (m *HeaderMap) Add(k, v string) {
	k = m.key(k)
	if strings.HasPrefix(k, ":") {
		i := 0
		for i < len(m.pairs) && strings.HasPrefix(m.pairs[i].Key, ":") {
			i++
		}
		m.pairs = append(m.pairs, Pair{})
		copy(m.pairs[i+1:], m.pairs[i:])
		m.pairs[i] = Pair{k, v}
		return
	}
	m.pairs = append(m.pairs, Pair{k, v})
}

// Set removes every entry of a key and adds one, like Envoy's setCopy.
func (m *HeaderMap) Set(k, v string) {
	m.Remove(k)
	m.Add(k, v)
}

// Remove deletes every entry of a key; removing a missing key is not an error.
func (m *HeaderMap) Remove(k string) {
	k = m.key(k)
	out := m.pairs[:0]
	for _, p := range m.pairs {
		if p.Key != k {
			out = append(out, p)
		}
	}
	m.pairs = out
}

// Clone returns an independent copy.
func (m *HeaderMap) Clone() *HeaderMap {
	if m == nil {
		return nil
	}
	return &HeaderMap{pairs: m.Pairs(), request: m.request}
}

// HTTPHeader converts the map to an http.Header, leaving out pseudo-headers.
func (m *HeaderMap) HTTPHeader() http.Header {
	h := http.Header{}
	if m == nil {
		return h
	}
	for _, p := range m.pairs {
		if strings.HasPrefix(p.Key, ":") {
			continue
		}
		h.Add(p.Key, p.Value)
	}
	return h
}

// String renders the map as "k=v;" pairs, handy in test failure messages.
func (m *HeaderMap) String() string {
	var sb strings.Builder
	for _, p := range m.Pairs() {
		sb.WriteString(p.Key + "=" + p.Value + ";")
	}
	return sb.String()
}

// fromHTTPHeader appends an http.Header in sorted key order (an http.Header
// has no order of its own; sorting keeps tests deterministic).
func (m *HeaderMap) addHTTPHeader(h http.Header) {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			m.Add(k, v)
		}
	}
}

// Limits on serialized pairs enforced by proxy-wasm-cpp-host (limits.h).
const (
	maxPairsBytes = 1 << 20
	maxPairsCount = 1024
)

// errPairs reports a malformed serialized header map.
var errPairs = errors.New("malformed header pairs")

// EncodePairs serializes pairs in the proxy-wasm wire format: a u32 count,
// then u32 key and value lengths per pair, then each key and value followed
// by a NUL byte, all little-endian.
func EncodePairs(pairs []Pair) []byte {
	size := 4
	for _, p := range pairs {
		size += 8 + len(p.Key) + len(p.Value) + 2
	}
	b := make([]byte, size)
	encodePairsInto(b, pairs)
	return b
}

func pairsSize(pairs []Pair) int {
	size := 4
	for _, p := range pairs {
		size += 8 + len(p.Key) + len(p.Value) + 2
	}
	return size
}

func encodePairsInto(b []byte, pairs []Pair) {
	binary.LittleEndian.PutUint32(b, uint32(len(pairs)))
	pos := 4 + 8*len(pairs)
	for i, p := range pairs {
		binary.LittleEndian.PutUint32(b[4+8*i:], uint32(len(p.Key)))
		binary.LittleEndian.PutUint32(b[8+8*i:], uint32(len(p.Value)))
		pos += copy(b[pos:], p.Key)
		b[pos] = 0
		pos++
		pos += copy(b[pos:], p.Value)
		b[pos] = 0
		pos++
	}
}

// DecodePairs parses the proxy-wasm pairs format with the checks of
// proxy-wasm-cpp-host: size and count limits, NUL terminators and no
// trailing bytes. The host treats any error as an empty list, like Envoy.
func DecodePairs(b []byte) ([]Pair, error) {
	if len(b) > maxPairsBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", errPairs, len(b), maxPairsBytes)
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: short count", errPairs)
	}
	n := binary.LittleEndian.Uint32(b)
	if n > maxPairsCount {
		return nil, fmt.Errorf("%w: %d pairs exceeds %d", errPairs, n, maxPairsCount)
	}
	pos := uint64(4) + uint64(n)*8
	if pos > uint64(len(b)) {
		return nil, fmt.Errorf("%w: short sizes", errPairs)
	}
	out := make([]Pair, 0, n)
	end := uint64(len(b))
	for i := uint64(0); i < uint64(n); i++ {
		kl := uint64(binary.LittleEndian.Uint32(b[4+8*i:]))
		vl := uint64(binary.LittleEndian.Uint32(b[8+8*i:]))
		if pos+kl+1 > end || b[pos+kl] != 0 {
			return nil, fmt.Errorf("%w: bad key %d", errPairs, i)
		}
		k := string(b[pos : pos+kl])
		pos += kl + 1
		if pos+vl+1 > end || b[pos+vl] != 0 {
			return nil, fmt.Errorf("%w: bad value %d", errPairs, i)
		}
		v := string(b[pos : pos+vl])
		pos += vl + 1
		out = append(out, Pair{k, v})
	}
	if pos != end {
		return nil, fmt.Errorf("%w: %d trailing bytes", errPairs, end-pos)
	}
	return out, nil
}
