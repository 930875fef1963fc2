package envoytest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// buildMiniPlugin compiles testdata/miniplugin (a raw-ABI plugin) for wasip1
// into a temporary file; Go's build cache makes repeat builds quick.
func buildMiniPlugin(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "miniplugin.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./testdata/miniplugin")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	msg, err := cmd.CombinedOutput()
	require.NoError(t, err, "build miniplugin: %s", msg)
	return out
}

func TestWasmFilterInRealEnvoy(t *testing.T) {
	wasm := buildMiniPlugin(t)
	up := NewUpstream(t)
	config := `{"greeting": "hi \"there\"", "list": [1, 2]}`
	env := Start(t, Config{
		Clusters: []Cluster{up.Cluster("backend")},
		Filters: []WasmFilter{{
			Name: "mini", RootID: "mini", VMID: "mini", WasmPath: wasm,
			Configuration: config, AllowOnHeadersStopIteration: true, FailurePolicy: "FAIL_CLOSED",
		}},
	})
	// One VM per worker, plus the main thread's: the configuration reached
	// proxy_on_configure byte for byte.
	env.WaitLog(t, "miniplugin config: "+config, 10*time.Second)

	for i, c := range env.WorkerClients(t, 2) {
		status, _, body := get(t, c, env.URL("/hello"), nil)
		require.Equal(t, http.StatusOK, status, "client %d: %s", i, body)
		assert.Equal(t, "yes", decodeEcho(t, body).Headers["x-mini"], "the filter on worker %d added the header", i)
	}
	rss, err := env.RSS()
	require.NoError(t, err)
	assert.Greater(t, rss, uint64(1<<20), "Envoy with V8 holds more than 1 MiB")
	vms, ok := env.StatsValue("wasm.envoy.wasm.runtime.v8.active")
	require.True(t, ok)
	assert.GreaterOrEqual(t, vms, uint64(3), "a VM on the main thread and one per worker")
	env.RequireNoCrash(t)
}

func TestCrashLinesCatchARealVMCrash(t *testing.T) {
	wasm := buildMiniPlugin(t)
	up := NewUpstream(t)
	env := Start(t, Config{
		Clusters: []Cluster{up.Cluster("backend")},
		Filters:  []WasmFilter{{Name: "mini", RootID: "mini", VMID: "mini", WasmPath: wasm}},
	})
	status, _, _ := get(t, env.Client(), env.URL("/ok"), nil)
	require.Equal(t, http.StatusOK, status)
	env.SyncLog(t)
	require.Empty(t, env.CrashLines(), "no crash before the trap")

	status, _, body := get(t, env.Client(), env.URL("/trap"), nil)
	assert.GreaterOrEqual(t, status, 500, "a crashed VM fails closed: %s", body)
	assert.Equal(t, 1, up.Count(), "the trapped request never reached the upstream")

	env.SyncLog(t)
	lines := env.CrashLines()
	require.NotEmpty(t, lines, "log tail:\n%s", tail(env.Log(), 30))
	joined := strings.Join(lines, "\n")
	assert.Contains(t, joined, "miniplugin: deliberate trap", "the Go panic message is among the crash lines")
	assert.Contains(t, joined, "proxy_on_request_headers", "Envoy names the failed callback")
	assert.True(t, env.Running(), "Envoy itself survives a VM crash")
}

// BenchmarkFilterVsBareEnvoy measures one request through a bare Envoy and
// through one with the mini plugin, in the same run; filter benchmarks
// follow the same pattern with their own module.
func BenchmarkFilterVsBareEnvoy(b *testing.B) {
	wasm := buildMiniPlugin(b)
	up := NewUpstream(b, WithRecordLimit(1))
	bare := Start(b, Config{Clusters: []Cluster{up.Cluster("backend")}})
	filtered := Start(b, Config{
		Clusters: []Cluster{up.Cluster("backend")},
		Filters:  []WasmFilter{{Name: "mini", RootID: "mini", VMID: "mini", WasmPath: wasm}},
	})
	b.Run("bare", func(b *testing.B) {
		BenchRequests(b, bare.Client(), GetRequest(bare.URL("/bench")))
	})
	b.Run("miniplugin", func(b *testing.B) {
		BenchRequests(b, filtered.Client(), GetRequest(filtered.URL("/bench")))
	})
}

// fatalRecorder is a testing.TB whose Fatalf and Errorf record their message
// (Fatalf then ends the goroutine), so a test can check how the harness
// reports failures.
type fatalRecorder struct {
	*testing.T
	mu     sync.Mutex
	fatal  string
	errors []string
}

func (r *fatalRecorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// run calls f in a goroutine, as a test body that may call Fatalf.
func (r *fatalRecorder) run(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// Failed is false so the cleanup does not copy logs for this expected failure.
func (r *fatalRecorder) Failed() bool { return false }

func TestStartFailsLoudlyWhenEnvoyRejectsTheModule(t *testing.T) {
	RequireEnvoy(t) // skip here, not inside the recorder's goroutine
	bogus := filepath.Join(t.TempDir(), "bogus.wasm")
	require.NoError(t, os.WriteFile(bogus, []byte("not a wasm module"), 0o644))
	rec := &fatalRecorder{T: t}
	rec.run(func() { Start(rec, Config{Filters: []WasmFilter{{Name: "bogus", WasmPath: bogus}}}) })
	require.NotEmpty(t, rec.fatal, "Start must fail")
	assert.Contains(t, rec.fatal, "envoy exited while waiting")
	assert.Contains(t, rec.fatal, "crash lines", "the diagnostics name the failure")
	assert.Contains(t, rec.fatal, "Unable to create Wasm plugin bogus")
}

func TestEnvoyDyingMidTestIsReported(t *testing.T) {
	RequireEnvoy(t) // skip here, not inside the recorder's goroutine
	rec := &fatalRecorder{T: t}
	env := Start(rec, Config{})
	require.True(t, env.Running())
	require.NoError(t, env.proc.cmd.Process.Kill())
	<-env.proc.done
	assert.False(t, env.Running())

	rec.run(func() { env.RequireNoCrash(rec) })
	assert.Contains(t, rec.fatal, "no longer running")

	env.cleanup()
	require.NotEmpty(t, rec.errors)
	assert.Contains(t, rec.errors[0], "envoy exited before the test ended")
}
