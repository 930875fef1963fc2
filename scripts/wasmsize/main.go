// Command wasmsize says what a Go WebAssembly module is made of: its
// sections, and the code bytes of each Go package (summed over the function
// bodies the name section attributes to it), largest first. It reads a module
// built without -ldflags=-s (the name section is needed): `make size` builds
// one and runs this on it. Usage: go run ./scripts/wasmsize [-n 40] FILE.wasm
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

func main() {
	top := flag.Int("n", 40, "how many packages to list")
	funcs := flag.Int("funcs", 0, "also list this many largest functions")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: wasmsize [-n 40] [-funcs 0] FILE.wasm")
		os.Exit(2)
	}
	data, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "wasmsize: %v\n", err)
		os.Exit(1)
	}
	m, err := Parse(data)
	if err != nil {
		fmt.Fprintf(os.Stderr, "wasmsize: %s: %v\n", flag.Arg(0), err)
		os.Exit(1)
	}
	m.Report(os.Stdout, *top, *funcs)
}

// Module is the size breakdown of one module.
type Module struct {
	Total    int
	Sections []Section
	Funcs    []Func // function bodies in the code section, named where the name section says
}

// Section is one section's id, name and size in bytes (header included).
type Section struct {
	ID   byte
	Name string
	Size int
}

// Func is one function body: its name and size in bytes.
type Func struct {
	Name string
	Size int
}

var sectionNames = [...]string{"custom", "type", "import", "function", "table", "memory", "global", "export", "start", "element", "code", "data", "datacount"}

// Parse reads the sections, the function imports count, the code bodies and
// the function names of a WebAssembly version 1 module.
func Parse(b []byte) (*Module, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" || b[4] != 1 {
		return nil, errors.New("not a WebAssembly version 1 module")
	}
	m := &Module{Total: len(b)}
	var imported int
	var bodies []int
	names := map[int]string{}
	r := &reader{b: b, off: 8}
	for r.off < len(b) {
		start := r.off
		id := r.byte()
		size := r.u32()
		body := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("section at byte %d: %w", start, r.err)
		}
		s := Section{ID: id, Size: r.off - start}
		if int(id) < len(sectionNames) {
			s.Name = sectionNames[id]
		}
		sr := &reader{b: body}
		switch id {
		case 0:
			s.Name = "custom " + sr.name()
			if s.Name == "custom name" {
				parseNames(sr, names)
			}
		case 2:
			for n := sr.u32(); n > 0 && sr.err == nil; n-- {
				sr.name()
				sr.name()
				switch kind := sr.byte(); kind {
				case 0:
					sr.u32()
					imported++
				case 1:
					sr.byte()
					sr.limits()
				case 2:
					sr.limits()
				case 3:
					sr.byte()
					sr.byte()
				}
			}
		case 10:
			for n := sr.u32(); n > 0 && sr.err == nil; n-- {
				bs := sr.off
				l := sr.u32()
				sr.bytes(int(l))
				bodies = append(bodies, sr.off-bs)
			}
		}
		if sr.err != nil {
			return nil, fmt.Errorf("%s section: %w", s.Name, sr.err)
		}
		m.Sections = append(m.Sections, s)
	}
	for i, size := range bodies {
		name, ok := names[imported+i]
		if !ok {
			name = fmt.Sprintf("func[%d]", imported+i)
		}
		m.Funcs = append(m.Funcs, Func{Name: name, Size: size})
	}
	return m, nil
}

// parseNames reads the function names subsection (id 1) of a name section.
func parseNames(r *reader, names map[int]string) {
	for r.off < len(r.b) && r.err == nil {
		id := r.byte()
		size := r.u32()
		sub := &reader{b: r.bytes(int(size))}
		if id != 1 {
			continue
		}
		for n := sub.u32(); n > 0 && sub.err == nil; n-- {
			idx := sub.u32()
			names[int(idx)] = sub.name()
		}
	}
}

