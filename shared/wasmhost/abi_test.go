package wasmhost

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// seenRequest is what the upstream handler observed.
type seenRequest struct {
	Method string
	Path   string
	Host   string
	Header http.Header
	Body   string
}

// echoUpstream answers "echo:<body>" and records every request.
type echoUpstream struct {
	mu   sync.Mutex
	seen []seenRequest
}

func (u *echoUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.seen = append(u.seen, seenRequest{r.Method, r.URL.RequestURI(), r.Host, r.Header.Clone(), string(b)})
	u.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Backend", "1")
	fmt.Fprintf(w, "echo:%s", b)
}

func (u *echoUpstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

// do sends a request with x-t-* command headers through the VM.
func do(t *testing.T, vm *VM, method, path, body string, hdrs ...string) *Response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	for _, h := range hdrs {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	resp, err := vm.Do(testCtx(t), req)
	require.NoError(t, err)
	return resp
}

func TestHeaderMapFunctions(t *testing.T) {
	up := &echoUpstream{}
	vm := newVM(t, newHost(t, Config{Upstream: up}))
	do(t, vm, "GET", "/hello", "",
		"x-t-get: x-a,missing,x-empty", "X-A: 1", "x-a: 2", "x-empty: ", "x-t-allocs: 1",
		"x-t-set: x-r=R", "x-t-add: :zz=P", "x-t-remove: user-agent", "x-t-log-after: 1")
	assert.Equal(t, []string{
		`get x-a st=0 val="1" ptr0=false`,   // lower-cased, first of repeated values
		`get missing st=1 val="" ptr0=true`, // NOT_FOUND
		`get x-empty st=0 val="" ptr0=true`, // empty value: pointer 0, size 0
	}, logsWith(vm, "get "))
	assert.Equal(t, []string{"allocs zero=0"}, logsWith(vm, "allocs zero"), "the host never asks for 0 bytes")
	after := logsWith(vm, "after ")
	require.Len(t, after, 1)
	assert.Contains(t, after[0], "after :authority=example.com;:path=/hello;:method=GET;:scheme=http;:zz=P;")
	assert.True(t, strings.HasSuffix(after[0], "x-r=R;"), after[0])

	seen := up.requests()
	require.Len(t, seen, 1)
	assert.Equal(t, "R", seen[0].Header.Get("X-R"), "upstream sees the plugin's changes")
	assert.Empty(t, seen[0].Header.Get("User-Agent"))
	assert.Equal(t, "http", seen[0].Header.Get("X-Forwarded-Proto"))
	assert.NotEmpty(t, seen[0].Header.Get("X-Request-Id"))
}

func TestHeaderMapSetPairsAndSize(t *testing.T) {
	up := &echoUpstream{}
	vm := newVM(t, newHost(t, Config{Upstream: up}))
	do(t, vm, "GET", "/x", "", "x-t-set-pairs: :method=GET,:path=/new,Host=h,:scheme=http,X-Q=1", "x-t-log-after: 1")
	assert.Equal(t, []string{"after :method=GET;:path=/new;:authority=h;:scheme=http;x-q=1;"}, logsWith(vm, "after "))
	seen := up.requests()
	require.Len(t, seen, 1)
	assert.Equal(t, "/new", seen[0].Path)
	assert.Equal(t, "h", seen[0].Host)

	vm2 := newVM(t, newHost(t, Config{Upstream: up}))
	do(t, vm2, "GET", "/a", "", "x-t-log-headers: 1")
	line := logsWith(vm2, "headers :authority")
	require.Len(t, line, 1)
	// proxy_get_header_map_size answers Envoy's byteSize (sum of key and value lengths).
	req := newRequestHeaderMap(Pair{":authority", "example.com"}, Pair{":path", "/a"}, Pair{":method", "GET"}, Pair{":scheme", "http"}, Pair{"x-t-log-headers", "1"}, Pair{"x-forwarded-proto", "http"})
	size := req.ByteSize() + len("x-request-id") + 36
	assert.Contains(t, line[0], fmt.Sprintf("size_st=0 size=%d", size))
}

func TestRequestHeadersUnreachableAfterContinue(t *testing.T) {
	vm := newVM(t, newHost(t, Config{Upstream: &echoUpstream{}}))
	do(t, vm, "POST", "/p", "body", "x-t-body-read-req: 1", "x-t-resp-read-req: 1")
	// Envoy drops request_headers_ once the headers callback returns Continue.
	assert.Contains(t, logsWith(vm, "body read-req"), `body read-req st=2 val=""`)
	assert.Equal(t, []string{`resp read-req st=2 val="" pairs_st=0 pairs=0 prop_st=1 prop=""`}, logsWith(vm, "resp read-req"))
}

func TestProperties(t *testing.T) {
	vm := newVM(t, newHost(t, Config{Upstream: &echoUpstream{}, Properties: map[string][]byte{"node.id": []byte("n1")}}))
	paths := "request.path,request.url_path,request.query,request.method,request.host,request.scheme,request.id," +
		"request.headers.x-h,request.protocol,source.address,source.port,destination.port,plugin_name,plugin_root_id," +
		"plugin_vm_id,node.id,response.code,nosuch,request.nosuch,my_prop"
	do(t, vm, "GET", "/p/a?x=1", "", "x-t-prop: "+paths, "x-h: v1", "x-h: v2", "x-request-id: rid", "x-t-setprop: my_prop=hello")
	got := map[string]string{}
	for _, l := range logsWith(vm, "prop ") {
		f := strings.Fields(l)
		if len(f) == 4 && f[0] == "prop" {
			got[f[1]] = f[2] + " " + f[3]
		}
	}
	hx := func(s string) string { return "st=0 val=" + hex.EncodeToString([]byte(s)) }
	le := func(n byte, m byte) string { return "st=0 val=" + hex.EncodeToString([]byte{n, m, 0, 0, 0, 0, 0, 0}) }
	want := map[string]string{
		"request.path":        hx("/p/a?x=1"),
		"request.url_path":    hx("/p/a"),
		"request.query":       hx("x=1"),
		"request.method":      hx("GET"),
		"request.host":        hx("example.com"),
		"request.scheme":      hx("http"),
		"request.id":          hx("rid"),
		"request.headers.x-h": hx("v1,v2"),
		"request.protocol":    hx("HTTP/1.1"),
		"source.address":      hx("127.0.0.1:50000"),
		"source.port":         le(0x50, 0xc3),
		"destination.port":    le(0x10, 0x27),
		"plugin_name":         hx("rawplug"),
		"plugin_root_id":      hx("rawroot"),
		"plugin_vm_id":        hx("rawvm"),
		"node.id":             hx("n1"),
		"response.code":       "st=1 val=",
		"nosuch":              "st=1 val=",
		"request.nosuch":      "st=1 val=",
		"my_prop":             hx("hello"),
	}
	assert.Equal(t, want, got)
	assert.Equal(t, []string{"setprop my_prop st=0"}, logsWith(vm, "setprop"))
}

func TestSharedDataCASAcrossVMs(t *testing.T) {
	h := newHost(t, Config{Upstream: &echoUpstream{}})
	vm1, vm2 := newVM(t, h), newVM(t, h)
	steps := []struct {
		vm   *VM
		hdr  string
		want string
	}{
		{vm1, "x-t-shared-get: k", `shared-get k st=1 val="" cas=0`},
		{vm1, "x-t-shared-set: k=v1@0", "shared-set k st=0"},
		{vm2, "x-t-shared-get: k", `shared-get k st=0 val="v1" cas=1`},
		{vm2, "x-t-shared-set: k=v2@99", "shared-set k st=8"},
		{vm2, "x-t-shared-set: k=v2@1", "shared-set k st=0"},
		{vm1, "x-t-shared-set: k=v3@1", "shared-set k st=8"},
		{vm1, "x-t-shared-get: k", `shared-get k st=0 val="v2" cas=2`},
		{vm1, "x-t-shared-set: k=v4@0", "shared-set k st=0"},
	}
	for i, s := range steps {
		do(t, s.vm, "GET", "/", "", s.hdr)
		lines := logsWith(s.vm, "shared-")
		require.NotEmpty(t, lines, "step %d", i)
		assert.Equal(t, s.want, lines[len(lines)-1], "step %d", i)
	}
	v, cas, ok := h.SharedData("k")
	assert.True(t, ok)
	assert.Equal(t, "v4", string(v))
	assert.Equal(t, uint32(3), cas)
}

func TestMetrics(t *testing.T) {
	h := newHost(t, Config{Upstream: &echoUpstream{}})
	vm1, vm2 := newVM(t, h), newVM(t, h)
	tests := []struct {
		vm   *VM
		cmd  string
		want string
	}{
		{vm1, "counter:c1:inc:5", "metric c1 id=4 def=0 op=0 get=0 val=5"},
		{vm1, "counter:c1:inc:0", "metric c1 id=8 def=0 op=2 get=0 val=5"},
		{vm1, "counter:c1:inc:-2", "metric c1 id=12 def=0 op=2 get=0 val=5"},
		{vm2, "counter:c1:rec:7", "metric c1 id=4 def=0 op=0 get=0 val=12"},
		{vm1, "gauge:g1:inc:5", "metric g1 id=5 def=0 op=0 get=0 val=5"},
		{vm1, "gauge:g1:inc:-7", "metric g1 id=9 def=0 op=0 get=0 val=18446744073709551614"},
		{vm1, "gauge:g1:rec:3", "metric g1 id=13 def=0 op=0 get=0 val=3"},
		{vm1, "histogram:h1:rec:9", "metric h1 id=6 def=0 op=0 get=2 val=0"},
		{vm1, "histogram:h1:inc:1", "metric h1 id=10 def=0 op=2 get=2 val=0"},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			do(t, tt.vm, "GET", "/", "", "x-t-metric: "+tt.cmd)
			lines := logsWith(tt.vm, "metric ")
			require.NotEmpty(t, lines)
			assert.Equal(t, tt.want, lines[len(lines)-1])
		})
	}
	c, _ := h.Counter("c1")
	assert.Equal(t, uint64(12), c)
	g, _ := h.Gauge("g1")
	assert.Equal(t, uint64(3), g)
	hv, _ := h.Histogram("h1")
	assert.Equal(t, []uint64{9}, hv)
}

