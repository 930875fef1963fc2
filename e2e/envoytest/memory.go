package envoytest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Memory is where an Envoy's resident memory goes, for memory benchmarks
// that must tell the allocator's free pages from live data and from V8's
// compiled code: tcmalloc's own figures (the admin /memory endpoint) and
// the process's resident mappings (/proc/<pid>/smaps). All sizes in bytes.
type Memory struct {
	// RSS is the process's resident set (VmRSS).
	RSS uint64
	// Allocated is what Envoy (and V8, which allocates through it) holds
	// live in tcmalloc.
	Allocated uint64
	// HeapSize is what tcmalloc has reserved from the system.
	HeapSize uint64
	// PageheapFree is tcmalloc's free, still-mapped memory: resident but
	// holding nothing, until released to the system.
	PageheapFree uint64
	// PageheapUnmapped is free memory tcmalloc has released already.
	PageheapUnmapped uint64
	// ThreadCache is free memory in tcmalloc's per-CPU and per-thread caches.
	ThreadCache uint64
	// Code is resident anonymous executable memory: V8's code space, where
	// the Wasm modules' compiled machine code lives.
	Code uint64
	// File is resident file-backed memory: the Envoy binary and libraries.
	File uint64
}

// Other is resident memory neither tcmalloc's nor V8's code nor a file:
// the Wasm VMs' linear memories, V8's own heaps, thread stacks.
func (m Memory) Other() uint64 {
	used := m.File + m.Code + (m.HeapSize - m.PageheapUnmapped)
	if used > m.RSS {
		return 0
	}
	return m.RSS - used
}

// Memory reads the running Envoy's memory figures (Linux only: smaps).
func (e *Envoy) Memory() (Memory, error) {
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	if p == nil {
		return Memory{}, errors.New("envoytest: envoy not started")
	}
	var m Memory
	rss, err := e.RSS()
	if err != nil {
		return m, err
	}
	m.RSS = rss
	body, err := e.AdminGet("/memory")
	if err != nil {
		return m, err
	}
	if err := m.parseAdmin([]byte(body)); err != nil {
		return m, err
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", p.cmd.Process.Pid))
	if err != nil {
		return m, fmt.Errorf("envoytest: smaps: %w", err)
	}
	defer f.Close()
	m.Code, m.File, err = parseSmaps(f)
	return m, err
}

// parseAdmin reads Envoy's /memory answer (numbers as JSON strings).
func (m *Memory) parseAdmin(body []byte) error {
	var raw struct {
		Allocated        string `json:"allocated"`
		HeapSize         string `json:"heap_size"`
		PageheapUnmapped string `json:"pageheap_unmapped"`
		PageheapFree     string `json:"pageheap_free"`
		TotalThreadCache string `json:"total_thread_cache"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return fmt.Errorf("envoytest: /memory: %w", err)
	}
	for _, f := range []struct {
		dst *uint64
		s   string
	}{
		{&m.Allocated, raw.Allocated}, {&m.HeapSize, raw.HeapSize}, {&m.PageheapUnmapped, raw.PageheapUnmapped},
		{&m.PageheapFree, raw.PageheapFree}, {&m.ThreadCache, raw.TotalThreadCache},
	} {
		v, err := strconv.ParseUint(f.s, 10, 64)
		if err != nil {
			return fmt.Errorf("envoytest: /memory %q: %w", body, err)
		}
		*f.dst = v
	}
	return nil
}

// parseSmaps sums the resident bytes of anonymous executable mappings
// (code) and of file-backed mappings (file) in a /proc/<pid>/smaps listing.
func parseSmaps(r io.Reader) (code, file uint64, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var exec, named bool
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if strings.Contains(fields[0], "-") && len(fields) >= 5 {
			// A mapping's header: range perms offset dev inode [path].
			exec = strings.Contains(fields[1], "x")
			named = len(fields) >= 6 && strings.HasPrefix(fields[5], "/")
			continue
		}
		if fields[0] != "Rss:" || len(fields) < 2 {
			continue
		}
		kb, perr := strconv.ParseUint(fields[1], 10, 64)
		if perr != nil {
			return 0, 0, fmt.Errorf("envoytest: smaps Rss %q: %w", sc.Text(), perr)
		}
		switch {
		case named:
			file += kb << 10
		case exec:
			code += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("envoytest: smaps: %w", err)
	}
	return code, file, nil
}
