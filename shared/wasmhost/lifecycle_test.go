package wasmhost

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVMStartFailures(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
		wantLog string
	}{
		{
			name:    "host call during _initialize traps like Envoy",
			cfg:     Config{Module: initCallWasm},
			wantErr: "restricted_callback",
			wantLog: "initcall: init running", // proxy_log is allowed during init
		},
		{
			name:    "missing import fails instantiation",
			cfg:     Config{Module: missingImportWasm},
			wantErr: "proxy_does_not_exist",
		},
		{
			name:    "proxy_on_configure false",
			cfg:     Config{PluginConfig: []byte("fail-configure")},
			wantErr: "proxy_on_configure returned false",
		},
		{
			name:    "proxy_on_vm_start false",
			cfg:     Config{VMConfig: []byte("fail-start")},
			wantErr: "proxy_on_vm_start returned false",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs []string
			tb := &captureTB{lines: &logs}
			tt.cfg.Logger = tb
			h := newHost(t, tt.cfg)
			_, err := h.NewVM(context.Background())
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			if tt.wantLog != "" {
				assert.Contains(t, strings.Join(logs, "\n"), tt.wantLog)
			}
		})
	}
}

// captureTB collects forwarded log lines.
type captureTB struct{ lines *[]string }

func (c *captureTB) Helper() {}

func (c *captureTB) Logf(format string, args ...any) {
	*c.lines = append(*c.lines, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func TestModuleRejected(t *testing.T) {
	// A valid module without the proxy_abi_version_0_2_1 marker export.
	empty := []byte("\x00asm\x01\x00\x00\x00")
	_, err := NewHost(context.Background(), Config{Module: empty})
	require.ErrorIs(t, err, ErrModule)
	assert.Contains(t, err.Error(), "Missing or unknown Proxy-Wasm ABI version")
	_, err = NewHost(context.Background(), Config{Module: []byte("not wasm")})
	require.ErrorIs(t, err, ErrModule)
}

func TestTrapFailurePolicy(t *testing.T) {
	tests := []struct {
		name      string
		policy    FailurePolicy
		wantNext  int
		nextCalls bool // the next stream reaches the plugin
	}{
		{"fail closed answers 503 from then on", FailClosed, 503, false},
		{"fail open skips the filter for new streams", FailOpen, 200, false},
		{"fail reload recreates the VM after the backoff", FailReload, 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &echoUpstream{}
			vm := newVM(t, newHost(t, Config{Upstream: up, FailurePolicy: tt.policy, ReloadBackoff: time.Nanosecond}))
			resp := do(t, vm, "POST", "/t", "abc", "x-t-trap: headers")
			// The stream whose callback trapped always gets Envoy's 503.
			assert.Equal(t, 503, resp.StatusCode)
			assert.Empty(t, resp.Body)
			assert.Equal(t, ":status=503;content-length=0;", resp.Headers.String())
			assert.Equal(t, "wasm_fail_stream", resp.LocalReplyDetails)
			assert.Empty(t, up.requests())
			state, msg := vm.Failed()
			assert.Equal(t, FailRuntimeError, state)
			assert.Contains(t, msg, "Function: proxy_on_request_headers failed")
			assert.NotEmpty(t, logsWith(vm, "test trap in headers"), "the Go panic message reaches the log via stderr")
			assert.Empty(t, logsWith(vm, "on_log"), "no callbacks into a failed VM")

			before := len(logsWith(vm, "on_request_headers"))
			resp = do(t, vm, "GET", "/next", "")
			assert.Equal(t, tt.wantNext, resp.StatusCode)
			assert.Equal(t, tt.nextCalls, len(logsWith(vm, "on_request_headers")) > before)
		})
	}
}

func TestAllocatorRestrictions(t *testing.T) {
	tests := []struct {
		name    string
		hdr     string
		wantMsg string
	}{
		{"host call from inside the allocator traps", "x-t-alloc-hostcall: 1", "restricted_callback"},
		{"a trap inside the allocator fails the VM", "x-t-alloc-trap: 1", "Function: proxy_on_memory_allocate failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm := newVM(t, newHost(t, Config{Upstream: &echoUpstream{}}))
			req := httptest.NewRequest("GET", "/", nil)
			k, v, _ := strings.Cut(tt.hdr, ": ")
			req.Header.Set(k, v)
			req.Header.Set("x-t-get", "x-t-get")
			resp, err := vm.Do(testCtx(t), req)
			require.NoError(t, err)
			assert.Equal(t, 503, resp.StatusCode)
			_, msg := vm.Failed()
			assert.Contains(t, msg, tt.wantMsg)
		})
	}
}

func TestCallTimeoutKillsRunawayGuest(t *testing.T) {
	// CallTimeout is a safety net for tests, off by default like Envoy.
	vm := newVM(t, newHost(t, Config{Upstream: &echoUpstream{}, CallTimeout: 100 * time.Millisecond}))
	resp := do(t, vm, "GET", "/", "")
	assert.Equal(t, 200, resp.StatusCode)
	resp = do(t, vm, "GET", "/", "", "x-t-spin: 1")
	assert.Equal(t, 503, resp.StatusCode)
	state, _ := vm.Failed()
	assert.Equal(t, FailRuntimeError, state)
}
