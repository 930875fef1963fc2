package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/keystore/model"
)

const crashDirEnv = "TOLLGATE_STORE_CRASH_DIR"

// TestMain runs the crash writer instead of the tests when the parent test
// re-executes this binary as its child process.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashWriter(dir)
	}
	os.Exit(m.Run())
}

// crashWriter is the child half of TestCrashMidWriteKeepsAcknowledgedWrites:
// it writes developers until killed (or until its own bound) and prints each
// id after the commit returned.
func crashWriter(dir string) {
	b, err := OpenBackend(context.Background(), BackendOptions{DataDir: dir})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	s, err := b.Keystore()
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < 100000 && time.Now().Before(deadline); i++ {
		email := fmt.Sprintf("dev%06d@example.com", i)
		if _, err := s.CreateDeveloper(context.Background(), model.Developer{Email: email, Name: strings.Repeat("x", 512)}); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("ok", email)
	}
	os.Exit(0)
}

func TestCrashMidWriteKeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	var acked []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		require.False(t, strings.HasPrefix(line, "error"), line)
		if email, ok := strings.CutPrefix(line, "ok "); ok {
			acked = append(acked, email)
		}
		if len(acked) >= 40 {
			require.NoError(t, cmd.Process.Kill()) // SIGKILL while the child is mid-write
			break
		}
	}
	for sc.Scan() { // drain whatever was printed before the kill landed
		if email, ok := strings.CutPrefix(sc.Text(), "ok "); ok {
			acked = append(acked, email)
		}
	}
	_ = cmd.Wait()
	require.GreaterOrEqual(t, len(acked), 40)

	b, err := OpenBackend(context.Background(), BackendOptions{DataDir: dir})
	require.NoError(t, err, "the file must open cleanly after a crash")
	defer b.Close()
	s, err := b.Keystore()
	require.NoError(t, err)
	devs, err := s.ListDevelopers(context.Background())
	require.NoError(t, err)
	have := map[string]bool{}
	for _, d := range devs {
		have[d.Email] = true
	}
	for _, email := range acked {
		assert.True(t, have[email], "acknowledged write %s lost", email)
	}
	require.NoError(t, b.Bolt.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("bbolt consistency check: %w", err)
		}
		return nil
	}))
}
