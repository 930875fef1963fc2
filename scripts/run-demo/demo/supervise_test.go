package demo

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/internal/logbuf"
)

// fakeProc is a process the test ends by closing done.
type fakeProc struct {
	done    chan struct{}
	stopped bool
	err     error
}

func newFakeProc() *fakeProc              { return &fakeProc{done: make(chan struct{})} }
func (p *fakeProc) Done() <-chan struct{} { return p.done }
func (p *fakeProc) Err() error            { return p.err }
func (p *fakeProc) Stop() {
	p.stopped = true
	select {
	case <-p.done:
	default:
		close(p.done)
	}
}

func TestBackoffNext(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Stable: time.Minute}
	tests := []struct {
		prev, ran, want time.Duration
	}{
		{0, 0, 100 * time.Millisecond},
		{100 * time.Millisecond, time.Second, 200 * time.Millisecond},
		{400 * time.Millisecond, 0, 800 * time.Millisecond},
		{800 * time.Millisecond, 0, time.Second},
		{time.Second, 0, time.Second},
		{time.Second, time.Minute, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, b.next(tt.prev, tt.ran), "prev %v ran %v", tt.prev, tt.ran)
	}
}

// A process that keeps dying is restarted each time, with growing waits,
// every exit logged; cancelling stops the running one.
func TestSupervisorRestartsWithBackoff(t *testing.T) {
	logs := &logbuf.Buffer{}
	waits := make(chan time.Duration, 10)
	procs := make(chan *fakeProc, 10)
	first := newFakeProc()
	s := &Supervisor{
		Name: "keystore", Backoff: Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond, Stable: time.Hour},
		Log: slog.New(slog.NewTextHandler(logs, nil)),
		Start: func() (Process, error) {
			p := newFakeProc()
			procs <- p
			return p, nil
		},
		After: func(d time.Duration) <-chan time.Time {
			waits <- d
			c := make(chan time.Time, 1)
			c <- time.Time{}
			return c
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, first) }()

	first.err = errors.New("signal: killed")
	close(first.done)
	var last *fakeProc
	for i, want := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond} {
		require.Equal(t, want, <-waits, "wait before restart %d", i+1)
		last = <-procs
		if i < 3 {
			close(last.done) // dies again at once
		}
	}
	cancel()
	require.NoError(t, <-done)
	assert.True(t, last.stopped, "the running process is stopped on exit")
	out := logs.String()
	assert.Equal(t, 4, strings.Count(out, "process exited; restarting"), out)
	assert.Contains(t, out, "signal: killed")
	assert.Contains(t, out, "restarts=4")
}

// A restart that cannot start the process at all ends supervision with the error.
func TestSupervisorStartFailure(t *testing.T) {
	first := newFakeProc()
	close(first.done)
	s := &Supervisor{
		Name: "keystore", Backoff: DefaultBackoff, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Start: func() (Process, error) { return nil, errors.New("no such file") },
		After: func(time.Duration) <-chan time.Time {
			c := make(chan time.Time, 1)
			c <- time.Time{}
			return c
		},
	}
	assert.ErrorContains(t, s.Run(context.Background(), first), "no such file")
}
