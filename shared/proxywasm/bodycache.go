package proxywasm

// The body cache saves host calls on a stream's body buffers within one
// callback. Reading a body is two crossings (proxy_get_buffer_bytes, and the
// host re-entering the module through proxy_on_memory_allocate), and its
// size one more (proxy_get_buffer_status); in a fused chain several links
// read the same buffer in the same callback (modelroute and tokencount the
// request body, and each frame of a streamed answer). So this module keeps
// what it learnt of the buffer the current callback is about: its size,
// from the chain's callback argument or a status read, and its bytes once
// read to the end. Later reads are answered from that copy (each reader
// gets its own copy of the bytes, as from the host), and whole-buffer
// replacements update it; any other write forgets it.
//
// Like the header cache it is exact because nothing but this module changes
// the buffer while one of its callbacks runs, and it is dropped at the same
// points: every callback boundary, another context made current, and host
// calls that can run other filters (continue, local reply, foreign
// function).

// bodyCache is what is known of one body buffer of one stream in the
// current callback.
type bodyCache struct {
	ctx    uint32     // the stream; 0 when nothing is known
	buf    BufferType // which buffer
	size   uint32     // the buffer's length, when sized
	sized  bool
	base   uint32 // data is buffer[base:size], when cached
	data   []byte
	cached bool
}

// reset forgets the buffer.
func (c *bodyCache) reset() { *c = bodyCache{} }

// of reports whether the cache is about buffer t of the current stream.
func (c *bodyCache) of(t BufferType) bool { return c.ctx != 0 && c.ctx == vm.current && c.buf == t }

// know records buffer t's length, from a status read or the chain's count;
// what was cached of another buffer or a different length is forgotten.
func (c *bodyCache) know(t BufferType, size uint32) {
	if vm.current == 0 {
		return
	}
	if !c.of(t) || c.sized && c.size != size {
		*c = bodyCache{ctx: vm.current, buf: t}
	}
	c.size, c.sized = size, true
}

// get answers a read of [start, start+max) of buffer t from the copy.
func (c *bodyCache) get(t BufferType, start, max uint32) ([]byte, bool) {
	if !c.of(t) || !c.cached || start < c.base || start > c.size {
		return nil, false
	}
	from := start - c.base
	to := uint32(len(c.data))
	if max < to-from {
		to = from + max
	}
	if from == to {
		return nil, false // what the host says of an empty read stays its own
	}
	return append([]byte(nil), c.data[from:to]...), true
}

// read records what the host answered to a read of [start, start+max) of
// buffer t: a short answer, or one reaching the known size, is the rest of
// the buffer from start. b is kept as it is: the first reader owns it, and
// later readers get copies.
func (c *bodyCache) read(t BufferType, start, max uint32, b []byte) {
	if vm.current == 0 {
		return
	}
	n := uint32(len(b))
	end := start + n
	if n < max {
		c.know(t, end)
	} else if !c.of(t) || !c.sized || c.size != end {
		return
	}
	c.base, c.data, c.cached = start, b, true
}

// replaced records that buffer t now holds exactly data.
func (c *bodyCache) replaced(t BufferType, data []byte) {
	if vm.current == 0 {
		return
	}
	*c = bodyCache{ctx: vm.current, buf: t, size: uint32(len(data)), sized: true, data: append([]byte(nil), data...), cached: true}
}
