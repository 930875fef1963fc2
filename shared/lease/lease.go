// Package lease keeps budget leases for strict quotas (docs/leases.md): per
// counter, this Envoy holds in proxy-wasm shared data a slice of the
// remaining budget that the keystore granted atomically, so that requests
// reserve from it with a CAS and settle locally, with no keystore round
// trip. One worker, the leader, reports consumption and renews every active
// lease with one batched POST /v1/quota/lease per tick. When a lease cannot
// cover a request the caller falls back to its direct keystore reservation,
// so a strict quota never weakens.
//
// The package is plain Go: shared data is a table.Store, and the clock and
// the callout are behind Host, so that the whole protocol, concurrent
// takers and leader changes included, is tested natively.
package lease

//go:generate go run github.com/tollgate/tollgate/scripts/configgen -type Config

import (
	"errors"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/jsonenc"
	"github.com/tollgate/tollgate/shared/table"
)

// Path is the keystore's lease endpoint.
const Path = "/v1/quota/lease"

// Host is what leases need from the proxy.
type Host interface {
	// Now is the wall clock.
	Now() time.Time
	// Dispatch posts body to the keystore's lease endpoint; done runs later
	// (never inside Dispatch) with the answer, or failed when none came.
	Dispatch(body []byte, done func(failed bool, status int, body []byte)) error
}

// Config is the "lease" block of a filter configuration.
type Config struct {
	// Enabled turns leases on for the filter's strict quotas.
	Enabled bool `json:"enabled"`
	// TTL is how long the keystore keeps a lease that is not renewed: a
	// crashed Envoy's lease returns to the budget after it (default 30s).
	TTL config.Duration `json:"ttl"`
	// Max bounds what one Envoy holds on one counter (default per filter):
	// the most budget another gateway can find stranded here.
	Max int64 `json:"max"`
	// Renew is the tick: how often consumption is reported and leases are
	// resized (default 1s).
	Renew config.Duration `json:"renew"`
	// Idle returns a lease unused for this long (default 5s).
	Idle config.Duration `json:"idle"`
	// MaxCounters bounds the counters leased at once (default 4096).
	MaxCounters int `json:"max_counters"`
}

// Settings are a compiled Config.
type Settings struct {
	Enabled     bool
	TTL         time.Duration
	Max         int64
	Renew       time.Duration
	Idle        time.Duration
	MaxCounters int
}

// Defaults and limits of the settings.
const (
	DefaultTTL         = 30 * time.Second
	DefaultRenew       = time.Second
	DefaultIdle        = 5 * time.Second
	DefaultMaxCounters = 4096
	// MaxShare: a lease holds at most 1/MaxShare of its counter's limit
	// beyond what is in flight.
	MaxShare = 8
	// MaxItems is the most counters one lease callout carries.
	MaxItems = 128
	// maxAmount bounds every amount (the counter engine's largest limit).
	maxAmount = 1 << 53
)

// Compile checks a Config; defMax is the filter's default Max.
func (c Config) Compile(defMax int64) (Settings, error) {
	s := Settings{Enabled: c.Enabled, Max: c.Max, MaxCounters: c.MaxCounters}
	var err error
	if s.TTL, err = c.TTL.Within("lease.ttl", DefaultTTL, time.Second, 10*time.Minute); err != nil {
		return s, err
	}
	if s.Renew, err = c.Renew.Within("lease.renew", DefaultRenew, 10*time.Millisecond, time.Minute); err != nil {
		return s, err
	}
	if s.Idle, err = c.Idle.Within("lease.idle", DefaultIdle, 10*time.Millisecond, time.Hour); err != nil {
		return s, err
	}
	if s.Renew*4 > s.TTL {
		return s, errors.New("lease.renew " + s.Renew.String() + ": want at most a quarter of lease.ttl " + s.TTL.String())
	}
	if s.Max == 0 {
		s.Max = defMax
	}
	if s.Max < 1 || s.Max > maxAmount {
		return s, errors.New("lease.max " + strconv.FormatInt(s.Max, 10) + " out of range [1, " + strconv.FormatInt(int64(maxAmount), 10) + "]")
	}
	if s.MaxCounters == 0 {
		s.MaxCounters = DefaultMaxCounters
	}
	if s.MaxCounters < 1 || s.MaxCounters > 1<<16 {
		return s, errors.New("lease.max_counters " + strconv.Itoa(s.MaxCounters) + " out of range [1, " + strconv.Itoa(1<<16) + "]")
	}
	return s, nil
}

