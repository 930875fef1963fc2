package memstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/countertest"
	"github.com/tollgate/tollgate/window"
)

func harness() countertest.Harness {
	return countertest.Harness{
		Persistent: true,
		Leases:     true,
		Storage: func(t *testing.T, clock func() time.Time) func() counter.Backend {
			dir := t.TempDir()
			return func() counter.Backend {
				s, err := Open(Options{Dir: dir, Clock: clock})
				require.NoError(t, err)
				return s
			}
		},
	}
}

func TestContract(t *testing.T) {
	countertest.Run(t, harness())
}

func mustSpec(t *testing.T, text string) window.Spec {
	t.Helper()
	s, err := window.ParseCompact(text)
	require.NoError(t, err)
	return s
}

var reqKey = counter.Key{App: "a", Product: "p", Kind: counter.Requests}

func TestSweepDropsExpiredCounters(t *testing.T) {
	clock := countertest.NewClock(countertest.T0)
	s, err := Open(Options{Clock: clock.Now, SweepInterval: time.Hour, SweepLimit: 3})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	eng := counter.New(s, counter.WithClock(clock.Now))
	ctx := context.Background()
	perMinute := mustSpec(t, "10/1minute/calendar")
	for i := 0; i < 200; i++ {
		_, err := eng.Consume(ctx, counter.Key{App: fmt.Sprint("app", i), Kind: counter.Requests}, perMinute, 1)
		require.NoError(t, err)
	}
	// One key also holds a reservation that outlives its window.
	_, err = eng.Reserve(ctx, reqKey, perMinute, 1, 5*time.Minute)
	require.NoError(t, err)
	require.Equal(t, 201, s.Len())

	clock.Advance(time.Minute)
	dropped := s.Sweep(window.Ms(clock.Now()))
	assert.LessOrEqual(t, dropped, 3*numShards, "a sweep examines at most SweepLimit per shard")
	for s.Sweep(window.Ms(clock.Now())) > 0 {
	}
	assert.Equal(t, 1, s.Len(), "only the counter with an open reservation is left")
	clock.Advance(5 * time.Minute)
	for s.Sweep(window.Ms(clock.Now())) > 0 {
	}
	assert.Equal(t, 0, s.Len())
}

func TestBackgroundSweep(t *testing.T) {
	clock := countertest.NewClock(countertest.T0)
	s, err := Open(Options{Clock: clock.Now, SweepInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	eng := counter.New(s, counter.WithClock(clock.Now))
	_, err = eng.Consume(context.Background(), reqKey, mustSpec(t, "10/1second/calendar"), 1)
	require.NoError(t, err)
	clock.Advance(2 * time.Second)
	require.Eventually(t, func() bool { return s.Len() == 0 }, 5*time.Second, 5*time.Millisecond)
}

// TestCrashLosesOnlyUnsnapshotted shows the loss bound: a process that dies
// without Close keeps what the last snapshot held.
func TestCrashLosesOnlyUnsnapshotted(t *testing.T) {
	dir := t.TempDir()
	clock := countertest.NewClock(countertest.T0)
	s1, err := Open(Options{Dir: dir, Clock: clock.Now, SnapshotInterval: time.Hour})
	require.NoError(t, err)
	eng := counter.New(s1, counter.WithClock(clock.Now))
	sp := mustSpec(t, "100/1hour/calendar")
	ctx := context.Background()
	_, err = eng.Consume(ctx, reqKey, sp, 7)
	require.NoError(t, err)
	require.NoError(t, s1.Snapshot())
	_, err = eng.Consume(ctx, reqKey, sp, 5)
	require.NoError(t, err)

	// "Crash": read the directory while s1 is still running.
	s2, err := Open(Options{Dir: dir, Clock: clock.Now})
	require.NoError(t, err)
	d, err := counter.New(s2, counter.WithClock(clock.Now)).Consume(ctx, reqKey, sp, 0)
	require.NoError(t, err)
	assert.Equal(t, int64(7), d.Used)
	require.NoError(t, s2.Close())
	require.NoError(t, s1.Close())
}

func TestPeriodicSnapshot(t *testing.T) {
	dir := t.TempDir()
	clock := countertest.NewClock(countertest.T0)
	s, err := Open(Options{Dir: dir, Clock: clock.Now, SnapshotInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	_, err = counter.New(s, counter.WithClock(clock.Now)).Consume(context.Background(), reqKey, mustSpec(t, "100/1hour/calendar"), 3)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, SnapshotFile))
		return err == nil && strings.Contains(string(b), `"buckets":[[`)
	}, 5*time.Second, 10*time.Millisecond)
}

func TestLoadSkipsExpiredAndRejectsCorrupt(t *testing.T) {
	cases := []struct {
		name    string
		file    string
		wantErr string
		wantLen int
	}{
		{"missing file starts empty", "", "", 0},
		{"corrupt", `{"version":1,"counters":[`, "corrupt", 0},
		{"future version", `{"version":2}`, "version 2", 0},
		{"bad kind", `{"version":1,"counters":[{"id":"x","kind":"weird","expire_at":9999999999999}]}`, "weird", 0},
		{"expired entries skipped", `{"version":1,"counters":[
			{"id":"old","kind":"calendar","buckets":[[1,1]],"expire_at":1},
			{"id":"live","kind":"calendar","buckets":[[1,1]],"expire_at":9999999999999}]}`, "", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.file != "" {
				require.NoError(t, os.WriteFile(filepath.Join(dir, SnapshotFile), []byte(tc.file), 0o600))
			}
			s, err := Open(Options{Dir: dir})
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantLen, s.Len())
			require.NoError(t, s.Close())
		})
	}
}

func TestCanceledContext(t *testing.T) {
	s, err := Open(Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = counter.New(s).Consume(ctx, reqKey, mustSpec(t, "1/1minute/calendar"), 1)
	require.ErrorIs(t, err, context.Canceled)
}
