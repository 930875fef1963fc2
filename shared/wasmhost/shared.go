package wasmhost

import (
	"sync"
)

// sharedData is Envoy's process-wide shared key/value store, scoped by
// vm_id, with a compare-and-swap token per key (proxy-wasm-cpp-host
// shared_data.cc): the token changes on every set, 0 is never handed out,
// a set with cas 0 is unconditional and a stale cas is CAS_MISMATCH.
type sharedData struct {
	mu   sync.Mutex
	data map[string]map[string]sharedValue
	cas  uint32
}

type sharedValue struct {
	value []byte
	cas   uint32
}

func newSharedData() *sharedData {
	return &sharedData{data: map[string]map[string]sharedValue{}, cas: 1}
}

func (s *sharedData) nextCas() uint32 {
	c := s.cas
	s.cas++
	if s.cas == 0 {
		s.cas++
	}
	return c
}

func (s *sharedData) get(vmID, key string) ([]byte, uint32, Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[vmID][key]
	if !ok {
		return nil, 0, StatusNotFound
	}
	return v.value, v.cas, StatusOK
}

func (s *sharedData) set(vmID, key string, value []byte, cas uint32) Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.data[vmID]
	if m == nil {
		m = map[string]sharedValue{}
		s.data[vmID] = m
	}
	if cur, ok := m[key]; ok && cas != 0 && cas != cur.cas {
		return StatusCasMismatch
	}
	m[key] = sharedValue{value: append([]byte(nil), value...), cas: s.nextCas()}
	return StatusOK
}

// sharedQueues is Envoy's process-wide queue registry (shared_queue.cc):
// a queue is registered by vm_id and name, tokens start at 1, the last
// registration decides which VM root context gets proxy_on_queue_ready.
type sharedQueues struct {
	mu     sync.Mutex
	tokens map[[2]string]uint32
	queues map[uint32]*sharedQueue
	next   uint32
}

type sharedQueue struct {
	items     [][]byte
	vm        *VM
	contextID uint32
}

func newSharedQueues() *sharedQueues {
	return &sharedQueues{tokens: map[[2]string]uint32{}, queues: map[uint32]*sharedQueue{}, next: 1}
}

func (q *sharedQueues) register(vmID, name string, vm *VM, contextID uint32) uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	key := [2]string{vmID, name}
	tok, ok := q.tokens[key]
	if !ok {
		for {
			tok = q.next
			q.next++
			if tok != 0 && q.queues[tok] == nil {
				break
			}
		}
		q.tokens[key] = tok
	}
	sq := q.queues[tok]
	if sq == nil {
		sq = &sharedQueue{}
		q.queues[tok] = sq
	}
	sq.vm = vm
	sq.contextID = contextID
	return tok
}

func (q *sharedQueues) resolve(vmID, name string) uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.tokens[[2]string{vmID, name}]
}

func (q *sharedQueues) dequeue(tok uint32) ([]byte, Status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	sq := q.queues[tok]
	if sq == nil {
		return nil, StatusNotFound
	}
	if len(sq.items) == 0 {
		return nil, StatusEmpty
	}
	v := sq.items[0]
	sq.items = sq.items[1:]
	return v, StatusOK
}

func (q *sharedQueues) enqueue(tok uint32, value []byte) Status {
	q.mu.Lock()
	sq := q.queues[tok]
	if sq == nil {
		q.mu.Unlock()
		return StatusNotFound
	}
	sq.items = append(sq.items, append([]byte(nil), value...))
	vm, ctxID := sq.vm, sq.contextID
	q.mu.Unlock()
	if vm != nil {
		// Envoy posts the wake-up to the registering worker's dispatcher: it
		// runs after the current callback, never inline.
		vm.post(func() { vm.onQueueReady(ctxID, tok) })
	}
	return StatusOK
}

// metrics is Envoy's stats store for Wasm custom metrics: a metric is
// identified by its name, so VMs defining the same name share the value.
type metrics struct {
	mu         sync.Mutex
	counters   map[string]uint64
	gauges     map[string]uint64
	histograms map[string][]uint64
}

func newMetrics() *metrics {
	return &metrics{counters: map[string]uint64{}, gauges: map[string]uint64{}, histograms: map[string][]uint64{}}
}

func (m *metrics) define(t MetricType, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch t {
	case MetricCounter:
		if _, ok := m.counters[name]; !ok {
			m.counters[name] = 0
		}
	case MetricGauge:
		if _, ok := m.gauges[name]; !ok {
			m.gauges[name] = 0
		}
	case MetricHistogram:
		if _, ok := m.histograms[name]; !ok {
			m.histograms[name] = nil
		}
	}
}
