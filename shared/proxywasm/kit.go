package proxywasm

// The filter kit: steps every filter's glue needs, written once.

import (
	"strconv"

	"github.com/tollgate/tollgate/shared/config"
)

// Metrics is a filter's registry of host metrics by full name: each is
// defined on first use (or up front with Define) and reused. Recording is
// best effort, because a metric must never fail a request and some hosts
// (Google Cloud Service Extensions) have no custom metrics: a metric the host
// refuses is logged once and then not counted.
type Metrics struct {
	filter     string // log prefix
	counters   map[string]Counter
	histograms map[string]Histogram
	gauges     map[string]Gauge
	refused    map[string]bool
}

// NewMetrics returns an empty registry; filter prefixes its log lines.
func NewMetrics(filter string) *Metrics {
	return &Metrics{filter: filter, counters: map[string]Counter{}, histograms: map[string]Histogram{},
		gauges: map[string]Gauge{}, refused: map[string]bool{}}
}

// Define defines counters up front, so they show at zero before any
// request. Every name is tried; one the host refuses is logged and skipped
// from then on, and the first refusal is returned, so a filter may fail its
// configuration on it or, best effort, ignore it.
func (m *Metrics) Define(names ...string) error {
	var first error
	for _, n := range names {
		if _, err := m.Counter(n); err != nil {
			m.refuse(n, err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// Counter finds or defines a counter.
func (m *Metrics) Counter(name string) (Counter, error) {
	if c, ok := m.counters[name]; ok {
		return c, nil
	}
	c, err := DefineCounter(name)
	if err != nil {
		return 0, err
	}
	m.counters[name] = c
	return c, nil
}

// Add adds n to a counter (zero is a no-op).
func (m *Metrics) Add(name string, n uint64) {
	if n == 0 || m.refused[name] {
		return
	}
	c, err := m.Counter(name)
	if err != nil {
		m.refuse(name, err)
		return
	}
	_ = c.Increment(n)
}

// Inc adds one to a counter.
func (m *Metrics) Inc(name string) { m.Add(name, 1) }

// Record adds an observation to a histogram.
func (m *Metrics) Record(name string, v uint64) {
	if m.refused[name] {
		return
	}
	h, ok := m.histograms[name]
	if !ok {
		var err error
		if h, err = DefineHistogram(name); err != nil {
			m.refuse(name, err)
			return
		}
		m.histograms[name] = h
	}
	_ = h.Record(v)
}

// GaugeAdd changes a gauge by delta, which may be negative.
func (m *Metrics) GaugeAdd(name string, delta int64) {
	if g, ok := m.gauge(name); ok {
		_ = g.Add(delta)
	}
}

// GaugeSet sets a gauge to v.
func (m *Metrics) GaugeSet(name string, v uint64) {
	if g, ok := m.gauge(name); ok {
		_ = g.Set(v)
	}
}

func (m *Metrics) gauge(name string) (Gauge, bool) {
	if m.refused[name] {
		return 0, false
	}
	g, ok := m.gauges[name]
	if !ok {
		var err error
		if g, err = DefineGauge(name); err != nil {
			m.refuse(name, err)
			return 0, false
		}
		m.gauges[name] = g
	}
	return g, true
}

func (m *Metrics) refuse(name string, err error) {
	m.refused[name] = true
	Log(LogLevelWarn, m.filter+": metric "+name+" unavailable: "+err.Error())
}

// ReplaceRequestBody swaps the whole buffered request body and, when the
// request announced a content-length, sets it to the new length: Envoy does
// not, and an HTTP/1 upstream would read the old length. Call it while the
// request headers are still held (a body gathered with BodyGatherer).
func ReplaceRequestBody(body []byte) error {
	if err := RequestBody.Replace(body); err != nil {
		return config.Wrap("replace request body: ", err, "")
	}
	if _, err := RequestHeaders.Get("content-length"); err == nil {
		if err := RequestHeaders.Replace("content-length", strconv.Itoa(len(body))); err != nil {
			return config.Wrap("fix content-length: ", err, "")
		}
	}
	return nil
}

// Resume finishes a stream paused earlier, from whatever callback its answer
// arrived in (a callout response, a tick, another stream's callout): it makes
// the stream current, runs finish with panic protection (a panic answers the
// one panic 500 and leaves the VM serving), and continues the request unless
// finish sent a local reply. An error means the stream is gone.
func Resume(streamID uint32, finish func() (replied bool)) error {
	if err := SetEffectiveContext(streamID); err != nil {
		return config.Wrap("resume stream "+strconv.FormatUint(uint64(streamID), 10)+": ", err, "")
	}
	if st, ok := vm.streams[streamID]; ok && (st.failed || st.replied) {
		return nil
	}
	replied := true
	func() {
		defer func() {
			if r := recover(); r != nil {
				if st, ok := vm.streams[streamID]; ok {
					vm.failStream(st, "resume", r)
					return
				}
				logPanic("resume", r)
			}
		}()
		replied = finish()
	}()
	if replied {
		return nil
	}
	if err := ContinueRequest(); err != nil {
		return config.Wrap("continue stream "+strconv.FormatUint(uint64(streamID), 10)+": ", err, "")
	}
	return nil
}

// SendPanic answers the current stream with the one 500 body a recovered
// panic gets, for glue that recovers by itself.
func SendPanic(details string) error {
	return SendLocalResponse(500, [][2]string{{"content-type", "application/json"}}, panicBody, details)
}
