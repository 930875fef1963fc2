package gateway_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestWasmCompileTime(t *testing.T) {
	const log = `[2026-12-07 14:12:53.977][9092][debug][config] [source/common/listener_manager/listener_manager_impl.cc:113]   config: {...}
[2026-12-07 14:12:54.139][9092][debug][wasm] [source/extensions/common/wasm/wasm.cc:83] Base Wasm created 1 now active
[2026-12-07 14:13:02.302][9092][debug][wasm] [source/extensions/common/wasm/wasm.cc:101] Thread-Local Wasm created 2 now active
[2026-12-07 14:13:02.315][9092][debug][wasm] [source/extensions/common/wasm/wasm.cc:101] Thread-Local Wasm created 2 now active
`
	for _, tt := range []struct {
		name string
		log  string
		want time.Duration
		ok   bool
	}{
		{"base to first clone", log, 8163 * time.Millisecond, true},
		{"no wasm", "[2026-12-07 14:12:53.977][9092][info][main] starting main dispatch loop\n", 0, false},
		{"clone before any base", "[2026-12-07 14:13:02.302][1][debug][wasm] Thread-Local Wasm created 2 now active\n", 0, false},
		{"cut log", "[2026-12-07 14:12:54.139][9092][debug][wasm] Base Wasm created 1 now active\n[2026-12", 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := wasmCompileTime(tt.log)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, d)
		})
	}
}
