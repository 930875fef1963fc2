package keystoretest

import "syscall"

// childAttr kills the keystore when the test binary dies, so no keystore
// outlives a killed test or benchmark.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
