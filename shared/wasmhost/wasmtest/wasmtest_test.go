package wasmtest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/wasmhost"
)

func TestBuild(t *testing.T) {
	for _, tc := range []struct {
		name, dir string
		flags     []string
		wantErr   string
	}{
		{name: "plain", dir: "../testdata/rawplugin"},
		{name: "stripped", dir: "../testdata/rawplugin", flags: []string{"-ldflags=-s -w"}},
		{name: "missing package", dir: "./testdata/does-not-exist", wantErr: "build ./testdata/does-not-exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Build(tc.dir, tc.flags...)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, []byte("\x00asm"), b[:4], "a Wasm binary")
		})
	}
}

func TestHostAndVM(t *testing.T) {
	mod, err := Build("../testdata/rawplugin")
	require.NoError(t, err)
	h := NewHost(t, wasmhost.Config{Module: mod, PluginName: "rawplug", RootID: "rawroot", VMID: "rawvm"})
	require.NotNil(t, NewVM(t, h))
}
