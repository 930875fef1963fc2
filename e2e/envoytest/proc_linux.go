package envoytest

import "syscall"

// sysProcAttr kills Envoy when the test process dies, so no Envoy outlives a
// crashed or killed test binary.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
