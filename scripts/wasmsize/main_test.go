package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPackage(t *testing.T) {
	tests := []struct{ sym, want string }{
		{"runtime.mallocgc", "runtime"},
		{"encoding_json.__decodeState_.object", "encoding_json"},
		{"github.com_tollgate_tollgate_shared_config.Object", "github.com_tollgate_tollgate_shared_config"},
		{"github.com_tollgate_tollgate_filters_apikey_policy.__Config_.DecodeField", "github.com_tollgate_tollgate_filters_apikey_policy"},
		{"vendor_golang.org_x_net_dns_dnsmessage.Parser.Start", "vendor_golang.org_x_net_dns_dnsmessage"},
		{"type_.eq.foo", "type_"},
		{"nodots", "nodots"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Package(tt.sym), tt.sym)
	}
}

// module builds a minimal module: one imported function, two bodies (3
// and 5 bytes with their size prefix), and a name section naming them.
func module() []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 'a', 's', 'm', 1, 0, 0, 0})
	section := func(id byte, body []byte) {
		b.WriteByte(id)
		b.WriteByte(byte(len(body)))
		b.Write(body)
	}
	section(1, []byte{1, 0x60, 0, 0})                          // type: () -> ()
	section(2, []byte{1, 3, 'e', 'n', 'v', 1, 'f', 0, 0})      // import env.f
	section(3, []byte{2, 0, 0})                                // two functions of type 0
	section(10, []byte{2, 2, 0, 0x0b, 4, 0, 0x01, 0x01, 0x0b}) // bodies: 3 and 5 bytes
	names := []byte{1, 0, 2, 1, 5, 'a', '.', 'F', 'o', 'o', 2, 5, 'b', '.', 'B', 'a', 'r'}
	names[1] = byte(len(names) - 2)
	section(0, append([]byte{4, 'n', 'a', 'm', 'e'}, names...))
	return b.Bytes()
}

func TestParse(t *testing.T) {
	m, err := Parse(module())
	require.NoError(t, err)
	require.Len(t, m.Funcs, 2)
	assert.Equal(t, Func{Name: "a.Foo", Size: 3}, m.Funcs[0])
	assert.Equal(t, Func{Name: "b.Bar", Size: 5}, m.Funcs[1])
	assert.Equal(t, []Func{{Name: "b", Size: 5}, {Name: "a", Size: 3}}, m.Packages())
	var names []string
	total := 8
	for _, s := range m.Sections {
		names = append(names, s.Name)
		total += s.Size
	}
	assert.Equal(t, []string{"type", "import", "function", "code", "custom name"}, names)
	assert.Equal(t, m.Total, total, "sections account for every byte")

	_, err = Parse([]byte("not wasm"))
	assert.Error(t, err)
	truncated := module()
	_, err = Parse(truncated[:len(truncated)-3])
	assert.Error(t, err)
}

// FuzzParse: arbitrary bytes never panic the parser.
func FuzzParse(f *testing.F) {
	f.Add(module())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err == nil {
			m.Report(&bytes.Buffer{}, 5, 5)
		}
	})
}