func TestForeignFunctions(t *testing.T) {
	h := newHost(t, Config{Upstream: &echoUpstream{}})
	vm := newVM(t, h)
	resp := do(t, vm, "GET", "/", "", "x-t-foreign: clear_route_cache")
	do(t, vm, "GET", "/", "", "x-t-foreign: nosuch")
	assert.Equal(t, []string{"foreign clear_route_cache st=0 len=0", "foreign nosuch st=1 len=0"}, logsWith(vm, "foreign"))
	assert.Equal(t, int64(1), h.ClearRouteCacheCalls())
	assert.Equal(t, 1, resp.RouteCacheClears)
}

func TestSharedQueue(t *testing.T) {
	h := newHost(t, Config{Upstream: &echoUpstream{}, PluginConfig: []byte("queue=q1")})
	owner, other := newVM(t, h), newVM(t, h)
	assert.Equal(t, []string{"register_queue q1 st=0 id=1", "register_queue q1 st=0 id=1"},
		append(logsWith(owner, "register_queue"), logsWith(other, "register_queue")...))
	do(t, other, "GET", "/", "", "x-t-enqueue: q1=data")
	assert.Equal(t, []string{"resolve_queue q1 st=0", "enqueue st=0"}, append(logsWith(other, "resolve_queue"), logsWith(other, "enqueue st")...))
	// The last VM to register owns the queue: it is woken on its root context.
	_, err := other.WaitForLog(testCtx(t), "dequeue st=7")
	require.NoError(t, err)
	assert.Equal(t, []string{"on_queue_ready root=1 id=1"}, logsWith(other, "on_queue_ready"))
	assert.Equal(t, []string{`dequeue data="data"`}, logsWith(other, "dequeue data"))
	assert.Empty(t, logsWith(owner, "on_queue_ready"))

	do(t, owner, "GET", "/", "", "x-t-dequeue: q1")
	assert.Equal(t, []string{`dequeue-direct st=0 st2=7 data=""`}, logsWith(owner, "dequeue-direct"))
	do(t, owner, "GET", "/", "", "x-t-enqueue: nope=x")
	assert.Equal(t, []string{"resolve_queue nope st=1"}, logsWith(owner, "resolve_queue nope"))
}

