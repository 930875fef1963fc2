package apikey

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// tollgateBin is the CLI built once by TestMain.
var tollgateBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tollgate-e2e-apikey-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := envoytest.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tollgateBin = filepath.Join(dir, "tollgate")
	build := exec.Command("go", "build", "-o", tollgateBin, "./cmd/tollgate")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/tollgate: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// keystore is one `tollgate serve` process on loopback with an embedded
// store in a test directory.
type keystore struct {
	t         testing.TB
	dataDir   string
	dataAddr  string
	adminAddr string
	cmd       *exec.Cmd
	done      chan struct{}
	log       *bytes.Buffer
}

// startKeystore runs `tollgate serve` on the given addresses (port 0 picks
// free ports) and waits for its ready file.
func startKeystore(t testing.TB, dataDir, listen, adminListen string) *keystore {
	t.Helper()
	ready := filepath.Join(dataDir, "ready.json")
	_ = os.Remove(ready)
	k := &keystore{t: t, dataDir: dataDir, done: make(chan struct{}), log: &bytes.Buffer{}}
	k.cmd = exec.Command(tollgateBin, "serve",
		"--listen", listen, "--admin-listen", adminListen,
		"--data-dir", dataDir, "--ready-file", ready,
		"--cache-ttl", "30s", "--negative-cache-ttl", "5s")
	k.cmd.Stdout, k.cmd.Stderr = k.log, k.log
	require.NoError(t, k.cmd.Start())
	go func() {
		_ = k.cmd.Wait()
		close(k.done)
	}()
	t.Cleanup(k.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(ready)
		if err == nil && len(b) > 0 {
			var addrs struct{ Data, Admin string }
			require.NoError(t, json.Unmarshal(b, &addrs))
			k.dataAddr, k.adminAddr = addrs.Data, addrs.Admin
			return k
		}
		select {
		case <-k.done:
			t.Fatalf("tollgate serve exited before it was ready:\n%s", k.log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("tollgate serve not ready after 20s:\n%s", k.log)
		}
	}
}

// stop ends the process with SIGTERM (SIGKILL after 10s) and waits for it.
func (k *keystore) stop() {
	select {
	case <-k.done:
		return
	default:
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(10 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
	}
}

// restart stops the keystore and starts a new process on the same data dir
// and ports, as an operator restarting the service would.
func (k *keystore) restart(t testing.TB) *keystore {
	t.Helper()
	k.stop()
	return startKeystore(t, k.dataDir, k.dataAddr, k.adminAddr)
}

// cli runs an admin command against this keystore and returns its stdout.
func (k *keystore) cli(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tollgateBin, args...)
	cmd.Env = append(os.Environ(), "TOLLGATE_ADMIN_URL=http://"+k.adminAddr, "TOLLGATE_DATA_DIR="+k.dataDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) || err != nil {
		t.Fatalf("tollgate %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// issuedKey is a key as `keys create -o json` prints it.
type issuedKey struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

// createKey issues a key for app through the CLI.
func (k *keystore) createKey(t testing.TB, app string) issuedKey {
	t.Helper()
	out := k.cli(t, "keys", "create", "--app", app, "-o", "json")
	var ik issuedKey
	require.NoError(t, json.Unmarshal([]byte(out), &ik), out)
	require.NotEmpty(t, ik.Key, out)
	require.NotEmpty(t, ik.ID, out)
	return ik
}
