package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// section encodes one section with a one-byte size (contents < 128 bytes).
func section(id byte, contents ...byte) []byte {
	return append([]byte{id, byte(len(contents))}, contents...)
}

func module(sections ...[]byte) []byte {
	m := append([]byte(nil), wasmHeader...)
	for _, s := range sections {
		m = append(m, s...)
	}
	return m
}

func TestStrip(t *testing.T) {
	typeSec := section(1, 0x01, 0x60, 0x00, 0x00)
	custom := section(0, 0x03, 'a', 'b', 'c', 0xff)
	tests := []struct {
		name    string
		in      []byte
		want    []byte
		wantErr string
	}{
		{name: "empty module", in: module(), want: module()},
		{name: "no custom sections", in: module(typeSec), want: module(typeSec)},
		{name: "custom sections removed", in: module(custom, typeSec, custom), want: module(typeSec)},
		{name: "multi-byte size", in: module(append([]byte{0, 0x80, 0x01}, make([]byte, 128)...), typeSec), want: module(typeSec)},
		{name: "not wasm", in: []byte("hello world"), wantErr: "not a WebAssembly"},
		{name: "overrun", in: module([]byte{1, 10, 0}), wantErr: "overruns"},
		{name: "truncated size", in: module([]byte{1, 0x80}), wantErr: "truncated"},
		{name: "size too large", in: module([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x7f}), wantErr: "overflows"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Strip(tc.in)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestStripFileRewritesInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.wasm")
	typeSec := section(1, 0x01, 0x60, 0x00, 0x00)
	require.NoError(t, os.WriteFile(path, module(section(0, 0x01, 'x'), typeSec), 0o644))
	require.NoError(t, stripFile(path))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, module(typeSec), got)

	require.NoError(t, os.WriteFile(path, []byte("junk"), 0o644))
	assert.Error(t, stripFile(path))
}

func FuzzStrip(f *testing.F) {
	f.Add(module(section(0, 0x01, 'x'), section(1, 0x01, 0x60, 0x00, 0x00)))
	f.Add(module([]byte{1, 0x80}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Strip(in)
		if err != nil {
			return
		}
		// Stripping is idempotent and never grows the module.
		again, err := Strip(out)
		require.NoError(t, err)
		assert.Equal(t, out, again)
		assert.LessOrEqual(t, len(out), len(in))
	})
}