func TestTick(t *testing.T) {
	t.Run("manual", func(t *testing.T) {
		vm := newVM(t, newHost(t, Config{PluginConfig: []byte("tick=60000"), ManualTicks: true}))
		assert.Equal(t, 60000*1e6, float64(vm.TickPeriod()))
		vm.Tick()
		vm.Tick()
		assert.Equal(t, []string{"on_tick root=1", "on_tick root=1"}, logsWith(vm, "on_tick"))
	})
	t.Run("timer", func(t *testing.T) {
		vm := newVM(t, newHost(t, Config{PluginConfig: []byte("tick=5")}))
		ctx := testCtx(t)
		for len(logsWith(vm, "on_tick")) < 3 {
			_, err := vm.WaitForLog(ctx, "on_tick")
			require.NoError(t, err)
		}
	})
}

// TestWASIEnvironment: Config.Env is the module's environment, as
// vm_config.environment_variables is in Envoy; without it there is none.
func TestWASIEnvironment(t *testing.T) {
	vm := newVM(t, newHost(t, Config{Upstream: &echoUpstream{}, Env: []string{"TOLLGATE_X=one", "GODEBUG=gctrace=0"}}))
	do(t, vm, "GET", "/", "", "x-t-env: TOLLGATE_X")
	do(t, vm, "GET", "/", "", "x-t-env: GODEBUG")
	do(t, vm, "GET", "/", "", "x-t-env: HOME")
	assert.Equal(t, []string{`env TOLLGATE_X="one" found=true`, `env GODEBUG="gctrace=0" found=true`, `env HOME="" found=false`},
		logsWith(vm, "env "))

	bare := newVM(t, newHost(t, Config{Upstream: &echoUpstream{}}))
	do(t, bare, "GET", "/", "", "x-t-env: TOLLGATE_X")
	assert.Equal(t, []string{`env TOLLGATE_X="" found=false`}, logsWith(bare, "env "))
}

func TestWASIAnswers(t *testing.T) {
	vm := newVM(t, newHost(t, Config{Upstream: &echoUpstream{}}))
	do(t, vm, "GET", "/", "", "x-t-wasi: 1")
	// Expected values observed on Envoy 1.40 with the same module.
	assert.Equal(t, []string{
		"wasi fd_read=52",
		"wasi fd_seek=0 off=77",
		"wasi fd_close=0",
		"wasi fd_tell=0 off=0 fd_tell3=8",
		"wasi sched_yield=0",
		"wasi poll_oneoff=0 nevents=0",
		"wasi random_get_big=28 random_get_64k=0 random_get_0=0",
		"wasi clock_res_get0=0 res=1 clock_res_get2=58",
		"wasi clock_time_get2=58 clock_time_get0=0 nonzero=true",
		"wasi sock_accept=58",
		"wasi fd_write1=0 n=10 fd_write3=8",
	}, logsWith(vm, "wasi "))
	var stdout []LogEntry
	for _, e := range vm.Logs() {
		if e.Message == "to-stdout" {
			stdout = append(stdout, e)
		}
	}
	require.Len(t, stdout, 1, "stdout is logged at info with the newline trimmed")
	assert.Equal(t, LogInfo, stdout[0].Level)
}
