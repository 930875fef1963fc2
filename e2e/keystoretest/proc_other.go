//go:build !linux

package keystoretest

import "syscall"

// childAttr has no parent-death signal outside Linux.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
