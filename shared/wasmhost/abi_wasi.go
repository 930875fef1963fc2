package wasmhost

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// WASI errno values used by proxy-wasm-cpp-host.
const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoNotdir  = 20
	errnoFault   = 21
	errnoInval   = 28
	errnoNoent   = 44
	errnoNosys   = 52
	errnoNotsup  = 58
)

// maxRandomGet is PROXY_WASM_HOST_WASI_RANDOM_GET_MAX_SIZE_BYTES.
const maxRandomGet = 64 * 1024

func wasiErr(ok bool) uint64 {
	if ok {
		return errnoSuccess
	}
	return errnoFault
}

// wasiFunctions is exactly the WASI surface proxy-wasm-cpp-host registers
// (FOR_ALL_WASI_FUNCTIONS, after proxy-wasm-cpp-host#533), with its answers:
// only stdout/stderr exist, there is no file system, no arguments, the
// environment is Config.Env (vm_config.environment_variables), and
// poll_oneoff reports success with 0 events.
func wasiFunctions() []hostFunc {
	notsup := func(vm *VM, s []uint64) { s[0] = errnoNotsup }
	stdOnly := func(vm *VM, s []uint64) {
		if fd := u32(s[0]); fd != 1 && fd != 2 {
			s[0] = errnoBadf
			return
		}
		s[0] = errnoSuccess
	}
	return []hostFunc{
		{"fd_write", p(i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			n, errno := vm.writev(u32(s[0]), u32(s[1]), u32(s[2]))
			if errno != errnoSuccess {
				s[0] = uint64(errno)
				return
			}
			s[0] = wasiErr(vm.writeU32(u32(s[3]), n))
		}},
		{"fd_pwrite", p(i32, i32, i32, i64, i32), r32, func(vm *VM, s []uint64) {
			if fd := u32(s[0]); fd != 1 && fd != 2 {
				s[0] = errnoBadf
				return
			}
			n, errno := vm.writev(u32(s[0]), u32(s[1]), u32(s[2]))
			if errno != errnoSuccess {
				s[0] = uint64(errno)
				return
			}
			s[0] = wasiErr(vm.writeU32(u32(s[4]), n))
		}},
		{"fd_read", p(i32, i32, i32, i32), r32, func(vm *VM, s []uint64) { s[0] = errnoNosys }},
		{"fd_pread", p(i32, i32, i32, i64, i32), r32, func(vm *VM, s []uint64) { s[0] = errnoNosys }},
		{"fd_seek", p(i32, i64, i32, i32), r32, func(vm *VM, s []uint64) {
			vm.logf(LogTrace, vm.ctxOrEffective().id, "wasi_unstable fd_seek")
			s[0] = errnoSuccess
		}},
		{"fd_close", p(i32), r32, func(vm *VM, s []uint64) {
			vm.logf(LogTrace, vm.ctxOrEffective().id, "wasi_unstable fd_close")
			s[0] = errnoSuccess
		}},
		{"fd_fdstat_get", p(i32, i32), r32, func(vm *VM, s []uint64) {
			if fd := u32(s[0]); fd != 1 && fd != 2 {
				s[0] = errnoBadf
				return
			}
			var stat [24]byte
			binary.LittleEndian.PutUint64(stat[8:], 64) // fs_rights_base = FD_WRITE
			vm.mem.Write(u32(s[1]), stat[:])
			s[0] = errnoSuccess
		}},
		{"fd_fdstat_set_flags", p(i32, i32), r32, func(vm *VM, s []uint64) { s[0] = errnoNosys }},
		{"fd_fdstat_set_rights", p(i32, i64, i64), r32, stdOnly},
		{"fd_advise", p(i32, i64, i64, i32), r32, func(vm *VM, s []uint64) { s[0] = errnoSuccess }},
		{"fd_allocate", p(i32, i64, i64), r32, stdOnly},
		{"fd_datasync", p(i32), r32, stdOnly},
		{"fd_sync", p(i32), r32, stdOnly},
		{"fd_filestat_get", p(i32, i32), r32, func(vm *VM, s []uint64) { s[0] = errnoBadf }},
		{"fd_filestat_set_size", p(i32, i64), r32, stdOnly},
		{"fd_filestat_set_times", p(i32, i64, i64, i32), r32, stdOnly},
		{"fd_prestat_get", p(i32, i32), r32, func(vm *VM, s []uint64) { s[0] = errnoBadf }},
		{"fd_prestat_dir_name", p(i32, i32, i32), r32, func(vm *VM, s []uint64) { s[0] = errnoNosys }},
		{"fd_readdir", p(i32, i32, i32, i64, i32), r32, func(vm *VM, s []uint64) {
			if !vm.writeU32(u32(s[4]), 0) {
				s[0] = errnoFault
				return
			}
			s[0] = errnoNotdir
		}},
		{"fd_renumber", p(i32, i32), r32, func(vm *VM, s []uint64) {
			fd, to := u32(s[0]), u32(s[1])
			if (fd != 1 && fd != 2) || (to != 1 && to != 2) {
				s[0] = errnoBadf
				return
			}
			s[0] = errnoNotsup
		}},
		{"fd_tell", p(i32, i32), r32, func(vm *VM, s []uint64) {
			if fd := u32(s[0]); fd != 1 && fd != 2 {
				s[0] = errnoBadf
				return
			}
			s[0] = wasiErr(vm.writeU64(u32(s[1]), 0))
		}},
		{"path_open", p(i32, i32, i32, i32, i32, i64, i64, i32, i32), r32, func(vm *VM, s []uint64) { s[0] = errnoNoent }},
		{"path_filestat_get", p(i32, i32, i32, i32, i32), r32, notsup},
		{"path_create_directory", p(i32, i32, i32), r32, notsup},
		{"path_filestat_set_times", p(i32, i32, i32, i32, i64, i64, i32), r32, notsup},
		{"path_link", p(i32, i32, i32, i32, i32, i32, i32), r32, notsup},
		{"path_readlink", p(i32, i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			if !vm.writeU32(u32(s[5]), 0) {
				s[0] = errnoFault
				return
			}
			s[0] = errnoNotsup
		}},
		{"path_remove_directory", p(i32, i32, i32), r32, notsup},
		{"path_rename", p(i32, i32, i32, i32, i32, i32), r32, notsup},
		{"path_symlink", p(i32, i32, i32, i32, i32), r32, notsup},
		{"path_unlink_file", p(i32, i32, i32), r32, notsup},
		{"sock_accept", p(i32, i32, i32), r32, func(vm *VM, s []uint64) {
			if !vm.writeU32(u32(s[2]), 0) {
				s[0] = errnoFault
				return
			}
			s[0] = errnoNotsup
		}},
		{"sock_recv", p(i32, i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			if !vm.writeU32(u32(s[4]), 0) || !vm.mem.WriteUint16Le(u32(s[5]), 0) {
				s[0] = errnoFault
				return
			}
			s[0] = errnoNotsup
		}},
		{"sock_send", p(i32, i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			if !vm.writeU32(u32(s[4]), 0) {
				s[0] = errnoFault
				return
			}
			s[0] = errnoNotsup
		}},
		{"sock_shutdown", p(i32, i32), r32, notsup},
		{"environ_get", p(i32, i32), r32, func(vm *VM, s []uint64) {
			ptrs, buf, ok := u32(s[0]), u32(s[1]), true
			for i, kv := range vm.host.cfg.Env {
				ok = ok && vm.writeU32(ptrs+uint32(i)*4, buf) && vm.mem.Write(buf, append([]byte(kv), 0))
				buf += uint32(len(kv)) + 1
			}
			s[0] = wasiErr(ok)
		}},
		{"environ_sizes_get", p(i32, i32), r32, func(vm *VM, s []uint64) {
			size := 0
			for _, kv := range vm.host.cfg.Env {
				size += len(kv) + 1
			}
			s[0] = wasiErr(vm.writeU32(u32(s[0]), uint32(len(vm.host.cfg.Env))) && vm.writeU32(u32(s[1]), uint32(size)))
		}},
		{"args_get", p(i32, i32), r32, func(vm *VM, s []uint64) { s[0] = errnoSuccess }},
		{"args_sizes_get", p(i32, i32), r32, func(vm *VM, s []uint64) {
			s[0] = wasiErr(vm.writeU32(u32(s[0]), 0) && vm.writeU32(u32(s[1]), 0))
		}},
		{"clock_time_get", p(i32, i64, i32), r32, func(vm *VM, s []uint64) {
			var t uint64
			switch u32(s[0]) {
			case 0:
				t = uint64(vm.host.cfg.Now().UnixNano())
			case 1:
				t = uint64(time.Since(vm.host.monoStart)) + 1
			default:
				s[0] = errnoNotsup
				return
			}
			s[0] = wasiErr(vm.writeU64(u32(s[2]), t))
		}},
		{"clock_res_get", p(i32, i32), r32, func(vm *VM, s []uint64) {
			if id := u32(s[0]); id != 0 && id != 1 {
				s[0] = errnoNotsup
				return
			}
			s[0] = wasiErr(vm.writeU64(u32(s[1]), 1))
		}},
		{"random_get", p(i32, i32), r32, func(vm *VM, s []uint64) {
			n := u32(s[1])
			if n > maxRandomGet {
				s[0] = errnoInval
				return
			}
			if n == 0 {
				s[0] = errnoSuccess
				return
			}
			buf := make([]byte, n)
			_, _ = rand.Read(buf)
			s[0] = wasiErr(vm.mem.Write(u32(s[0]), buf))
		}},
		{"sched_yield", nil, r32, func(vm *VM, s []uint64) { s[0] = errnoSuccess }},
		{"poll_oneoff", p(i32, i32, i32, i32), r32, func(vm *VM, s []uint64) {
			s[0] = wasiErr(vm.writeU32(u32(s[3]), 0))
		}},
		{"proc_exit", p(i32), nil, func(vm *VM, s []uint64) {
			// Envoy only logs (at trace) and returns to the guest.
			vm.logf(LogTrace, vm.ctxOrEffective().id, "wasi_unstable proc_exit")
		}},
	}
}

// writev implements fd_write's stdout (info) / stderr (error) logging with
// one trailing newline removed, as proxy-wasm-cpp-host's writevImpl does.
func (vm *VM) writev(fd, iovs, n uint32) (uint32, uint32) {
	var level LogLevel
	switch fd {
	case 1:
		level = LogInfo
	case 2:
		level = LogError
	default:
		return 0, errnoBadf
	}
	var msg []byte
	for i := uint32(0); i < n; i++ {
		iov, ok := vm.read(iovs+i*8, 8)
		if !ok {
			return 0, errnoFault
		}
		buf, blen := binary.LittleEndian.Uint32(iov), binary.LittleEndian.Uint32(iov[4:])
		if blen == 0 {
			continue
		}
		b, ok := vm.read(buf, blen)
		if !ok {
			return 0, errnoFault
		}
		msg = append(msg, b...)
	}
	written := uint32(len(msg))
	if written > 0 {
		if msg[len(msg)-1] == '\n' {
			msg = msg[:len(msg)-1]
		}
		vm.logf(level, vm.ctxOrEffective().id, "%s", msg)
	}
	return written, errnoSuccess
}
