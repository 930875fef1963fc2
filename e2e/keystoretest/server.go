package keystoretest

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/keystore"
	"github.com/tollgate/tollgate/keystore/client"
)

// Timeouts of the process lifecycle; generous because e2e tests share a
// small, loaded machine.
const (
	// ReadyTimeout bounds how long Start waits for /healthz.
	ReadyTimeout = 20 * time.Second
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	StopTimeout = 15 * time.Second
	// CLITimeout bounds one CLI subcommand.
	CLITimeout = 20 * time.Second
)

// Options configure one `tollgate serve`; the zero value is an embedded
// store in a fresh temporary directory on free loopback ports.
type Options struct {
	// DataDir holds the embedded store, the generated admin token and the
	// ready file; empty means t.TempDir().
	DataDir string
	// RedisURL, when set, is passed as --redis to share state in Redis.
	RedisURL string
	// AdminToken, when set, is the admin bearer token (given to serve and
	// the CLI through the environment); empty means serve generates one
	// into DataDir.
	AdminToken string
	// Listen and AdminListen are the data-plane and admin addresses; empty
	// means 127.0.0.1:0 (a free port).
	Listen, AdminListen string
	// DataToken, when set, is the data-plane token (given to serve through
	// the environment); filters must then send it.
	DataToken string
	// Args are extra `serve` flags, e.g. "--log-level", "warn".
	Args []string
}

// Server is one running `tollgate serve` owned by a test.
type Server struct {
	bin                 string
	opts                Options
	dataAddr, adminAddr string
	portalAddr          string
	token               string
	proc                *process
}

// process is one started `tollgate serve` process.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process exited
	log  *logBuffer
}

// logBuffer collects the process's output; the mutex lets a test read it
// while the process still writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends process output.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Start runs `tollgate serve` with opts, waits until its data plane answers
// /healthz and stops it when t ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.AdminListen == "" {
		opts.AdminListen = "127.0.0.1:0"
	}
	s := &Server{bin: Bin(t), opts: opts}
	s.start(t, opts.Listen, opts.AdminListen)
	if opts.AdminToken != "" {
		s.token = opts.AdminToken
	} else {
		token, err := keystore.ReadAdminTokenFile(opts.DataDir)
		require.NoError(t, err)
		s.token = token
	}
	return s
}

// start launches one process on the given addresses and waits for it; the
// cleanup registered on t stops that process (and logs it if t failed).
func (s *Server) start(t testing.TB, listen, adminListen string) {
	t.Helper()
	ready := filepath.Join(s.opts.DataDir, "ready.json")
	_ = os.Remove(ready)
	args := []string{"serve", "--listen", listen, "--admin-listen", adminListen,
		"--data-dir", s.opts.DataDir, "--ready-file", ready}
	if s.opts.RedisURL != "" {
		args = append(args, "--redis", s.opts.RedisURL)
	}
	p := &process{cmd: exec.Command(s.bin, append(args, s.opts.Args...)...), done: make(chan struct{}), log: &logBuffer{}}
	p.cmd.Env = append(os.Environ(), keystore.AdminTokenEnv+"="+s.opts.AdminToken, keystore.DataTokenEnv+"="+s.opts.DataToken)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = childAttr()
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	s.proc = p
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("tollgate serve log:\n%s", p.log.String())
		}
	})
	deadline := time.NewTimer(ReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !s.ready(t, ready) {
		select {
		case <-p.done:
			t.Fatalf("tollgate serve exited before it was ready:\n%s", p.log.String())
		case <-deadline.C:
			t.Fatalf("tollgate serve not ready after %v:\n%s", ReadyTimeout, p.log.String())
		case <-tick.C:
		}
	}
}

// ready reports whether serve wrote its addresses to the ready file and its
// data plane answers GET /healthz with 200.
func (s *Server) ready(t testing.TB, readyFile string) bool {
	t.Helper()
	b, err := os.ReadFile(readyFile)
	if err != nil || len(b) == 0 {
		return false
	}
	var addrs struct{ Data, Admin, Portal string }
	require.NoError(t, json.Unmarshal(b, &addrs), "%s", b)
	s.dataAddr, s.adminAddr, s.portalAddr = addrs.Data, addrs.Admin, addrs.Portal
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.DataURL()+"/healthz", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// stop ends the process with SIGTERM (SIGKILL after StopTimeout) and waits
// for it; it is a no-op once the process exited.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Stop ends the running process and waits for it, as an outage would; the
// data dir and ports stay reserved for Restart.
func (s *Server) Stop() { s.proc.stop() }

// Restart stops the process and starts a new one on the same ports, data
// dir and options, as an operator restarting the service would; t's cleanup
// stops the new process.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.start(t, s.dataAddr, s.adminAddr)
}

// PortalURL is the developer portal's base URL ("" unless Args hold --portal).
func (s *Server) PortalURL() string {
	if s.portalAddr == "" {
		return ""
	}
	return "http://" + s.portalAddr
}

// DataAddr is the data plane's host:port (what an Envoy cluster points at).
func (s *Server) DataAddr() string { return s.dataAddr }

// DataURL is the data plane's base URL, "http://host:port".
func (s *Server) DataURL() string { return "http://" + s.dataAddr }

// DataPort is the data plane's port.
func (s *Server) DataPort() int {
	_, port, err := net.SplitHostPort(s.dataAddr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(port)
	return n
}

// AdminAddr is the admin API's host:port.
func (s *Server) AdminAddr() string { return s.adminAddr }

// AdminURL is the admin API's base URL, "http://host:port".
func (s *Server) AdminURL() string { return "http://" + s.adminAddr }

// AdminToken is the bearer token the admin API accepts.
func (s *Server) AdminToken() string { return s.token }

// DataDir is the directory of the embedded store and the admin token.
func (s *Server) DataDir() string { return s.opts.DataDir }

// Log is the running (or last) process's stdout and stderr so far.
func (s *Server) Log() string { return s.proc.log.String() }

// Client is an admin API client for this keystore.
func (s *Server) Client(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.New(s.AdminURL(), s.token)
	require.NoError(t, err)
	return c
}

// CLI runs `tollgate args...` against this keystore's admin API and data
// dir and returns its stdout; a non-zero exit fails the test with both
// streams.
func (s *Server) CLI(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CLITimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = append(os.Environ(), "TOLLGATE_ADMIN_URL="+s.AdminURL(), "TOLLGATE_DATA_DIR="+s.opts.DataDir,
		keystore.AdminTokenEnv+"="+s.token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tollgate %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}
