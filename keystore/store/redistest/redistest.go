// Package redistest starts a throwaway redis-server on a free loopback port
// for tests, so Redis-backed code is tested against the real server. Tests
// skip only when the binary is missing and the CI environment variable is
// unset; in CI a missing redis-server fails the test.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server owned by one test.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	// URL is redis://Addr/0, the form `tollgate serve --redis` takes.
	URL string
}

// Start runs redis-server in a temporary directory with persistence off and
// stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("redis-server not installed (set CI=1 to make this a failure)")
		}
		t.Fatalf("redis-server not found in PATH while CI is set: %v", err)
	}
	var lastErr error
	for range 5 { // a free port can be taken between probing and binding: retry with another
		srv, err := start(t, bin)
		if err == nil {
			return srv
		}
		lastErr = err
	}
	t.Fatalf("start redis-server: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("probe free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(t testing.TB, bin string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	var tail strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if tail.Len() < 4096 {
				tail.WriteString(sc.Text() + "\n")
			}
		}
		exited <- cmd.Wait()
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			break
		}
		select {
		case werr := <-exited:
			return nil, fmt.Errorf("redis-server exited early (%v): %s", werr, tail.String())
		case <-time.After(20 * time.Millisecond): // poll interval
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return nil, errors.New("redis-server did not answer PING within 10s")
		}
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	return &Server{Addr: addr, URL: "redis://" + addr + "/0"}, nil
}