// Package is the Go package a function belongs to. Go writes names into the
// name section with '/' and the punctuation of methods turned into '_'
// ("encoding_json.__decodeState_.object"), so the package is the name up to
// its first dot, past a leading domain ("github.com_owner_repo_pkg.F").
func Package(sym string) string {
	rest := sym
	skip := 0
	if i := strings.IndexByte(rest, '_'); i > 0 {
		if d := strings.IndexByte(rest[:i], '.'); d > 0 && domainTLD[rest[d+1:i]] {
			skip = i
		}
	}
	if strings.HasPrefix(rest, "vendor_") {
		if j := strings.IndexByte(rest[7:], '_'); j > 0 {
			if d := strings.IndexByte(rest[7:7+j], '.'); d > 0 && domainTLD[rest[7+d+1:7+j]] {
				skip = 7 + j
			}
		}
	}
	if dot := strings.IndexByte(rest[skip:], '.'); dot >= 0 {
		return rest[:skip+dot]
	}
	return sym
}

// domainTLD lists the top-level domains of module paths this repo links.
var domainTLD = map[string]bool{"com": true, "org": true, "net": true, "io": true, "in": true, "dev": true}

// Packages sums the code bytes per package, largest first.
func (m *Module) Packages() []Func {
	sums := map[string]int{}
	for _, f := range m.Funcs {
		sums[Package(f.Name)] += f.Size
	}
	out := make([]Func, 0, len(sums))
	for p, n := range sums {
		out = append(out, Func{Name: p, Size: n})
	}
	sortBySize(out)
	return out
}

func sortBySize(fs []Func) {
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].Size != fs[j].Size {
			return fs[i].Size > fs[j].Size
		}
		return fs[i].Name < fs[j].Name
	})
}

// Report prints the sections, the top packages by code size and, when
// funcs > 0, the largest functions.
func (m *Module) Report(w io.Writer, top, funcs int) {
	fmt.Fprintf(w, "module: %d bytes\n\nsections:\n", m.Total)
	for _, s := range m.Sections {
		fmt.Fprintf(w, "  %-24s %9d  %5.1f%%\n", s.Name, s.Size, pct(s.Size, m.Total))
	}
	code := 0
	for _, f := range m.Funcs {
		code += f.Size
	}
	pkgs := m.Packages()
	fmt.Fprintf(w, "\ncode by package (%d functions, %d bytes, %d packages):\n", len(m.Funcs), code, len(pkgs))
	for i, p := range pkgs {
		if i == top {
			rest := 0
			for _, q := range pkgs[i:] {
				rest += q.Size
			}
			fmt.Fprintf(w, "  %-56s %9d  %5.1f%%\n", fmt.Sprintf("(%d more)", len(pkgs)-i), rest, pct(rest, code))
			break
		}
		fmt.Fprintf(w, "  %-56s %9d  %5.1f%%\n", p.Name, p.Size, pct(p.Size, code))
	}
	if funcs > 0 {
		fs := append([]Func(nil), m.Funcs...)
		sortBySize(fs)
		fmt.Fprintf(w, "\nlargest functions:\n")
		for i := 0; i < funcs && i < len(fs); i++ {
			fmt.Fprintf(w, "  %-72s %9d\n", fs[i].Name, fs[i].Size)
		}
	}
}

func pct(n, total int) float64 {
	if total == 0 {
		return 0
	}
	return 100 * float64(n) / float64(total)
}

// reader walks a byte slice; the first error sticks and zero values follow.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("%s at byte %d", msg, r.off)
	}
	r.off = len(r.b)
}

func (r *reader) byte() byte {
	if r.off >= len(r.b) {
		r.fail("truncated")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) u32() uint32 {
	var v uint32
	for i := 0; i < 5; i++ {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v
		}
	}
	r.fail("LEB128 longer than 5 bytes")
	return 0
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || n > len(r.b)-r.off {
		r.fail("length overruns")
		return nil
	}
	out := r.b[r.off : r.off+n]
	r.off += n
	return out
}

func (r *reader) name() string { return string(r.bytes(int(r.u32()))) }

func (r *reader) limits() {
	if r.byte() == 1 {
		r.u32()
	}
	r.u32()
}
