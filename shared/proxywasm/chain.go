package proxywasm

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/reqview"
)

// Link is one filter of a chain: the section of the chain's configuration
// that configures it, its root-context constructor, and the one
// PluginConfig option that changes how Envoy drives a filter.
type Link struct {
	// Name is the configuration section of this filter.
	Name string
	// New constructs the filter's root context.
	New func(rootContextID uint32) PluginContext
	// AllowOnHeadersStopIteration is the PluginConfig option the filter
	// needs alone: with it, body callbacks reach the filter while its
	// headers callback holds the request (it reads the body before
	// deciding); without it, a paused headers callback holds the body too
	// until the filter resumes (Envoy's StopAllIteration).
	AllowOnHeadersStopIteration bool
}

// NewChain returns the constructor of one root context that runs several
// filters in order inside one Envoy filter, as Envoy's own filter chain
// would run them, so that each callback crosses into the VM once instead of
// once per filter. Its configuration is one JSON object whose members are
// the links' sections (each a JSON object, passed to that filter's
// OnPluginStart); a link without a section is left out, an unknown section
// is refused. The chain's PluginConfig must set
// allow_on_headers_stop_iteration; links without the option are held the
// way Envoy would hold them.
//
// Request callbacks run the links in order, response callbacks in reverse
// order. A link that pauses holds the chain there; when it resumes
// (ContinueRequest, ContinueResponse, Resume) the chain goes on with the
// next link, and reaches Envoy only when every link let the stream through.
// A local reply from any link ends the chain. Each link sees the body data
// it has not passed on yet, exactly what Envoy would show it: a link after
// one that buffers sees the whole buffer, including what an earlier link
// replaced. Ticks, HTTP calls and VM starts reach every link as they would
// alone.
func NewChain(links []Link) func(rootContextID uint32) PluginContext {
	return func(rootID uint32) PluginContext { return &chain{all: links, rootID: rootID} }
}

// linkHook names the link whose code is running, so that host calls that
// act on "this filter" (tick period, continue) reach the right one.
type linkHook struct {
	c   *chain
	idx int // index in c.links
}

type chainLink struct {
	Link
	root   PluginContext
	hook   *linkHook
	period time.Duration // the tick period this link asked for; 0 is none
	every  int           // host ticks per tick of this link
	count  int           // host ticks since its last tick
}

// chain is the root context of a Chain.
type chain struct {
	all    []Link
	links  []chainLink
	rootID uint32
	tick   time.Duration // the period asked of the host
	vmCfg  []byte
	vmSet  bool
}

// withLink runs f with link i's code current for host calls.
func (c *chain) withLink(i int, f func()) {
	prev := vm.hook
	vm.hook = c.links[i].hook
	defer func() { vm.hook = prev }()
	f()
}

// OnVMStart is forwarded to every link on configuration, once the links are
// known; it only keeps the VM configuration here.
func (c *chain) OnVMStart(vmConfig []byte) error {
	c.vmCfg, c.vmSet = vmConfig, true
	return nil
}

// OnPluginStart splits the configuration into sections and starts each
// configured link with its own.
func (c *chain) OnPluginStart(cfg []byte) error {
	sections, err := chainSections(cfg, c.all)
	if err != nil {
		return err
	}
	c.links = c.links[:0]
	for _, l := range c.all {
		raw, ok := sections[l.Name]
		if !ok {
			continue
		}
		cl := chainLink{Link: l, root: l.New(c.rootID)}
		c.links = append(c.links, cl)
		i := len(c.links) - 1
		c.links[i].hook = &linkHook{c: c, idx: i}
		var err error
		c.withLink(i, func() {
			if s, ok := cl.root.(VMStarter); ok && c.vmSet {
				if err = s.OnVMStart(c.vmCfg); err != nil {
					return
				}
			}
			err = cl.root.OnPluginStart(raw)
		})
		if err != nil {
			return config.Wrap(l.Name+": ", err, "")
		}
	}
	return nil
}

// chainSections parses the chain's configuration: a JSON object whose
// members are sections named after links, each a JSON object.
func chainSections(cfg []byte, links []Link) (map[string][]byte, error) {
	doc, err := reqview.Parse(cfg, reqview.Limits{MaxBytes: 1 << 22, MaxDepth: 64})
	if err != nil {
		return nil, config.Wrap("chain configuration: ", err, "")
	}
	root := doc.Root()
	if root.Kind() != reqview.Object {
		return nil, errors.New("chain configuration: must be a JSON object of filter sections")
	}
	names := make([]string, len(links))
	for i, l := range links {
		names[i] = l.Name
	}
	if err := root.StrictKeys(names...); err != nil {
		return nil, config.Wrap("chain configuration: ", err, "")
	}
	out := map[string][]byte{}
	var bad error
	root.Members(func(key string, v reqview.Value) bool {
		known := false
		for _, n := range names {
			known = known || n == key
		}
		switch {
		case !known:
			bad = errors.New("chain configuration: unknown section " + strconv.Quote(key) + " (known: [" + strings.Join(names, " ") + "])")
		case v.Kind() != reqview.Object:
			bad = errors.New("chain configuration: section " + strconv.Quote(key) + " must be a JSON object")
		default:
			out[key] = v.Raw()
			return true
		}
		return false
	})
	if bad != nil {
		return nil, bad
	}
	if len(out) == 0 {
		return nil, errors.New("chain configuration: no filter section (known: [" + strings.Join(names, " ") + "])")
	}
	return out, nil
}

