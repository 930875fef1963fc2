//go:build wasip1

// Command rawplugin is a proxy-wasm ABI v0.2.1 test module written directly
// against the raw imports. Every callback logs its arguments at INFO, and the
// behaviour of each HTTP stream is driven by request headers named x-t-*, so
// one module can exercise the host (and real Envoy) from table-driven tests.
package main

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"
)

func main() {}

// Status codes and enums of the ABI.
const (
	statusOK = 0

	mapRequestHeaders   = 0
	mapRequestTrailers  = 1
	mapResponseHeaders  = 2
	mapCallRespHeaders  = 6
	mapCallRespTrailers = 7

	bufRequestBody  = 0
	bufResponseBody = 1
	bufCallResp     = 4
	bufVMConfig     = 6
	bufPluginConfig = 7

	actionContinue = 0
	actionPause    = 1
)

// allocs keeps every buffer handed to the host alive until the guest has
// copied it out.
var (
	allocs      = map[uint32][]byte{}
	zeroAllocs  int
	totalAllocs int
	allocTrap   bool
	allocCall   bool
	spins       uint64
)

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 {
	totalAllocs++
	if size == 0 {
		zeroAllocs++
	}
	if allocTrap {
		allocTrap = false
		panic("trap inside allocator")
	}
	if allocCall {
		allocCall = false
		var lvl uint32
		proxyGetLogLevel(unsafe.Pointer(&lvl))
	}
	b := make([]byte, size+1)
	p := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	allocs[p] = b
	return p
}

// take copies a host-allocated region out of guest memory and releases it.
func take(p, n uint32) []byte {
	if p == 0 {
		return nil
	}
	b, ok := allocs[p]
	delete(allocs, p)
	if !ok {
		return []byte("<foreign-pointer>")
	}
	out := make([]byte, n)
	copy(out, b[:n])
	return out
}

