//go:build !linux

package gateway_test

import "syscall"

// childAttr has no parent-death signal outside Linux.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
