package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// pickerServers is how many simulated vLLM servers --picker starts.
const pickerServers = 3

// startSims starts the simulated vLLM servers of --picker, one supervised
// `tollgate mock-llm --sim` each on consecutive ports from --mock's (or each
// on a free port when that port is 0), and returns their addresses. A server
// that dies is restarted on the address it had, so the pool stays right.
func startSims(ctx context.Context, o options, runDir string,
	launch func(name string, restart bool, report chan<- *proc, args ...string) (*proc, error),
	supervise func(p *proc, args ...string)) ([]string, error) {
	host, portStr, err := net.SplitHostPort(o.mock)
	if err != nil {
		return nil, fmt.Errorf("--mock %q: %w", o.mock, err)
	}
	first, err := strconv.Atoi(portStr)
	if err != nil || first < 0 || first+pickerServers-1 > 65535 {
		return nil, fmt.Errorf("--mock %q: bad port", o.mock)
	}
	var addrs []string
	for i := 0; i < pickerServers; i++ {
		port := 0
		if first != 0 {
			port = first + i
		}
		name := fmt.Sprintf("sim-%d", i+1)
		ready := filepath.Join(runDir, name+".ready")
		_ = os.Remove(ready)
		args := func(addr string) []string {
			return []string{o.tollgate, "mock-llm", "--sim", "--listen", addr, "--ready-file", ready}
		}
		p, err := launch(name, false, nil, args(net.JoinHostPort(host, strconv.Itoa(port)))...)
		if err != nil {
			return nil, err
		}
		if err := waitFile(ctx, p, ready); err != nil {
			p.stop(p.log)
			return nil, err
		}
		addr, err := readyAddr(ready)
		if err != nil {
			p.stop(p.log)
			return nil, err
		}
		supervise(p, args(addr)...)
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

// readyAddr reads the data address a ready file publishes.
func readyAddr(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	var r struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || r.Data == "" {
		return "", fmt.Errorf("%s: no address in %q", path, raw)
	}
	return r.Data, nil
}
