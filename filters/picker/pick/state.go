package pick

import (
	"encoding/binary"
	"errors"
	"math"
	"strings"

	"github.com/tollgate/tollgate/filters/picker/scrape"
	"github.com/tollgate/tollgate/shared/table"
)

// Host is what the policy needs from its environment.
type Host interface {
	// Store is the shared key-value store every worker sees.
	Store() table.Store
	// NowMs is the wall clock in Unix milliseconds.
	NowMs() int64
	// Intn returns a uniform random number in [0, n).
	Intn(n int) int
}

// Shared-data keys; every key is bounded by the configured endpoints.
const (
	keyPrefix   = "tollgate.picker.v1."
	keySnap     = keyPrefix + "snap."
	keyInflight = keyPrefix + "inflight."
	keyHealth   = keyPrefix + "health."
	keyLeader   = keyPrefix + "leader"
	prefixNS    = keyPrefix + "prefix"
	maxCAS      = 32
)

// errContention reports that CAS retries ran out.
var errContention = errors.New("picker: shared data contention")

// Metrics is an endpoint's last scrape as stored in shared data.
type Metrics struct {
	scrape.Snapshot
	// AtMs is when it was scraped (Unix ms); 0 means never.
	AtMs int64
	// ScrapeFailures counts consecutive failed scrapes.
	ScrapeFailures int
	// InFlightAtScrape is this Envoy's in-flight count when the scrape
	// arrived: the scrape's running+waiting minus it is other clients' load.
	InFlightAtScrape int64
}

