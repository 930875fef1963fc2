package demo

import (
	"context"
	"log/slog"
	"time"
)

// Process is one started child process, as Supervise sees it.
type Process interface {
	// Done is closed when the process has exited.
	Done() <-chan struct{}
	// Err is how it exited (valid once Done is closed).
	Err() error
	// Stop asks it to exit and waits until it has.
	Stop()
}

// Backoff spaces restarts: the first comes after Initial, each quick death
// doubles the wait up to Max, and a run that lasted at least Stable starts
// over at Initial.
type Backoff struct {
	Initial, Max, Stable time.Duration
}

// DefaultBackoff restarts after 250 ms, 500 ms, 1 s, … up to 10 s; a run
// of a minute resets it.
var DefaultBackoff = Backoff{Initial: 250 * time.Millisecond, Max: 10 * time.Second, Stable: time.Minute}

// next is the wait before the next start, given the previous wait and how
// long the process ran.
func (b Backoff) next(prev, ran time.Duration) time.Duration {
	if prev == 0 || ran >= b.Stable {
		return b.Initial
	}
	return min(2*prev, b.Max)
}

// Supervisor keeps one process running: when it dies it is logged and
// started again after a backoff, until the context ends. The demo's keystore
// and mock model server run under one, so that killing the keystore shows
// what the gateway does without it (cached keys keep working) instead of
// stopping the demo.
type Supervisor struct {
	Name    string
	Backoff Backoff
	Log     *slog.Logger
	// Start starts the process once.
	Start func() (Process, error)
	// After is the clock (nil: time.After); tests record the waits.
	After func(time.Duration) <-chan time.Time
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Restarted, when set, is told after every successful restart.
	Restarted func(n int)
}

// Run supervises p, which the caller started, until ctx is done, then stops
// the running process. It returns early only when a restart fails to start
// the process at all (a missing binary will not fix itself).
func (s *Supervisor) Run(ctx context.Context, p Process) error {
	after, now := s.After, s.Now
	if after == nil {
		after = time.After
	}
	if now == nil {
		now = time.Now
	}
	var wait time.Duration
	started := now()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			p.Stop()
			return nil
		case <-p.Done():
		}
		ran := now().Sub(started)
		wait = s.Backoff.next(wait, ran)
		s.Log.Warn("process exited; restarting", "process", s.Name, "error", p.Err(), "ran", ran.Round(time.Millisecond), "restart_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-after(wait):
		}
		var err error
		if p, err = s.Start(); err != nil {
			s.Log.Error("restart failed", "process", s.Name, "error", err)
			return err
		}
		started = now()
		s.Log.Info("restarted", "process", s.Name, "restarts", n)
		if s.Restarted != nil {
			s.Restarted(n)
		}
	}
}
