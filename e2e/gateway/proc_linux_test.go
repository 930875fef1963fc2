package gateway_test

import "syscall"

// childAttr kills a child process when the test binary dies, so no keystore
// outlives a killed benchmark.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
