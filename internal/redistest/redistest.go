// Package redistest starts a throwaway redis-server on a free loopback port
// for tests, without persistence unless asked, and stops it when the test
// ends, so Redis-backed code (counters, keystore, CLI, e2e) is tested
// against the real server. Stop and Restart simulate a Redis crash and
// recovery. Tests skip only when the binary is missing and the CI
// environment variable is unset; in CI a missing redis-server fails them.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server owned by one test.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	bin  string
	port int
	dir  string
	opts Options

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan error
}

// Options configure StartWith.
type Options struct {
	// AppendOnly turns on the append-only file with an fsync after every
	// write, so that a Restart, even after Stop's SIGKILL, keeps every
	// write Redis acknowledged.
	AppendOnly bool
}

// URL returns the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Client returns a new client for the server, closed at test cleanup.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// Start runs redis-server for the test. When the binary is missing the test
// is skipped, unless the environment variable CI is set, where it fails.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("redis-server not installed (set CI to make this a failure)")
		}
		t.Fatalf("redis-server not installed: %v", err)
	}
	var last error
	for range 5 { // a free port can be taken between probing and binding: retry with another
		s, err := start(t, bin, opts)
		if err == nil {
			return s
		}
		last = err
	}
	t.Fatalf("start redis-server: %v", last)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(t testing.TB, bin string, opts Options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), bin: bin, port: port, dir: t.TempDir(), opts: opts}
	if err := s.run(); err != nil {
		return nil, err
	}
	t.Cleanup(s.stop)
	return s, nil
}

// run starts the process on s's port and directory and waits until it
// answers PING.
func (s *Server) run() error {
	aof := []string{"--appendonly", "no"}
	if s.opts.AppendOnly {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", ""}, aof...)
	args = append(args, "--dir", s.dir, "--daemonize", "no", "--loglevel", "warning",
		"--logfile", filepath.Join(s.dir, "redis.log"))
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	if err := s.waitReady(); err != nil {
		s.stop()
		log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
		return fmt.Errorf("%w; redis log: %s", err, log)
	}
	return nil
}

// Stop kills the server (SIGKILL, like a crash) and waits for it to exit;
// clients then get connection errors until Restart.
func (s *Server) Stop() { s.stop() }

// Restart stops the server if it is running and starts redis-server again
// on the same address and directory. Without Options.AppendOnly the data
// is gone; with it, every acknowledged write is back.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stop()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = s.run(); err == nil {
			return
		}
	}
	t.Fatalf("restart redis-server on %s: %v", s.Addr, err)
}

func (s *Server) waitReady() error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s not ready: %w", s.Addr, err)
		}
		s.mu.Lock()
		done := s.done
		s.mu.Unlock()
		select {
		case werr := <-done:
			done <- werr
			return fmt.Errorf("redis-server on %s exited: %v", s.Addr, werr)
		case <-tick.C:
		}
	}
}

// stop kills the server and waits for it to exit.
func (s *Server) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	select {
	case err := <-done:
		done <- err
	case <-time.After(10 * time.Second):
	}
}
