package wasmhost

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPairsRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		pairs []Pair
	}{
		{"empty", []Pair{}},
		{"one", []Pair{{":path", "/a"}}},
		{"repeated and empty values", []Pair{{"x-a", "1"}, {"x-a", ""}, {"", "v"}}},
		{"binary", []Pair{{"k", "a\x01b\xffc"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := EncodePairs(tt.pairs)
			assert.Equal(t, pairsSize(tt.pairs), len(b))
			got, err := DecodePairs(b)
			require.NoError(t, err)
			assert.Equal(t, tt.pairs, got)
		})
	}
}

func TestPairsWireFormat(t *testing.T) {
	b := EncodePairs([]Pair{{"ab", "c"}})
	want := []byte{1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 'a', 'b', 0, 'c', 0}
	assert.Equal(t, want, b)
}

func TestDecodePairsRejects(t *testing.T) {
	valid := EncodePairs([]Pair{{"k", "v"}})
	tooMany := make([]byte, 4)
	binary.LittleEndian.PutUint32(tooMany, maxPairsCount+1)
	tests := []struct {
		name string
		in   []byte
	}{
		{"short count", []byte{1, 0}},
		{"too many pairs", tooMany},
		{"missing sizes", []byte{1, 0, 0, 0}},
		{"no terminator", func() []byte { b := append([]byte(nil), valid...); b[len(b)-1] = 'x'; return b }()},
		{"trailing bytes", append(append([]byte(nil), valid...), 0)},
		{"truncated", valid[:len(valid)-1]},
		{"too large", make([]byte, maxPairsBytes+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodePairs(tt.in)
			assert.ErrorIs(t, err, errPairs)
		})
	}
}

func FuzzDecodePairs(f *testing.F) {
	f.Add(EncodePairs([]Pair{{"k", "v"}, {":path", "/"}}))
	f.Add([]byte{})
	f.Add([]byte{255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		pairs, err := DecodePairs(b)
		if err != nil {
			return
		}
		// Anything accepted must re-encode to the same bytes.
		assert.Equal(t, b, EncodePairs(pairs))
	})
}

func TestHeaderMapEnvoySemantics(t *testing.T) {
	tests := []struct {
		name string
		op   func(m *HeaderMap)
		want string
	}{
		{"keys are lower-cased", func(m *HeaderMap) { m.Add("X-Up", "1") }, ":path=/;x-a=1;x-b=2;x-a=3;x-up=1;"},
		{"replace removes all and appends", func(m *HeaderMap) { m.Set("x-a", "R") }, ":path=/;x-b=2;x-a=R;"},
		{"pseudo header stays in front", func(m *HeaderMap) { m.Add(":zz", "P") }, ":path=/;:zz=P;x-a=1;x-b=2;x-a=3;"},
		{"remove missing is a no-op", func(m *HeaderMap) { m.Remove("nope") }, ":path=/;x-a=1;x-b=2;x-a=3;"},
		{"host aliases authority", func(m *HeaderMap) { m.Set("Host", "h") }, ":path=/;:authority=h;x-a=1;x-b=2;x-a=3;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newRequestHeaderMap(Pair{":path", "/"}, Pair{"x-a", "1"}, Pair{"x-b", "2"}, Pair{"x-a", "3"})
			tt.op(m)
			assert.Equal(t, tt.want, m.String())
		})
	}
	m := NewHeaderMap(Pair{"x-a", "1"}, Pair{"x-a", "2"})
	v, ok := m.Get("X-A")
	assert.True(t, ok)
	assert.Equal(t, "1", v, "repeated header: first value")
	assert.Equal(t, []string{"1", "2"}, m.Values("x-a"))
	assert.Equal(t, 8, m.ByteSize())
}
