package envoytest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CPUTime is the CPU time every thread of the Envoy process has used so
// far (Linux: the sum of /proc/<pid>/task/*/schedstat). Read before and
// after a run of requests, it gives Envoy's CPU per request, which a busy
// machine inflates far less than latency.
func (e *Envoy) CPUTime() (time.Duration, error) {
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	if p == nil {
		return 0, errors.New("envoytest: envoy not started")
	}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", p.cmd.Process.Pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("envoytest: no schedstat for pid %d: %v", p.cmd.Process.Pid, err)
	}
	var total time.Duration
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // a thread that just exited
		}
		field, _, _ := strings.Cut(string(b), " ")
		ns, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("envoytest: %s: %w", f, err)
		}
		total += time.Duration(ns)
	}
	return total, nil
}