func sp(s string) unsafe.Pointer {
	if s == "" {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

func bp(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}

func logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	proxyLog(2, sp(msg), uint32(len(msg)))
}

func b2i(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// Pairs (de)serialisation of the ABI.
type pair struct{ k, v string }

func decodePairs(b []byte) []pair {
	if len(b) < 4 {
		return nil
	}
	n := int(binary.LittleEndian.Uint32(b))
	pos := 4 + 8*n
	out := make([]pair, 0, n)
	for i := 0; i < n; i++ {
		kl := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		vl := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		k := string(b[pos : pos+kl])
		pos += kl + 1
		v := string(b[pos : pos+vl])
		pos += vl + 1
		out = append(out, pair{k, v})
	}
	return out
}

func encodePairs(ps []pair) []byte {
	size := 4
	for _, p := range ps {
		size += 8 + len(p.k) + len(p.v) + 2
	}
	b := make([]byte, size)
	binary.LittleEndian.PutUint32(b, uint32(len(ps)))
	pos := 4 + 8*len(ps)
	for i, p := range ps {
		binary.LittleEndian.PutUint32(b[4+8*i:], uint32(len(p.k)))
		binary.LittleEndian.PutUint32(b[8+8*i:], uint32(len(p.v)))
		pos += copy(b[pos:], p.k) + 1
		pos += copy(b[pos:], p.v) + 1
	}
	return b
}

func getPairs(typ uint32) (uint32, []pair) {
	var p, n uint32
	st := proxyGetHeaderMapPairs(typ, unsafe.Pointer(&p), unsafe.Pointer(&n))
	return st, decodePairs(take(p, n))
}

func getHeader(typ uint32, key string) (uint32, string, uint32) {
	var p, n uint32
	st := proxyGetHeaderMapValue(typ, sp(key), uint32(len(key)), unsafe.Pointer(&p), unsafe.Pointer(&n))
	return st, string(take(p, n)), p
}

func getBuffer(typ, start, max uint32) (uint32, []byte) {
	var p, n uint32
	st := proxyGetBufferBytes(typ, start, max, unsafe.Pointer(&p), unsafe.Pointer(&n))
	return st, take(p, n)
}

func bufferSize(typ uint32) (uint32, uint32) {
	var size, flags uint32
	st := proxyGetBufferStatus(typ, unsafe.Pointer(&size), unsafe.Pointer(&flags))
	return st, size
}

func splitKV(s, sep string) (string, string) {
	k, v, _ := strings.Cut(s, sep)
	return k, v
}

// stream is the per-HTTP-context state: the x-t-* commands of its request.
type stream struct {
	id  uint32
	cmd map[string]string
}

var (
	rootID     uint32
	rootConfig string
	streams    = map[uint32]*stream{}
	callouts   = map[uint32]uint32{} // token -> stream context id
	queueID    uint32
)

func (s *stream) has(k string) bool { _, ok := s.cmd[k]; return ok }

//go:wasmexport proxy_on_context_create
func onContextCreate(ctx, parent uint32) {
	logf("on_context_create ctx=%d parent=%d", ctx, parent)
	if parent == 0 {
		rootID = ctx
		return
	}
	streams[ctx] = &stream{id: ctx, cmd: map[string]string{}}
}

//go:wasmexport proxy_on_vm_start
func onVMStart(root, size uint32) uint32 {
	_, cfg := getBuffer(bufVMConfig, 0, size)
	logf("on_vm_start root=%d size=%d config=%q", root, size, cfg)
	return b2i(!strings.Contains(string(cfg), "fail-start"))
}

//go:wasmexport proxy_on_configure
func onConfigure(root, size uint32) uint32 {
	st, cfg := getBuffer(bufPluginConfig, 0, size)
	rootConfig = string(cfg)
	logf("on_configure root=%d size=%d st=%d config=%q", root, size, st, cfg)
	var lvl uint32
	proxyGetLogLevel(unsafe.Pointer(&lvl))
	var now uint64
	proxyGetCurrentTimeNanoseconds(unsafe.Pointer(&now))
	logf("log_level=%d time_ok=%t", lvl, now > 0)
	for _, tok := range strings.Fields(rootConfig) {
		k, v := splitKV(tok, "=")
		switch k {
		case "fail-configure":
			return 0
		case "tick":
			ms, _ := strconv.Atoi(v)
			logf("set_tick st=%d", proxySetTickPeriodMilliseconds(uint32(ms)))
		case "queue":
			st := proxyRegisterSharedQueue(sp(v), uint32(len(v)), unsafe.Pointer(&queueID))
			logf("register_queue %s st=%d id=%d", v, st, queueID)
		case "plugin-config-late":
		}
	}
	return 1
}

//go:wasmexport proxy_on_tick
func onTick(root uint32) {
	logf("on_tick root=%d", root)
}

//go:wasmexport proxy_on_queue_ready
func onQueueReady(root, id uint32) {
	logf("on_queue_ready root=%d id=%d", root, id)
	for {
		var p, n uint32
		st := proxyDequeueSharedQueue(id, unsafe.Pointer(&p), unsafe.Pointer(&n))
		if st != statusOK {
			logf("dequeue st=%d", st)
			return
		}
		logf("dequeue data=%q", take(p, n))
	}
}

func (s *stream) trap(where string) {
	if s.cmd["x-t-trap"] == where {
		panic("test trap in " + where)
	}
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(ctx, n, eos uint32) uint32 {
	logf("on_request_headers ctx=%d n=%d eos=%d", ctx, n, eos)
	s := streams[ctx]
	if s == nil {
		logf("unknown context %d", ctx)
		return actionContinue
	}
	st, pairs := getPairs(mapRequestHeaders)
	if st != statusOK {
		logf("get_pairs st=%d", st)
	}
	for _, p := range pairs {
		if strings.HasPrefix(p.k, "x-t-") {
			s.cmd[p.k] = p.v
		}
	}
	if s.has("x-t-log-headers") {
		var sb strings.Builder
		for _, p := range pairs {
			sb.WriteString(p.k + "=" + p.v + ";")
		}
		var size uint32
		sst := proxyGetHeaderMapSize(mapRequestHeaders, unsafe.Pointer(&size))
		logf("headers %s size_st=%d size=%d", sb.String(), sst, size)
	}
	s.trap("headers")
	if s.has("x-t-spin") {
		for {
			spins++
		}
	}
	if s.has("x-t-alloc-trap") {
		allocTrap = true
	}
	if s.has("x-t-alloc-hostcall") {
		allocCall = true
	}
	if v, ok := s.cmd["x-t-get"]; ok {
		for _, name := range strings.Split(v, ",") {
			st, val, p := getHeader(mapRequestHeaders, name)
			logf("get %s st=%d val=%q ptr0=%t", name, st, val, p == 0)
		}
	}
	if v, ok := s.cmd["x-t-set"]; ok {
		k, val := splitKV(v, "=")
		logf("replace st=%d", proxyReplaceHeaderMapValue(mapRequestHeaders, sp(k), uint32(len(k)), sp(val), uint32(len(val))))
	}
	if v, ok := s.cmd["x-t-add"]; ok {
		k, val := splitKV(v, "=")
		logf("add st=%d", proxyAddHeaderMapValue(mapRequestHeaders, sp(k), uint32(len(k)), sp(val), uint32(len(val))))
	}
	if v, ok := s.cmd["x-t-remove"]; ok {
		logf("remove st=%d", proxyRemoveHeaderMapValue(mapRequestHeaders, sp(v), uint32(len(v))))
	}
	if v, ok := s.cmd["x-t-set-pairs"]; ok {
		var ps []pair
		for _, kv := range strings.Split(v, ",") {
			k, val := splitKV(kv, "=")
			ps = append(ps, pair{k, val})
		}
		enc := encodePairs(ps)
		logf("set_pairs st=%d", proxySetHeaderMapPairs(mapRequestHeaders, bp(enc), uint32(len(enc))))
	}
	if s.has("x-t-log-after") {
		_, after := getPairs(mapRequestHeaders)
		var sb strings.Builder
		for _, p := range after {
			sb.WriteString(p.k + "=" + p.v + ";")
		}
		logf("after %s", sb.String())
	}
	if s.has("x-t-wasi") {
		wasiProbe()
	}
	if v, ok := s.cmd["x-t-env"]; ok {
		val, found := os.LookupEnv(v)
		logf("env %s=%q found=%v", v, val, found)
	}
	if s.has("x-t-allocs") {
		logf("allocs zero=%d", zeroAllocs)
	}
	if v, ok := s.cmd["x-t-shared-get"]; ok {
		var p, n, cas uint32
		st := proxyGetSharedData(sp(v), uint32(len(v)), unsafe.Pointer(&p), unsafe.Pointer(&n), unsafe.Pointer(&cas))
		logf("shared-get %s st=%d val=%q cas=%d", v, st, take(p, n), cas)
	}
	if v, ok := s.cmd["x-t-shared-set"]; ok {
		kv, casStr := splitKV(v, "@")
		k, val := splitKV(kv, "=")
		cas, _ := strconv.Atoi(casStr)
		logf("shared-set %s st=%d", k, proxySetSharedData(sp(k), uint32(len(k)), sp(val), uint32(len(val)), uint32(cas)))
	}
	if v, ok := s.cmd["x-t-setprop"]; ok {
		k, val := splitKV(v, "=")
		raw := strings.ReplaceAll(k, ".", "\x00")
		logf("setprop %s st=%d", k, proxySetProperty(sp(raw), uint32(len(raw)), sp(val), uint32(len(val))))
	}
	if v, ok := s.cmd["x-t-prop"]; ok {
		for _, path := range strings.Split(v, ",") {
			raw := strings.ReplaceAll(path, ".", "\x00")
			var p, n uint32
			st := proxyGetProperty(sp(raw), uint32(len(raw)), unsafe.Pointer(&p), unsafe.Pointer(&n))
			logf("prop %s st=%d val=%s", path, st, hex.EncodeToString(take(p, n)))
		}
	}
	if v, ok := s.cmd["x-t-foreign"]; ok {
		var p, n uint32
		st := proxyCallForeignFunction(sp(v), uint32(len(v)), nil, 0, unsafe.Pointer(&p), unsafe.Pointer(&n))
		logf("foreign %s st=%d len=%d", v, st, n)
		take(p, n)
	}
	if v, ok := s.cmd["x-t-metric"]; ok {
		s.metric(v)
	}
	if v, ok := s.cmd["x-t-enqueue"]; ok {
		name, data := splitKV(v, "=")
		var id uint32
		st := proxyResolveSharedQueue(nil, 0, sp(name), uint32(len(name)), unsafe.Pointer(&id))
		logf("resolve_queue %s st=%d", name, st)
		if st == statusOK {
			logf("enqueue st=%d", proxyEnqueueSharedQueue(id, sp(data), uint32(len(data))))
		}
	}
	if v, ok := s.cmd["x-t-dequeue"]; ok {
		var id uint32
		st := proxyResolveSharedQueue(nil, 0, sp(v), uint32(len(v)), unsafe.Pointer(&id))
		var p, n uint32
		st2 := proxyDequeueSharedQueue(id, unsafe.Pointer(&p), unsafe.Pointer(&n))
		logf("dequeue-direct st=%d st2=%d data=%q", st, st2, take(p, n))
	}
	if v, ok := s.cmd["x-t-call"]; ok {
		return s.httpCall(v)
	}
	if s.cmd["x-t-close"] == "headers" {
		logf("close st=%d", proxyCloseStream(0))
	}
	if v, ok := s.cmd["x-t-local"]; ok && s.cmd["x-t-local-at"] == "" {
		return s.localReply(v)
	}
	if s.cmd["x-t-rh"] == "pause" {
		return actionPause
	}
	return actionContinue
}

func (s *stream) metric(v string) {
	parts := strings.Split(v, ":")
	if len(parts) < 4 {
		return
	}
	typ := map[string]uint32{"counter": 0, "gauge": 1, "histogram": 2}[parts[0]]
	var id uint32
	st := proxyDefineMetric(typ, sp(parts[1]), uint32(len(parts[1])), unsafe.Pointer(&id))
	val, _ := strconv.ParseInt(parts[3], 10, 64)
	var opst uint32
	switch parts[2] {
	case "inc":
		opst = proxyIncrementMetric(id, val)
	case "rec":
		opst = proxyRecordMetric(id, uint64(val))
	}
	var got uint64
	gst := proxyGetMetric(id, unsafe.Pointer(&got))
	logf("metric %s id=%d def=%d op=%d get=%d val=%d", parts[1], id, st, opst, gst, got)
}

func (s *stream) localReply(v string) uint32 {
	code, _ := strconv.Atoi(v)
	body := "local:" + v
	details := "test details"
	hps := []pair{{"x-local", "1"}, {"Content-Type", "text/plain"}}
	if s.has("x-t-local-noct") {
		hps = hps[:1]
	}
	hdrs := encodePairs(hps)
	st := proxySendLocalResponse(uint32(code), sp(details), uint32(len(details)), sp(body), uint32(len(body)), bp(hdrs), uint32(len(hdrs)), -1)
	logf("local_reply st=%d", st)
	if s.cmd["x-t-local-ret"] == "continue" {
		return actionContinue
	}
	return actionPause
}

func (s *stream) httpCall(v string) uint32 {
	parts := strings.Split(v, ";")
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	cluster, path := parts[0], parts[1]
	timeout, _ := strconv.Atoi(parts[2])
	hs := []pair{{":method", "POST"}, {":path", path}, {":authority", "callout.test"}, {"x-from", "rawplugin"}}
	if s.has("x-t-call-no-path") {
		hs = hs[:1]
	}
	enc := encodePairs(hs)
	body := "callout-body"
	var token uint32
	st := proxyHTTPCall(sp(cluster), uint32(len(cluster)), bp(enc), uint32(len(enc)), sp(body), uint32(len(body)), nil, 0, uint32(timeout), unsafe.Pointer(&token))
	logf("http_call st=%d token=%d", st, token)
	if st != statusOK {
		return actionContinue
	}
	callouts[token] = s.id
	return actionPause
}

//go:wasmexport proxy_on_http_call_response
func onHTTPCallResponse(root, token, nh, bodySize, nt uint32) {
	logf("on_http_call_response root=%d token=%d nh=%d body=%d nt=%d", root, token, nh, bodySize, nt)
	_, status, _ := getHeader(mapCallRespHeaders, ":status")
	_, pairs := getPairs(mapCallRespHeaders)
	var sb strings.Builder
	for _, p := range pairs {
		sb.WriteString(p.k + "=" + p.v + ";")
	}
	_, body := getBuffer(bufCallResp, 0, bodySize)
	var code, p, n uint32
	gst := proxyGetStatus(unsafe.Pointer(&code), unsafe.Pointer(&p), unsafe.Pointer(&n))
	logf("callout status=%q headers=%s body=%q get_status=%d code=%d msg=%q", status, sb.String(), body, gst, code, take(p, n))
	id, ok := callouts[token]
	if !ok {
		return
	}
	delete(callouts, token)
	est := proxySetEffectiveContext(id)
	if status == "" {
		status = "none"
	}
	k := "x-callout-status"
	ast := proxyAddHeaderMapValue(mapRequestHeaders, sp(k), uint32(len(k)), sp(status), uint32(len(status)))
	logf("effective st=%d add st=%d continue st=%d", est, ast, proxyContinueStream(0))
}

func (s *stream) rewrite(buf uint32, spec string, size uint32) {
	op, data := splitKV(spec, ":")
	var st uint32
	switch op {
	case "prepend":
		st = proxySetBufferBytes(buf, 0, 0, sp(data), uint32(len(data)))
	case "append":
		st = proxySetBufferBytes(buf, size, 0, sp(data), uint32(len(data)))
	case "replace":
		st = proxySetBufferBytes(buf, 0, size, sp(data), uint32(len(data)))
	case "middle":
		st = proxySetBufferBytes(buf, 1, 1, sp(data), uint32(len(data)))
	}
	_, after := bufferSize(buf)
	logf("rewrite %s st=%d size=%d", op, st, after)
}

func (s *stream) body(buf, size, eos uint32, action, rewrite string) uint32 {
	bst, bsize := bufferSize(buf)
	gst, data := getBuffer(buf, 0, size)
	logf("body st=%d size=%d get=%d data=%q", bst, bsize, gst, data)
	if s.cmd["x-t-body-read-req"] != "" {
		st, val, _ := getHeader(mapRequestHeaders, ":path")
		logf("body read-req st=%d val=%q", st, val)
	}
	if v, ok := s.cmd["x-t-local"]; ok && s.cmd["x-t-local-at"] == "body" && buf == bufRequestBody && eos == 1 {
		return s.localReply(v)
	}
	if v, ok := s.cmd["x-t-local"]; ok && s.cmd["x-t-local-at"] == "resp-body" && buf == bufResponseBody && eos == 1 {
		return s.localReply(v)
	}
	switch action {
	case "pause":
		if eos == 0 {
			return actionPause
		}
	case "pause-forever":
		return actionPause
	}
	if eos == 1 && rewrite != "" {
		s.rewrite(buf, rewrite, bsize)
	}
	return actionContinue
}

//go:wasmexport proxy_on_request_body
func onRequestBody(ctx, size, eos uint32) uint32 {
	logf("on_request_body ctx=%d size=%d eos=%d", ctx, size, eos)
	s := streams[ctx]
	if s == nil {
		return actionContinue
	}
	s.trap("body")
	return s.body(bufRequestBody, size, eos, s.cmd["x-t-rb"], s.cmd["x-t-rb-rewrite"])
}

//go:wasmexport proxy_on_request_trailers
func onRequestTrailers(ctx, n uint32) uint32 {
	logf("on_request_trailers ctx=%d n=%d", ctx, n)
	return actionContinue
}

//go:wasmexport proxy_on_response_headers
func onResponseHeaders(ctx, n, eos uint32) uint32 {
	logf("on_response_headers ctx=%d n=%d eos=%d", ctx, n, eos)
	s := streams[ctx]
	if s == nil {
		return actionContinue
	}
	s.trap("resp-headers")
	_, pairs := getPairs(mapResponseHeaders)
	var sb strings.Builder
	for _, p := range pairs {
		sb.WriteString(p.k + "=" + p.v + ";")
	}
	logf("resp headers %s", sb.String())
	if s.has("x-t-resp-read-req") {
		st, val, _ := getHeader(mapRequestHeaders, ":path")
		pst, ps := getPairs(mapRequestHeaders)
		raw := "request\x00path"
		var p, n uint32
		prst := proxyGetProperty(sp(raw), uint32(len(raw)), unsafe.Pointer(&p), unsafe.Pointer(&n))
		logf("resp read-req st=%d val=%q pairs_st=%d pairs=%d prop_st=%d prop=%q", st, val, pst, len(ps), prst, take(p, n))
	}
	if v, ok := s.cmd["x-t-local"]; ok && s.cmd["x-t-local-at"] == "resp-headers" {
		return s.localReply(v)
	}
	if v, ok := s.cmd["x-t-resp-set"]; ok {
		k, val := splitKV(v, "=")
		logf("resp replace st=%d", proxyReplaceHeaderMapValue(mapResponseHeaders, sp(k), uint32(len(k)), sp(val), uint32(len(val))))
	}
	if s.cmd["x-t-rsh"] == "pause" {
		return actionPause
	}
	return actionContinue
}

//go:wasmexport proxy_on_response_body
func onResponseBody(ctx, size, eos uint32) uint32 {
	logf("on_response_body ctx=%d size=%d eos=%d", ctx, size, eos)
	s := streams[ctx]
	if s == nil {
		return actionContinue
	}
	return s.body(bufResponseBody, size, eos, s.cmd["x-t-rsb"], s.cmd["x-t-rsb-rewrite"])
}

//go:wasmexport proxy_on_response_trailers
func onResponseTrailers(ctx, n uint32) uint32 {
	logf("on_response_trailers ctx=%d n=%d", ctx, n)
	return actionContinue
}

//go:wasmexport proxy_on_log
func onLog(ctx uint32) {
	logf("on_log ctx=%d", ctx)
	if s := streams[ctx]; s != nil && s.has("x-t-log-read") {
		st, val, _ := getHeader(mapRequestHeaders, ":path")
		rst, rval, _ := getHeader(mapResponseHeaders, ":status")
		logf("log read-req st=%d val=%q resp st=%d val=%q", st, val, rst, rval)
	}
}

//go:wasmexport proxy_on_done
func onDone(ctx uint32) uint32 {
	logf("on_done ctx=%d", ctx)
	return 1
}

//go:wasmexport proxy_on_delete
func onDelete(ctx uint32) {
	logf("on_delete ctx=%d", ctx)
	delete(streams, ctx)
}