// encodeMetrics writes a Metrics record.
func encodeMetrics(m Metrics) []byte {
	b := make([]byte, 0, 64)
	b = binary.AppendVarint(b, m.AtMs)
	b = binary.AppendUvarint(b, uint64(m.ScrapeFailures))
	b = binary.AppendVarint(b, m.InFlightAtScrape)
	b = append(b, byte(m.Has))
	for _, f := range []float64{m.Waiting, m.Running, m.KVUsage} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	b = binary.AppendUvarint(b, uint64(m.BlockSize))
	b = binary.AppendUvarint(b, uint64(m.NumBlocks))
	b = binary.AppendUvarint(b, uint64(m.MaxLoras))
	for _, l := range [][]string{m.RunningLoras, m.WaitingLoras} {
		s := strings.Join(l, ",")
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// decodeMetrics reads a Metrics record; ok is false for a corrupt one.
func decodeMetrics(b []byte) (m Metrics, ok bool) {
	r := reader{b: b}
	m.AtMs = r.varint()
	m.ScrapeFailures = int(r.uvarint())
	m.InFlightAtScrape = r.varint()
	m.Has = scrape.Field(r.byte())
	m.Waiting, m.Running, m.KVUsage = r.float(), r.float(), r.float()
	m.BlockSize, m.NumBlocks, m.MaxLoras = int(r.uvarint()), int(r.uvarint()), int(r.uvarint())
	run, wait := r.str(), r.str()
	if r.bad {
		return Metrics{}, false
	}
	m.RunningLoras, m.WaitingLoras = splitComma(run), splitComma(wait)
	return m, true
}

func splitComma(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// reader decodes the records; any overrun marks it bad.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > 1<<32 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) float() float64 {
	if len(r.b) < 8 {
		r.bad = true
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	if math.IsNaN(f) || math.IsInf(f, 0) {
		r.bad = true
	}
	return f
}

func (r *reader) str() string {
	n := r.uvarint()
	if r.bad || uint64(len(r.b)) < n {
		r.bad = true
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// ReadMetrics returns an endpoint's stored metrics (zero when never scraped).
func ReadMetrics(st table.Store, addr string) Metrics {
	raw, _, found, err := st.Get(keySnap + addr)
	if err != nil || !found {
		return Metrics{}
	}
	m, _ := decodeMetrics(raw)
	return m
}

// StoreScrape records a successful scrape of addr, with this Envoy's
// in-flight count at that moment.
func StoreScrape(st table.Store, addr string, snap scrape.Snapshot, nowMs int64) error {
	m := Metrics{Snapshot: snap, AtMs: nowMs, InFlightAtScrape: InFlight(st, addr)}
	_, err := st.Set(keySnap+addr, encodeMetrics(m), 0)
	return err
}

// StoreScrapeFailure records a failed scrape: the last good figures stay,
// with their age, and the failure count grows.
func StoreScrapeFailure(st table.Store, addr string) (failures int, err error) {
	for range maxCAS {
		raw, cas, found, err := st.Get(keySnap + addr)
		if err != nil {
			return 0, err
		}
		var m Metrics
		if found {
			m, _ = decodeMetrics(raw)
		}
		m.ScrapeFailures++
		ok, err := st.Set(keySnap+addr, encodeMetrics(m), cas)
		if err != nil {
			return 0, err
		}
		if ok {
			return m.ScrapeFailures, nil
		}
	}
	return 0, errContention
}

// addInt64 adds delta to a counter key under CAS, never below zero, and
// returns the new value.
func addInt64(st table.Store, key string, delta int64) (int64, error) {
	for range maxCAS {
		raw, cas, found, err := st.Get(key)
		if err != nil {
			return 0, err
		}
		var v int64
		if found && len(raw) == 8 {
			v = int64(binary.LittleEndian.Uint64(raw))
		}
		v = max(v+delta, 0)
		ok, err := st.Set(key, binary.LittleEndian.AppendUint64(nil, uint64(v)), cas)
		if err != nil {
			return 0, err
		}
		if ok {
			return v, nil
		}
	}
	return 0, errContention
}

// readInt64 reads a counter key.
func readInt64(st table.Store, key string) int64 {
	raw, _, found, err := st.Get(key)
	if err != nil || !found || len(raw) != 8 {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(raw))
}

// InFlight is the number of requests this Envoy has sent to addr and not finished.
func InFlight(st table.Store, addr string) int64 { return readInt64(st, keyInflight+addr) }

// health is an endpoint's failure record.
type health struct {
	failures     int
	ejectedUntil int64
}

func readHealth(st table.Store, addr string) (health, uint32) {
	raw, cas, found, err := st.Get(keyHealth + addr)
	if err != nil || !found {
		return health{}, cas
	}
	r := reader{b: raw}
	h := health{failures: int(r.uvarint()), ejectedUntil: r.varint()}
	if r.bad {
		return health{}, cas
	}
	return h, cas
}

// Ejected reports whether addr is ejected at nowMs.
func Ejected(st table.Store, addr string, nowMs int64) bool {
	h, _ := readHealth(st, addr)
	return h.ejectedUntil > nowMs
}

// Outcome records a request's result on addr: a failure before the
// response started counts towards ejection, any response resets the count.
// It reports whether this failure ejected the endpoint.
func (p *Policy) Outcome(st table.Store, addr string, failed bool, nowMs int64) (ejected bool, err error) {
	for range maxCAS {
		h, cas := readHealth(st, addr)
		if !failed && h.failures == 0 {
			return false, nil
		}
		ejected = false
		if failed {
			h.failures++
			if h.failures >= p.EjectFailures && h.ejectedUntil <= nowMs {
				h.ejectedUntil = nowMs + p.EjectBackoff.Milliseconds()
				h.failures = 0
				ejected = true
			}
		} else {
			h.failures = 0
		}
		b := binary.AppendUvarint(nil, uint64(h.failures))
		b = binary.AppendVarint(b, h.ejectedUntil)
		ok, err := st.Set(keyHealth+addr, b, cas)
		if err != nil {
			return false, err
		}
		if ok {
			return ejected, nil
		}
	}
	return false, errContention
}

// Lead claims or renews the poller lease for id; exactly one holder at a
// time wins it, and a holder that stops renewing loses it after leaseMs.
func Lead(st table.Store, id uint64, nowMs, leaseMs int64) (bool, error) {
	raw, cas, found, err := st.Get(keyLeader)
	if err != nil {
		return false, err
	}
	if found && len(raw) == 16 {
		holder := binary.LittleEndian.Uint64(raw)
		until := int64(binary.LittleEndian.Uint64(raw[8:]))
		if holder != id && until > nowMs {
			return false, nil
		}
	}
	b := binary.LittleEndian.AppendUint64(nil, id)
	b = binary.LittleEndian.AppendUint64(b, uint64(nowMs+leaseMs))
	return st.Set(keyLeader, b, cas)
}

// InitLeader creates the lease key before any VM competes for it, since
// shared data has no create-if-absent and a missing key accepts any CAS.
func InitLeader(st table.Store) error {
	_, _, found, err := st.Get(keyLeader)
	if err != nil || found {
		return err
	}
	_, err = st.Set(keyLeader, make([]byte, 16), 0)
	return err
}

// keyPools holds the pools document a pools source last served.
const keyPools = keyPrefix + "pools"

// ReadPools returns the shared pools document and its version (found false before any).
func ReadPools(st table.Store) (raw []byte, version uint32, found bool) {
	raw, cas, found, err := st.Get(keyPools)
	if err != nil {
		return nil, 0, false
	}
	return raw, cas, found
}

// StorePools shares a validated pools document with every worker; an
// unchanged document is not written again, so workers re-read only changes.
func StorePools(st table.Store, raw []byte) (changed bool, err error) {
	old, cas, found, err := st.Get(keyPools)
	if err != nil {
		return false, err
	}
	if found && string(old) == string(raw) {
		return false, nil
	}
	ok, err := st.Set(keyPools, raw, cas)
	return ok, err
}
