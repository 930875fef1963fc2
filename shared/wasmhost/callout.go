package wasmhost

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// calloutResponse is what proxy_on_http_call_response lets the plugin read.
type calloutResponse struct {
	headers  *HeaderMap
	body     []byte
	trailers *HeaderMap
}

// callout is an http call in flight, owned by a root context.
type callout struct {
	rootID uint32
	gen    uint64
	cancel context.CancelFunc
}

// httpCallABI decodes proxy_http_call's arguments (exports.cc http_call).
func (vm *VM) httpCallABI(s []uint64) Status {
	cluster, ok1 := vm.readString(u32(s[0]), u32(s[1]))
	hdrs, ok2 := vm.read(u32(s[2]), u32(s[3]))
	body, ok3 := vm.read(u32(s[4]), u32(s[5]))
	trs, ok4 := vm.read(u32(s[6]), u32(s[7]))
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return StatusInvalidMemoryAccess
	}
	headers, _ := DecodePairs(hdrs)
	trailers, _ := DecodePairs(trs)
	tokenPtr := u32(s[9])
	// Envoy writes the token once before starting to validate the pointer.
	if !vm.writeU32(tokenPtr, 0) {
		return StatusInvalidMemoryAccess
	}
	root := vm.rootOf(vm.ctxOrEffective())
	token, status := vm.httpCall(root, cluster, headers, append([]byte(nil), body...), trailers, int32(u32(s[8])))
	vm.writeU32(tokenPtr, token)
	return status
}

// httpCall is Envoy's Context::httpCall: the cluster must exist and the
// headers must carry :method, :path and :authority (BAD_ARGUMENT otherwise);
// the response is delivered later on the VM's dispatcher to the root
// context, with token ids 4, 8, 12... per VM.
func (vm *VM) httpCall(root *vmContext, cluster string, headers []Pair, body []byte, trailers []Pair, timeoutMs int32) (uint32, Status) {
	if timeoutMs < 0 {
		return 0, StatusBadArgument
	}
	handler, ok := vm.host.cfg.Clusters[cluster]
	if !ok || handler == nil {
		return 0, StatusBadArgument
	}
	m := newRequestHeaderMap(headers...)
	path, okP := m.Get(":path")
	method, okM := m.Get(":method")
	authority, okA := m.Get(":authority")
	if !okP || !okM || !okA {
		return 0, StatusBadArgument
	}
	if len(body) > 0 {
		m.Set("content-length", strconv.Itoa(len(body)))
	}
	vm.nextCallout += 4
	token := vm.nextCallout
	ctx, cancel := context.WithCancel(context.Background())
	vm.callouts[token] = &callout{rootID: root.id, gen: vm.gen, cancel: cancel}

	req := &http.Request{
		Method:     method,
		Host:       authority,
		Header:     m.HTTPHeader(),
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		RemoteAddr: "127.0.0.1:0",
		RequestURI: path,
	}
	u, err := url.ParseRequestURI(path)
	if err != nil {
		u = &url.URL{Path: path}
	}
	req.URL = u
	req.Header.Set("X-Envoy-Internal", "true")
	if timeoutMs > 0 {
		req.Header.Set("X-Envoy-Expected-Rq-Timeout-Ms", strconv.Itoa(int(timeoutMs)))
	}
	req.ContentLength = int64(len(body))
	req.Body = io.NopCloser(bytes.NewReader(body))
	if len(trailers) > 0 {
		req.Trailer = http.Header{}
		for _, t := range trailers {
			req.Trailer.Add(strings.ToLower(t.Key), t.Value)
		}
	}
	req = req.WithContext(ctx)

	go func() {
		start := time.Now()
		type result struct {
			resp     *calloutResponse
			panicked bool
		}
		done := make(chan result, 1)
		go func() {
			r, p := bufferedResponse(handler, req)
			done <- result{r, p}
		}()
		var timer <-chan time.Time
		if timeoutMs > 0 {
			t := time.NewTimer(time.Duration(timeoutMs) * time.Millisecond)
			defer t.Stop()
			timer = t.C
		}
		var res result
		timedOut := false
		select {
		case res = <-done:
		case <-timer:
			timedOut = true
			cancel()
			// Envoy's router answers a timed-out call with a local 504.
			res.resp = &calloutResponse{
				headers: NewHeaderMap(Pair{":status", "504"}, Pair{"content-length", "24"}, Pair{"content-type", "text/plain"}),
				body:    []byte("upstream request timeout"),
			}
		case <-ctx.Done():
			return
		}
		if res.resp != nil && !timedOut {
			res.resp.headers.Add("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(start).Milliseconds(), 10))
		}
		vm.post(func() { vm.deliverCallout(token, res.resp, res.panicked) })
	}()
	return token, StatusOK
}

// deliverCallout calls proxy_on_http_call_response on the root context; a
// failed call (reset) is delivered with zero headers and get_status
// answering BROKEN_CONNECTION / "reset", as Envoy's onHttpCallFailure does.
func (vm *VM) deliverCallout(token uint32, resp *calloutResponse, failed bool) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	co := vm.callouts[token]
	if co == nil {
		return
	}
	delete(vm.callouts, token)
	co.cancel()
	if vm.closed || co.gen != vm.gen || vm.failState != FailNone {
		return
	}
	root := vm.contexts[co.rootID]
	if root == nil {
		return
	}
	f := vm.fns["proxy_on_http_call_response"]
	if failed || resp == nil {
		root.statusCode = uint32(StatusBrokenConnection)
		root.statusMessage = "reset"
		vm.after = append(vm.after, func() { root.statusMessage = "" })
		vm.callFn(root, f, uint64(root.id), uint64(token), 0, 0, 0)
		vm.runAfter()
		return
	}
	root.callResponse = resp
	vm.after = append(vm.after, func() { root.callResponse = nil })
	vm.callFn(root, f, uint64(root.id), uint64(token), uint64(resp.headers.Len()), uint64(len(resp.body)), uint64(resp.trailers.Len()))
	vm.runAfter()
}

// PendingCallouts is the number of http calls not yet delivered.
func (vm *VM) PendingCallouts() int {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return len(vm.callouts)
}
