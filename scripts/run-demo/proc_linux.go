package main

import "syscall"

// sysProcAttr puts a child in its own process group and has the kernel
// kill it if run-demo dies without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