// Grant is the counter's state as a local take sees it, for rate-limit
// headers.
type Grant struct {
	// Limit is the counter's limit; Remaining what is left in the whole
	// fleet as far as this Envoy knows (what the keystore had left at the
	// last renewal plus what this lease still holds).
	Limit, Remaining int64
	// Reset is when the counter's window resets (Unix ms).
	Reset int64
}

// Leases is one filter's leases in one worker; every worker's Leases over
// the same namespace sees the same records.
type Leases struct {
	set    Settings
	table  *table.Table
	store  table.Store
	host   Host
	leader string
	marks  string // the active-sets bitmap's key
	worker uint64
	// Timeout bounds one lease callout.
	timeout time.Duration
}

// New returns a worker's handle on the leases kept in store under ns;
// timeout is the keystore callout's.
func New(store table.Store, h Host, ns string, s Settings, timeout time.Duration) (*Leases, error) {
	l := &Leases{set: s, store: store, host: h, leader: ns + ".leader", marks: ns + ".active", worker: rand.Uint64() | 1, timeout: timeout}
	var err error
	l.table, err = table.New(store, table.Options{Namespace: ns, MaxEntries: s.MaxCounters, Protect: func(v []byte) bool {
		r, err := decodeRecord(v)
		return err == nil && r.protected()
	}})
	if err != nil {
		return nil, config.Wrap("lease table: ", err, "")
	}
	return l, nil
}

// Init creates the shared table; call it once per worker before serving.
func (l *Leases) Init() error { return l.table.Init() }

// Settings are the leases' compiled settings.
func (l *Leases) Settings() Settings { return l.set }

// ErrLost reports that a counter's record vanished (evicted from a full
// table) while a local reservation was open: the caller must count the
// consumption directly.
var ErrLost = errors.New("lease: the counter's record is gone")

func ms(t time.Time) int64 { return t.UnixMilli() }

// expiresAt is how long the table keeps a record written at now.
func (l *Leases) expiresAt(r *record, now int64) int64 {
	return max(r.Expiry, now) + l.set.TTL.Milliseconds() + l.set.Idle.Milliseconds()
}

// update applies fn to a counter's record under CAS.
func (l *Leases) update(counter string, now int64, fn func(r *record) bool) error {
	var ferr error
	_, err := l.table.Update(counter, now, func(old []byte, _ int64) ([]byte, int64, bool) {
		r, err := decodeRecord(old)
		if err != nil {
			r, ferr = record{}, err
		}
		if !fn(&r) {
			return nil, 0, false
		}
		return r.encode(), l.expiresAt(&r, now), true
	})
	if err != nil {
		return err
	}
	return ferr
}

// usable reports whether the lease covers a take at now: open, before its
// window's end, and renewed recently enough that it cannot expire while
// the request runs (half its TTL left).
func (l *Leases) usable(r *record, now int64) bool {
	return r.ID != "" && now < r.Valid && now < r.Expiry-l.set.TTL.Milliseconds()/2
}

// Take reserves n from counter's lease: ok is true when the lease covered
// it (settle it later with Settle); otherwise nothing was taken and the
// caller reserves at the keystore directly. Either way the demand is
// recorded, so the next renewal sizes the lease for it. counter is the
// item's "key" and "spec" members as the keystore's JSON API spells them
// (Item), which also identifies the record.
func (l *Leases) Take(counter string, n int64) (g Grant, ok bool, err error) {
	return l.draw(counter, n, false)
}

// Consume is Take and Settle(n, n) in one step, for consumption known up
// front (one request of a request quota): one CAS instead of two.
func (l *Leases) Consume(counter string, n int64) (g Grant, ok bool, err error) {
	return l.draw(counter, n, true)
}

