package proxywasm

import (
	"slices"
	"strings"
)

// The header cache saves host calls on a stream's header maps. Every host
// call that returns data costs two crossings (the call, and the host
// re-entering the module through proxy_on_memory_allocate), and filters
// read several headers per callback. So the first access to a map in a
// callback is one direct host call, as before; from the second on, the
// whole map is read once (proxy_get_header_map_pairs) and later reads are
// answered from that copy, removals of absent headers skip the host, and
// writes go to the host and are mirrored in the copy.
//
// Nothing but this module changes a map while one of its callbacks runs,
// so the copy is exact until the callback returns; it is dropped at every
// callback boundary (entry and return, nested ones included), when another
// context is made current, and around host calls that can run other filters
// or replace a map (continuing a stream, a local reply, a foreign function).

// cachedMaps are the stream maps the cache covers: request and response
// headers and trailers (MapType 0 to 3).
const cachedMaps = 4

// mapCache is one map's state within the current callback.
type mapCache struct {
	uses  int         // accesses through this package in this callback
	pairs [][2]string // the map, when loaded
	valid bool
}

// headerCache is the cache of every covered map for the current callback.
type headerCache struct {
	maps [cachedMaps]mapCache
	used bool // some map was accessed since the last reset
}

// reset drops every copy, keeping the slices' storage; it runs at every
// callback boundary, so it does nothing when no map was touched.
func (c *headerCache) reset() {
	if !c.used {
		return
	}
	c.used = false
	for i := range c.maps {
		clear(c.maps[i].pairs) // the strings are the host's answer: do not keep it alive
		c.maps[i] = mapCache{pairs: c.maps[i].pairs[:0]}
	}
}

// entry returns the cache of map m counting one access; nil for maps it
// does not cover.
func (c *headerCache) entry(m MapType) *mapCache {
	if uint32(m) >= cachedMaps {
		return nil
	}
	c.used = true
	e := &c.maps[m]
	e.uses++
	return e
}

// load reads the whole map into the copy on a map's second access. An
// empty answer is not cached: Envoy answers a map that is gone (request
// headers after they continued) with an empty map but a single get with an
// error, and callers keep seeing that error.
func (e *mapCache) load(m MapType) bool {
	if e.valid {
		return true
	}
	if e.uses < 2 {
		return false
	}
	pairs, err := getHeaderMapPairs(m)
	if err != nil || len(pairs) == 0 || len(pairs) >= maxCachedPairs {
		e.uses = -1 << 30 // do not retry in this callback
		return false
	}
	e.pairs, e.valid = pairs, true
	return true
}

// maxCachedPairs is Envoy's cap on a map it returns; a map that large may be
// truncated, so it is never served from a copy.
const maxCachedPairs = 1024

// lowerName is the key a host lookup uses: Envoy lower-cases header names.
func lowerName(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

// get answers a read from the copy: the first value, as Envoy does.
func (e *mapCache) get(name string) (string, bool) {
	name = lowerName(name)
	for _, kv := range e.pairs {
		if kv[0] == name {
			return kv[1], true
		}
	}
	return "", false
}

// has reports whether the copy holds name.
func (e *mapCache) has(name string) bool {
	_, ok := e.get(name)
	return ok
}

// remove mirrors a removal: every value of name goes.
func (e *mapCache) remove(name string) {
	name = lowerName(name)
	out := e.pairs[:0]
	for _, kv := range e.pairs {
		if kv[0] != name {
			out = append(out, kv)
		}
	}
	clear(e.pairs[len(out):])
	e.pairs = out
}

// replace mirrors a replacement: every value goes and one is added, as
// Envoy's setCopy does.
func (e *mapCache) replace(name, value string) {
	e.remove(name)
	e.add(name, value)
}

// add mirrors an added value: at the end, or a pseudo-header after the last
// pseudo-header.
func (e *mapCache) add(name, value string) {
	name = lowerName(name)
	if !strings.HasPrefix(name, ":") {
		e.pairs = append(e.pairs, [2]string{name, value})
		return
	}
	i := 0
	for i < len(e.pairs) && strings.HasPrefix(e.pairs[i][0], ":") {
		i++
	}
	e.pairs = slices.Insert(e.pairs, i, [2]string{name, value})
}

// set loads the copy from pairs the caller read.
func (e *mapCache) set(pairs [][2]string) {
	e.pairs = append(e.pairs[:0], pairs...)
}