// setTick records link i's tick period and asks the host for the greatest
// common divisor of all of them; each link then ticks every so many host
// ticks.
func (c *chain) setTick(i int, d time.Duration) error {
	c.links[i].period = d.Truncate(time.Millisecond)
	var g time.Duration
	for _, o := range c.links {
		if o.period > 0 {
			g = gcd(g, o.period)
		}
	}
	for j := range c.links {
		l := &c.links[j]
		l.every, l.count = 0, 0
		if l.period > 0 {
			l.every = int(l.period / g)
		}
	}
	if g == c.tick {
		return nil
	}
	c.tick = g
	return StatusToError(Status(proxy_set_tick_period_milliseconds(uint32(g / time.Millisecond))))
}

func gcd(a, b time.Duration) time.Duration {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// OnTick runs the tick of every link whose period is due.
func (c *chain) OnTick() {
	for i := range c.links {
		l := &c.links[i]
		if l.every == 0 {
			continue
		}
		if l.count++; l.count < l.every {
			continue
		}
		l.count = 0
		c.withLink(i, func() { c.links[i].root.OnTick() })
	}
}

// OnQueueReady reaches every link: each knows its own queues.
func (c *chain) OnQueueReady(queueID uint32) {
	for i := range c.links {
		c.withLink(i, func() { c.links[i].root.OnQueueReady(queueID) })
	}
}

// OnPluginDone asks every link; the chain is done when all are. A link
// that answers false and later calls Done finishes the whole chain then
// (no shipped filter defers its shutdown).
func (c *chain) OnPluginDone() bool {
	done := true
	for i := range c.links {
		c.withLink(i, func() { done = c.links[i].root.OnPluginDone() && done })
	}
	return done
}

// NewHttpContext creates every link's stream context.
func (c *chain) NewHttpContext(id uint32) HttpContext {
	s := &chainStream{c: c, id: id, subs: make([]HttpContext, len(c.links))}
	for i := range c.links {
		c.withLink(i, func() { s.subs[i] = c.links[i].root.NewHttpContext(id) })
		if s.subs[i] == nil {
			s.subs[i] = DefaultHttpContext{}
		}
	}
	s.req.init(len(c.links), true)
	s.resp.init(len(c.links), false)
	return s
}

// Phases of a position's last event.
const (
	posIdle = iota
	posHeadersHeld
	posBodyHeld
	posTrailersHeld
)

// chainPos is what one link has seen of one direction.
type chainPos struct {
	state    int
	reached  bool // got its headers callback
	start    int  // buffer offset of the first byte it has not passed on
	eos      bool // got the end of the body
	trailers bool // got the trailers callback
}

// chainDir is one direction of a chained stream.
type chainDir struct {
	request    bool
	pos        []chainPos // in the order the links see this direction
	numHeaders int
	headersEOS bool
	size       int  // the host's buffer: bytes it holds for the chain
	bodyEOS    bool // the body ended (end_of_stream in a body callback)
	numTrl     int
	trailers   bool // trailers arrived
	told       bool // the host was told to hold (a callback answered PAUSE)
	running    bool // the chain is running links of this direction
	calling    int  // link index whose callback runs, -1 none
	resumed    int  // link index that resumed while running, -1 none
	localReply bool // the response is a local reply already sent
}

func (d *chainDir) init(n int, request bool) {
	d.request = request
	d.pos = make([]chainPos, n)
	d.resumed, d.calling = -1, -1
}

// chainStream is the HttpContext of a chain: every link's, driven in order.
type chainStream struct {
	c    *chain
	id   uint32
	st   *httpState // the stream's dispatch state, found on first use
	subs []HttpContext
	req  chainDir
	resp chainDir
}

// link is the index in c.links of position p of direction d.
func (s *chainStream) link(d *chainDir, p int) int {
	if d.request {
		return p
	}
	return len(s.subs) - 1 - p
}

func (s *chainStream) buffer(d *chainDir) BufferType {
	if d.request {
		return BufferRequestBody
	}
	return BufferResponseBody
}

// stopped reports whether direction d must not go on: a panic failed the
// stream, or a link sent a local reply (the reply itself still runs through
// the response callbacks, as Envoy's encoder filters see it).
func (s *chainStream) stopped(d *chainDir) bool {
	if s.st == nil {
		if s.st = vm.streams[s.id]; s.st == nil {
			return true
		}
	}
	if s.st.failed {
		return true
	}
	return s.st.replied && (d.request || !d.localReply)
}

func (s *chainStream) OnRequestHeaders(numHeaders int, endOfStream bool) Action {
	s.req.numHeaders, s.req.headersEOS = numHeaders, endOfStream
	return s.event(&s.req)
}

func (s *chainStream) OnRequestBody(bodySize int, endOfStream bool) Action {
	s.req.size, s.req.bodyEOS = bodySize, s.req.bodyEOS || endOfStream
	return s.event(&s.req)
}

func (s *chainStream) OnRequestTrailers(numTrailers int) Action {
	s.req.numTrl, s.req.trailers = numTrailers, true
	return s.event(&s.req)
}

func (s *chainStream) OnResponseHeaders(numHeaders int, endOfStream bool) Action {
	s.resp.numHeaders, s.resp.headersEOS = numHeaders, endOfStream
	if st, ok := vm.streams[s.id]; ok && st.replied {
		s.resp.localReply = true
	}
	return s.event(&s.resp)
}

func (s *chainStream) OnResponseBody(bodySize int, endOfStream bool) Action {
	s.resp.size, s.resp.bodyEOS = bodySize, s.resp.bodyEOS || endOfStream
	return s.event(&s.resp)
}

func (s *chainStream) OnResponseTrailers(numTrailers int) Action {
	s.resp.numTrl, s.resp.trailers = numTrailers, true
	return s.event(&s.resp)
}

func (s *chainStream) OnLog() {
	for i := range s.subs {
		s.c.withLink(i, s.subs[i].OnLog)
	}
}

func (s *chainStream) OnDone() {
	for i := range s.subs {
		s.c.withLink(i, s.subs[i].OnDone)
	}
}

// event runs the links on what the host just delivered and answers the host.
func (s *chainStream) event(d *chainDir) Action {
	if s.run(d) {
		s.flowed(d)
		return ActionContinue
	}
	d.told = true
	return ActionPause
}

// flowed records that the host let the buffered data go on.
func (s *chainStream) flowed(d *chainDir) {
	d.told = false
	d.size = 0
	for p := range d.pos {
		d.pos[p].start = 0
	}
}

// resume goes on after the link at index idx asked to continue direction
// d (a callout answer, a tick, another stream's callback). It is called
// with the stream current; it reports whether it handled the call.
func (s *chainStream) resume(d *chainDir, idx int) {
	if d.running {
		if idx < 0 {
			idx = d.calling
		}
		d.resumed = idx
		return
	}
	if !d.told {
		return // nothing is held: a stray continue, as Envoy ignores it
	}
	p := s.holder(d)
	if p < 0 || s.link(d, p) != idx && idx >= 0 {
		return // a link that holds nothing
	}
	s.release(d, p)
	defer func() {
		if r := recover(); r != nil {
			if st, ok := vm.streams[s.id]; ok {
				vm.failStream(st, "chain resume", r)
				return
			}
			logPanic("chain resume", r)
		}
	}()
	if s.run(d) {
		s.flowed(d)
		vm.hdr.reset() // the host runs the filters after the chain before it returns
		vm.body.reset()
		var st Status
		if d.request {
			st = Status(proxy_continue_stream(uint32(StreamRequest)))
		} else {
			st = Status(proxy_continue_stream(uint32(StreamResponse)))
		}
		if err := StatusToError(st); err != nil {
			Log(LogLevelDebug, "proxywasm: chain continue: "+err.Error())
		}
	}
}

// holder is the position that holds direction d, or -1.
func (s *chainStream) holder(d *chainDir) int {
	for p := range d.pos {
		switch d.pos[p].state {
		case posHeadersHeld, posBodyHeld, posTrailersHeld:
			return p
		}
	}
	return -1
}

// release lets position p go on: what it held passes to the next link. A
// link that held its headers with StopAllIteration still gets the body that
// arrived meanwhile, as Envoy delivers it from the resuming filter.
func (s *chainStream) release(d *chainDir, p int) {
	ps := &d.pos[p]
	if ps.state == posHeadersHeld && !s.c.links[s.link(d, p)].AllowOnHeadersStopIteration {
		ps.state = posIdle // reached, headers passed; body still to deliver
		return
	}
	ps.state = posIdle
	ps.start = s.end(d)
	if d.bodyEOS {
		ps.eos = true
	}
	if d.trailers {
		ps.trailers = true
	}
}

// end is the host buffer's current size as the chain knows it.
func (s *chainStream) end(d *chainDir) int {
	if vm.bufDirty {
		vm.bufDirty = false
		if size, err := bufferSize(s.buffer(d)); err == nil {
			d.size = int(size)
		}
	}
	return d.size
}

// run delivers what each link has not seen yet, in order, until one holds
// the stream or a local reply ends it; it reports whether every link let
// everything through.
func (s *chainStream) run(d *chainDir) bool {
	d.running = true
	prevView := vm.view
	defer func() {
		d.running = false
		vm.view = prevView
	}()
	vm.bufDirty = false
	for p := range d.pos {
		if s.stopped(d) {
			return false
		}
		if !s.step(d, p) {
			return false
		}
	}
	return !s.stopped(d)
}

// step delivers to position p what it has not seen; false when it holds.
func (s *chainStream) step(d *chainDir, p int) bool {
	ps := &d.pos[p]
	i := s.link(d, p)
	allow := s.c.links[i].AllowOnHeadersStopIteration
	if !ps.reached {
		ps.reached = true
		if !s.call(d, i, func(h HttpContext) Action {
			if d.request {
				return h.OnRequestHeaders(d.numHeaders, d.headersEOS)
			}
			return h.OnResponseHeaders(d.numHeaders, d.headersEOS)
		}) {
			ps.state = posHeadersHeld
			if !allow || s.stopped(d) {
				return false
			}
		}
	}
	switch ps.state {
	case posHeadersHeld:
		if !allow {
			return false
		}
	case posTrailersHeld:
		return false
	}
	// The body: data this link has not seen, or the end it was not told.
	if end := s.end(d); !d.headersEOS && (end > ps.start || d.bodyEOS && !ps.eos) {
		ps.eos = d.bodyEOS
		start := ps.start
		vm.body.know(s.buffer(d), uint32(end)) // the links share one read of it
		went := s.call(d, i, func(h HttpContext) Action {
			vm.view = bufferView{ctx: s.id, buf: s.buffer(d), off: uint32(start)}
			defer func() { vm.view = bufferView{} }()
			if d.request {
				return h.OnRequestBody(end-start, d.bodyEOS)
			}
			return h.OnResponseBody(end-start, d.bodyEOS)
		})
		// Every link before this one passed all it had; a replaced body
		// moved the end.
		end = s.end(d)
		for q := 0; q < p; q++ {
			d.pos[q].start = end
		}
		if !went {
			if ps.state != posHeadersHeld {
				ps.state = posBodyHeld
			}
			return false
		}
		ps.start = end
		ps.state = posIdle // data going on takes held headers with it
	}
	if d.trailers && !ps.trailers {
		ps.trailers = true
		if !s.call(d, i, func(h HttpContext) Action {
			if d.request {
				return h.OnRequestTrailers(d.numTrl)
			}
			return h.OnResponseTrailers(d.numTrl)
		}) {
			ps.state = posTrailersHeld
			return false
		}
		ps.state = posIdle
	}
	switch ps.state {
	case posHeadersHeld, posBodyHeld, posTrailersHeld:
		return false // still holding, nothing new for it
	}
	ps.state = posIdle
	return true
}

// call runs one callback of link i with its code current, and reports
// whether the link let the stream go on (it continued, or resumed while the
// callback ran).
func (s *chainStream) call(d *chainDir, i int, f func(HttpContext) Action) bool {
	d.resumed, d.calling = -1, i
	var a Action
	s.c.withLink(i, func() { a = f(s.subs[i]) })
	d.calling = -1
	if vm.current != s.id {
		// A link resumed another stream: this one is current again.
		_ = SetEffectiveContext(s.id)
	}
	if s.stopped(d) {
		return false
	}
	return a == ActionContinue || d.resumed == i
}

// chainContinue is ContinueRequest or ContinueResponse on a chained stream:
// the chain goes on from the link after the one that held it. It reports
// false when the current stream is not chained.
func chainContinue(t StreamType) bool {
	st, ok := vm.streams[vm.current]
	if !ok {
		return false
	}
	s, ok := st.ctx.(*chainStream)
	if !ok {
		return false
	}
	idx := -1
	if vm.hook != nil && vm.hook.c == s.c {
		idx = vm.hook.idx
	}
	if t == StreamRequest {
		s.resume(&s.req, idx)
	} else {
		s.resume(&s.resp, idx)
	}
	return true
}

// RequestMemo is the current stream's request-view memo: every filter of
// the stream (the links of a fused chain, or one filter reading its body
// twice) parses the same request body once through it. It is dropped when
// the response starts; nil outside a stream callback (it then parses every
// time).
func RequestMemo() *reqview.Memo {
	if st, ok := vm.streams[vm.current]; ok {
		return &st.memo
	}
	return nil
}
