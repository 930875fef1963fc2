// Command wasmstrip removes the custom sections (go:buildid, producers, name,
// debug info) from WebAssembly modules in place, so build/*.wasm carries only
// what Envoy executes. Usage: go run ./scripts/wasmstrip build/*.wasm
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
)

// wasmHeader is the magic number and version 1 every core module starts with.
var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: wasmstrip FILE.wasm...")
		os.Exit(2)
	}
	for _, path := range os.Args[1:] {
		if err := stripFile(path); err != nil {
			fmt.Fprintf(os.Stderr, "wasmstrip: %v\n", err)
			os.Exit(1)
		}
	}
}

func stripFile(path string) error {
	in, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	out, err := Strip(in)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == len(in) {
		return nil
	}
	tmp := path + ".strip"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	return nil
}

// Strip returns module without its custom sections (section id 0). The other
// sections are copied byte for byte; a malformed module is an error.
func Strip(module []byte) ([]byte, error) {
	if !bytes.HasPrefix(module, wasmHeader) {
		return nil, errors.New("not a WebAssembly version 1 module")
	}
	out := make([]byte, 0, len(module))
	out = append(out, wasmHeader...)
	rest := module[len(wasmHeader):]
	for len(rest) > 0 {
		id := rest[0]
		size, n, err := uleb32(rest[1:])
		if err != nil {
			return nil, fmt.Errorf("section %d size: %w", id, err)
		}
		end := 1 + n + int(size)
		if end > len(rest) || end < 0 {
			return nil, fmt.Errorf("section %d: size %d overruns the module", id, size)
		}
		if id != 0 {
			out = append(out, rest[:end]...)
		}
		rest = rest[end:]
	}
	return out, nil
}

// uleb32 decodes an unsigned LEB128 number of at most 32 bits and returns it
// with the number of bytes read.
func uleb32(b []byte) (uint32, int, error) {
	var v uint32
	for i := 0; i < 5; i++ {
		if i >= len(b) {
			return 0, 0, errors.New("truncated LEB128")
		}
		c := b[i]
		if i == 4 && c > 0x0f {
			return 0, 0, errors.New("LEB128 overflows 32 bits")
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errors.New("LEB128 longer than 5 bytes")
}
