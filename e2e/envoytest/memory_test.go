package envoytest

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSmaps(t *testing.T) {
	f, err := os.Open("testdata/smaps.txt")
	require.NoError(t, err)
	defer f.Close()
	code, file, err := parseSmaps(f)
	require.NoError(t, err)
	assert.Equal(t, uint64(18842+4)<<10, code, "anonymous executable mappings: V8's code space (and the vDSO)")
	assert.Equal(t, uint64(16284+46182)<<10, file, "file-backed mappings: the binary")
}

func TestMemoryParseAdmin(t *testing.T) {
	for _, tt := range []struct {
		name, body, err string
		want            Memory
	}{
		{name: "envoy 1.40", body: `{"allocated":"63973920","heap_size":"119537664","pageheap_unmapped":"6291456","pageheap_free":"26165248","total_thread_cache":"18687160","total_physical_bytes":"116321086"}`,
			want: Memory{Allocated: 63973920, HeapSize: 119537664, PageheapUnmapped: 6291456, PageheapFree: 26165248, ThreadCache: 18687160}},
		{name: "not json", body: `<html>`, err: "/memory"},
		{name: "missing figure", body: `{"allocated":"1"}`, err: "/memory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var m Memory
			err := m.parseAdmin([]byte(tt.body))
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, m)
		})
	}
}

func TestMemoryOther(t *testing.T) {
	m := Memory{RSS: 200, File: 60, Code: 20, HeapSize: 110, PageheapUnmapped: 10}
	assert.Equal(t, uint64(20), m.Other(), "RSS less files, code and tcmalloc's mapped heap")
	assert.Zero(t, Memory{RSS: 10, File: 20}.Other(), "never negative")
}
