//go:build wasip1

package main

import "unsafe"

// Direct WASI imports, to observe exactly what the host answers.

//go:wasmimport wasi_snapshot_preview1 fd_read
func wasiFdRead(fd uint32, iovs unsafe.Pointer, n uint32, nread unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 fd_seek
func wasiFdSeek(fd uint32, off int64, whence uint32, newoff unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 fd_close
func wasiFdClose(fd uint32) uint32

//go:wasmimport wasi_snapshot_preview1 fd_tell
func wasiFdTell(fd uint32, out unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 sched_yield
func wasiSchedYield() uint32

//go:wasmimport wasi_snapshot_preview1 poll_oneoff
func wasiPollOneoff(in, out unsafe.Pointer, n uint32, nevents unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 random_get
func wasiRandomGet(buf unsafe.Pointer, n uint32) uint32

//go:wasmimport wasi_snapshot_preview1 clock_res_get
func wasiClockResGet(id uint32, out unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 clock_time_get
func wasiClockTimeGet(id uint32, precision uint64, out unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 sock_accept
func wasiSockAccept(fd, flags uint32, out unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 fd_write
func wasiFdWrite(fd uint32, iovs unsafe.Pointer, n uint32, nwritten unsafe.Pointer) uint32

func wasiProbe() {
	var n, n2 uint32
	var off uint64 = 77
	buf := make([]byte, 70000)
	iov := [2]uint32{uint32(uintptr(unsafe.Pointer(&buf[0]))), 8}
	var sub [48]byte
	var ev [32]byte
	var res uint64
	var tm uint64
	logf("wasi fd_read=%d", wasiFdRead(0, unsafe.Pointer(&iov), 1, unsafe.Pointer(&n)))
	logf("wasi fd_seek=%d off=%d", wasiFdSeek(1, 5, 0, unsafe.Pointer(&off)), off)
	logf("wasi fd_close=%d", wasiFdClose(1))
	off = 77
	logf("wasi fd_tell=%d off=%d fd_tell3=%d", wasiFdTell(1, unsafe.Pointer(&off)), off, wasiFdTell(3, unsafe.Pointer(&off)))
	logf("wasi sched_yield=%d", wasiSchedYield())
	n = 99
	logf("wasi poll_oneoff=%d nevents=%d", wasiPollOneoff(unsafe.Pointer(&sub), unsafe.Pointer(&ev), 1, unsafe.Pointer(&n)), n)
	logf("wasi random_get_big=%d random_get_64k=%d random_get_0=%d", wasiRandomGet(unsafe.Pointer(&buf[0]), 65537), wasiRandomGet(unsafe.Pointer(&buf[0]), 65536), wasiRandomGet(unsafe.Pointer(&buf[0]), 0))
	logf("wasi clock_res_get0=%d res=%d clock_res_get2=%d", wasiClockResGet(0, unsafe.Pointer(&res)), res, wasiClockResGet(2, unsafe.Pointer(&res)))
	logf("wasi clock_time_get2=%d clock_time_get0=%d nonzero=%t", wasiClockTimeGet(2, 0, unsafe.Pointer(&tm)), wasiClockTimeGet(0, 0, unsafe.Pointer(&tm)), tm > 0)
	logf("wasi sock_accept=%d", wasiSockAccept(3, 0, unsafe.Pointer(&n)))
	msg := []byte("to-stdout\n")
	iov2 := [2]uint32{uint32(uintptr(unsafe.Pointer(&msg[0]))), uint32(len(msg))}
	logf("wasi fd_write1=%d n=%d fd_write3=%d", wasiFdWrite(1, unsafe.Pointer(&iov2), 1, unsafe.Pointer(&n2)), n2, wasiFdWrite(3, unsafe.Pointer(&iov2), 1, unsafe.Pointer(&n2)))
}
