package proxywasm

import "time"

// Now is the time of the current callback: read from the host once per
// callback and reused, because each time.Now in a Go Wasm module is two
// host calls (wall and monotonic clocks). A callback takes microseconds, so
// every decision it makes may share one instant; outside callbacks (tests,
// init) it is time.Now.
func Now() time.Time {
	if vm.depth == 0 {
		return time.Now()
	}
	if !vm.nowSet {
		vm.now, vm.nowSet = time.Now(), true
	}
	return vm.now
}