// draw takes n from the lease, as a reservation (inflight) or, when
// consumed, as consumption (pending).
func (l *Leases) draw(counter string, n int64, consumed bool) (g Grant, ok bool, err error) {
	now := ms(l.host.Now())
	n = min(max(n, 0), maxAmount)
	kick, woke := false, false
	err = l.update(counter, now, func(r *record) bool {
		woke = !r.active(now)
		r.Demand = min(r.Demand+n, maxAmount)
		r.Peak = max(r.Peak, n)
		r.LastUse = now
		ok = l.usable(r, now) && r.Avail >= n
		if ok {
			r.Avail -= n
			if consumed {
				r.Pending = min(r.Pending+n, maxAmount)
			} else {
				r.Inflight += n
			}
		}
		// The lease's frame ended (a rolling window's sub-bucket, a
		// calendar window): renew now rather than at the next tick. A new
		// counter waits for the tick, which sizes its first lease from
		// the demand seen meanwhile.
		kick = r.Flight <= now && r.ID != "" && now >= r.Valid
		g = Grant{Limit: r.Limit, Remaining: max(r.Remaining+r.Avail, 0), Reset: r.Reset}
		return true
	})
	if err != nil {
		return Grant{}, false, err
	}
	if woke {
		if err := l.markActive(counter); err != nil {
			// Unmarked, the leader would never renew it: give it back.
			if ok && !consumed {
				_ = l.Settle(counter, n, 0)
			}
			return Grant{}, false, err
		}
	}
	if kick {
		// Best effort: a failed kick is retried by the next tick.
		_, _ = l.send([]string{counter}, now)
	}
	return g, ok, nil
}

// Settle ends a local reservation of taken that consumed actual (0 gives
// it all back): the unused part returns to the lease and the consumption
// waits for the leader's next report. ErrLost means the record is gone and
// actual was not recorded.
func (l *Leases) Settle(counter string, taken, actual int64) error {
	now := ms(l.host.Now())
	taken, actual = min(max(taken, 0), maxAmount), min(max(actual, 0), maxAmount)
	lost := false
	err := l.update(counter, now, func(r *record) bool {
		if r.ID == "" && r.Inflight == 0 && r.Pending == 0 && r.Limit == 0 && r.LastUse == 0 {
			lost = true
			return false
		}
		lost = false
		r.Inflight = max(r.Inflight-taken, 0)
		r.Avail += taken - actual
		r.Pending = min(r.Pending+actual, maxAmount)
		return true
	})
	if err == nil && lost {
		err = ErrLost
	}
	return err
}

// Item is the counter string for Take and Settle: the "key" and "spec"
// members of a keystore item, e.g. `"key":{...},"spec":{...}`.
func Item(keyAndSpec []byte) string { return string(keyAndSpec) }

// ---- the active sets ----

// active reports whether the leader must look at a record: it holds a
// lease, demand, reservations or unreported consumption, or a callout is
// in flight for it.
func (r *record) active(now int64) bool {
	return r.ID != "" || r.Demand > 0 || r.Pending > 0 || r.Inflight > 0 || r.Flight > now
}

// activeSets reads the bitmap of table sets that may hold active records,
// and its CAS version.
func (l *Leases) activeSets() ([]byte, uint32, error) {
	n := (l.table.Sets() + 7) / 8
	v, cas, found, err := l.store.Get(l.marks)
	if err != nil {
		return nil, 0, config.Wrap("lease: read active sets: ", err, "")
	}
	out := make([]byte, n)
	if found {
		copy(out, v)
	}
	return out, cas, nil
}

// markActive marks the set of a counter that just became active. It always
// writes, so that a leader unmarking the set concurrently fails its CAS.
func (l *Leases) markActive(counter string) error {
	key := l.table.SetOf(counter)
	i, err := strconv.Atoi(key[strings.LastIndexByte(key, '.')+1:])
	if err != nil {
		return config.Wrap("lease: set of "+strconv.Quote(key)+": ", err, "")
	}
	for range table.MaxAttempts {
		marks, cas, err := l.activeSets()
		if err != nil {
			return err
		}
		marks[i/8] |= 1 << (i % 8)
		ok, err := l.store.Set(l.marks, marks, cas)
		if err != nil {
			return config.Wrap("lease: mark active: ", err, "")
		}
		if ok {
			return nil
		}
	}
	return table.ErrContention
}

// ---- the leader ----

// lead claims or keeps the leadership; the claim lasts three ticks, so a
// leader whose VM died is replaced within them.
func (l *Leases) lead(now int64) bool {
	v, cas, found, err := l.store.Get(l.leader)
	if err != nil {
		return false
	}
	var owner uint64
	var until int64
	if found {
		owner, until, _ = decodeLeader(v)
	}
	if owner != l.worker && until > now {
		return false
	}
	next := encodeLeader(l.worker, now+3*l.set.Renew.Milliseconds())
	ok, err := l.store.Set(l.leader, next, cas)
	return err == nil && ok
}

func encodeLeader(owner uint64, until int64) []byte {
	b := strconv.AppendUint(nil, owner, 16)
	b = append(b, ' ')
	return strconv.AppendInt(b, until, 10)
}

func decodeLeader(v []byte) (uint64, int64, bool) {
	for i, c := range v {
		if c == ' ' {
			o, err1 := strconv.ParseUint(string(v[:i]), 16, 64)
			u, err2 := strconv.ParseInt(string(v[i+1:]), 10, 64)
			return o, u, err1 == nil && err2 == nil
		}
	}
	return 0, 0, false
}

// candidate is a counter the tick reports or renews.
type candidate struct {
	counter string
	rec     record
}

// sent is one item of a lease callout.
type sent struct {
	counter string
	used    int64
	want    int64
	seq     int64
}

// Tick runs on every worker's tick: the leader reports consumption and
// renews, resizes or returns the active leases with one callout. It
// returns the number of counters it sent (0 on other workers).
func (l *Leases) Tick() (int, error) {
	t := l.host.Now()
	now := ms(t)
	if !l.lead(now) {
		return 0, nil
	}
	// Only the sets marked active are read: a tick costs a read per set
	// holding an active counter, not one per set of the table.
	marks, cas, err := l.activeSets()
	if err != nil {
		return 0, err
	}
	var cands []candidate
	var scanErr error
	idle := false
	for i := range l.table.Sets() {
		if marks[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		active := false
		err := l.table.Scan(i, now, func(id string, v []byte, _ int64) {
			r, err := decodeRecord(v)
			if err != nil || !r.active(now) {
				return
			}
			active = true
			if r.Flight <= now {
				cands = append(cands, candidate{counter: id, rec: r})
			}
		})
		if err != nil {
			active = true // read again next tick
			if scanErr == nil {
				scanErr = err
			}
		}
		if !active {
			marks[i/8] &^= 1 << (i % 8)
			idle = true
		}
	}
	if idle {
		// Unmark the sets found idle, unless a take marked one meanwhile
		// (its write changed the version): then next tick.
		_, _ = l.store.Set(l.marks, marks, cas)
	}
	if len(cands) == 0 {
		return 0, scanErr
	}
	if len(cands) > MaxItems {
		// The leases closest to expiry (or none yet) go first; the rest next tick.
		// sort.Slice, not slices.SortFunc: the suite links sort.Slice
		// already, and a pdqsort of its own for this struct cost 20 KB.
		sort.Slice(cands, func(i, j int) bool { return cands[i].rec.Expiry < cands[j].rec.Expiry })
		cands = cands[:MaxItems]
	}
	counters := make([]string, len(cands))
	for k, c := range cands {
		counters[k] = c.counter
	}
	n, err := l.send(counters, now)
	if err == nil {
		err = scanErr
	}
	return n, err
}

// send reports and renews the given counters with one callout, skipping
// those with a callout in flight; it returns the number sent.
func (l *Leases) send(counters []string, now int64) (int, error) {
	tag := rand.Uint64() | 1
	flight := now + (l.timeout + time.Second).Milliseconds()
	body := make([]byte, 0, 64+len(counters)*400)
	body = append(body, `{"items":[`...)
	var items []sent
	for _, counter := range counters {
		var it sent
		var idLease string
		var minHeld int64
		ok := false
		err := l.update(counter, now, func(r *record) bool {
			if r.Flight > now {
				ok = false
				return false
			}
			ok = true
			it, idLease, minHeld = l.plan(r, counter, now)
			it.counter = counter
			r.Seq = max(r.Seq, 1) // the same on a re-send of an unanswered report
			it.seq = r.Seq
			r.Flight, r.Tag, r.Sent = flight, tag, it.used
			return true
		})
		if err != nil || !ok {
			continue
		}
		if len(items) > 0 {
			body = append(body, ',')
		}
		body = append(body, '{')
		body = append(body, counter...)
		body = append(body, `,"id":`...)
		body = jsonenc.AppendString(body, idLease)
		body = append(body, `,"used":`...)
		body = strconv.AppendInt(body, it.used, 10)
		body = append(body, `,"want":`...)
		body = strconv.AppendInt(body, it.want, 10)
		body = append(body, `,"min":`...)
		body = strconv.AppendInt(body, minHeld, 10)
		body = append(body, `,"ttl_ms":`...)
		body = strconv.AppendInt(body, l.set.TTL.Milliseconds(), 10)
		body = append(body, `,"seq":`...)
		body = strconv.AppendInt(body, it.seq, 10)
		body = append(body, '}')
		items = append(items, it)
	}
	if len(items) == 0 {
		return 0, nil
	}
	body = append(body, "]}"...)
	err := l.host.Dispatch(body, func(failed bool, status int, answer []byte) {
		l.answer(items, tag, failed, status, answer)
	})
	if err != nil {
		l.giveUp(items, tag)
		return 0, config.Wrap("lease callout: ", err, "")
	}
	return len(items), nil
}

// plan decides one record's renewal at send time and prepares the record:
// the demand folded into the rate, and the local part of a shrink given up
// before the keystore is asked, so that nothing taken while the callout is
// in flight can exceed what the keystore keeps (min). It returns the item,
// the lease id to send and min.
func (l *Leases) plan(r *record, counter string, now int64) (sent, string, int64) {
	r.Rate = (r.Rate + r.Demand) / 2
	demand := r.Demand
	peak := r.Peak
	r.Peak -= r.Peak / 4
	r.Demand = 0
	inflight := max(r.Inflight, 0)
	var want int64
	if demand == 0 && inflight == 0 && now-r.LastUse >= l.set.Idle.Milliseconds() {
		want = 0 // idle: return the lease early
	} else {
		// Enough for three renewals at the recent demand (ticks run late
		// on a busy worker) and two of the largest requests.
		want = inflight + 3*max(r.Rate, demand) + 2*peak
		want = min(want, inflight+l.set.Max)
		limit := r.Limit
		if limit <= 0 {
			limit = specLimit(counter)
		}
		if limit >= 0 {
			// Never more than an eighth of the limit, so that budget
			// stranded in leases (this Envoy's own, between a frame's end
			// and its renewal, or other Envoys') stays a small part of it.
			want = min(want, inflight+limit/MaxShare)
		}
		if r.Limit > 0 {
			// Near the limit, hold at most half of what is still free,
			// so that other gateways find budget too.
			free := r.Remaining + max(r.Avail, 0) + inflight
			want = min(want, inflight+max(free-inflight, 0)/2)
		}
	}
	want = min(max(want, inflight), maxAmount)
	if r.Avail > want-inflight {
		r.Avail = want - inflight
	}
	minHeld := inflight + max(r.Avail, 0)
	id := r.ID
	return sent{used: r.Pending, want: want}, id, min(minHeld, want)
}

// specLimit reads the limit from a counter's item ("spec":{"limit":N…);
// -1 when it has none.
func specLimit(counter string) int64 {
	const at = `"spec":{"limit":`
	i := strings.Index(counter, at)
	if i < 0 {
		return -1
	}
	rest := counter[i+len(at):]
	j := 0
	for j < len(rest) && j < 17 && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(rest[:j], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// giveUp clears the flight of items whose callout never left.
func (l *Leases) giveUp(items []sent, tag uint64) {
	now := ms(l.host.Now())
	for _, it := range items {
		_ = l.update(it.counter, now, func(r *record) bool {
			if r.Tag != tag || r.Flight == 0 {
				return false
			}
			r.Flight = 0
			return true
		})
	}
}

// answer applies the keystore's answer to a lease callout.
func (l *Leases) answer(items []sent, tag uint64, failed bool, status int, body []byte) {
	t := l.host.Now()
	now := ms(t)
	results, err := parseAnswer(failed, status, body, len(items))
	for i, it := range items {
		var res *result
		if err == nil && results[i].err == nil {
			res = &results[i]
		}
		_ = l.update(it.counter, now, func(r *record) bool {
			if r.Tag != tag || r.Flight == 0 {
				return false // given up, and perhaps sent again since
			}
			r.Flight = 0
			if res == nil {
				// Unknown outcome: the consumption stays pending and is
				// reported again; the lease keeps its local state.
				return true
			}
			s := r.Sent
			r.Seq++
			r.ID = res.id
			r.Avail = res.held - max(r.Inflight, 0) - (r.Pending - s)
			r.Pending -= s
			r.Sent = 0
			r.Limit, r.Remaining, r.Reset = res.limit, res.remaining, res.reset
			if r.ID == "" {
				r.Valid, r.Expiry = 0, 0
			} else {
				r.Valid = now + res.validFor
				r.Expiry = now + l.set.TTL.Milliseconds()
			}
			return true
		})
	}
}
