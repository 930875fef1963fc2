package counter

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/window"
)

// Limits of the engine's inputs.
const (
	// MaxBatch is the most requests one batch may carry.
	MaxBatch = 128
	// DefaultReservationTTL applies when Reserve is given no TTL.
	DefaultReservationTTL = 2 * time.Minute
	// MaxReservationTTL bounds how long a reservation may stay open.
	MaxReservationTTL = 24 * time.Hour
)

// ErrInvalidRequest marks every validation failure of engine input other
// than keys (ErrInvalidKey) and specs (window.ErrInvalidSpec).
var ErrInvalidRequest = errors.New("invalid counter request")

// Request asks to count N units of usage against one key and spec.
type Request struct {
	// Key is the counter.
	Key Key `json:"key"`
	// Spec is the quota applied to it.
	Spec window.Spec `json:"spec"`
	// N is the usage to count; 0 only queries the counter.
	N int64 `json:"n"`
	// Force records N even when it does not fit, for usage that already
	// happened (the Decision still says whether it fitted).
	Force bool `json:"force,omitempty"`
}

// Validate reports the first problem with the request.
func (r Request) Validate() error {
	if err := r.Key.Validate(); err != nil {
		return err
	}
	if err := r.Spec.Validate(); err != nil {
		return err
	}
	if r.N < 0 || r.N > window.MaxLimit {
		return config.Wrap("", ErrInvalidRequest, ": n "+strconv.FormatInt(r.N, 10)+" out of range [0, 2^53]")
	}
	return nil
}

// Decision is the engine's answer for one key.
type Decision struct {
	// Allowed reports whether the usage fitted and was counted.
	Allowed bool
	// Limit is the spec's limit.
	Limit int64
	// Used is the usage counted in the window after this decision.
	Used int64
	// Remaining is Limit−Used, never below zero.
	Remaining int64
	// Reset is when the window's current usage is entirely forgotten: the end
	// of a calendar or flexi window, or the expiry of the newest rolling bucket.
	Reset time.Time
	// RetryAfter is, for a denied request, how long until the same request
	// would fit if nothing else were counted meanwhile; 0 when allowed.
	RetryAfter time.Duration
}

// Reservation is a charge counted against the limit until settled, released
// or expired.
type Reservation struct {
	Decision
	// ID identifies the reservation for Settle and Release; empty if denied.
	ID string
	// Expires is when the reservation is released automatically.
	Expires time.Time
}

// Limiter is the set of operations the data plane needs; Engine implements
// it, and handlers accept it so they can be tested against fakes.
type Limiter interface {
	// ConsumeBatch counts several requests in one round trip.
	ConsumeBatch(ctx context.Context, reqs []Request, atomic bool) ([]Decision, error)
	// ReserveBatch reserves several requests, all or none.
	ReserveBatch(ctx context.Context, reqs []Request, ttl time.Duration) ([]Reservation, error)
	// Settle replaces a reservation by the actual usage.
	Settle(ctx context.Context, id string, actual int64) (Decision, error)
	// Release returns a reservation's usage.
	Release(ctx context.Context, id string) (Decision, error)
	// Lease reports consumption on, and resizes, budget leases.
	Lease(ctx context.Context, reqs []LeaseRequest) ([]Lease, error)
}

// Engine is the backend-neutral quota engine.
type Engine struct {
	backend Backend
	now     func() time.Time
}

// Option configures an Engine.
type Option func(*Engine)

// WithClock replaces time.Now, for tests and for deterministic replays.
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// New returns an engine over the given backend.
func New(b Backend, opts ...Option) *Engine {
	e := &Engine{backend: b, now: time.Now}
	for _, o := range opts {
		o(e)
	}
	return e
}

var _ Limiter = (*Engine)(nil)

// Close closes the backend.
func (e *Engine) Close() error { return e.backend.Close() }

// Consume counts n units against key under spec.
func (e *Engine) Consume(ctx context.Context, key Key, spec window.Spec, n int64) (Decision, error) {
	ds, err := e.ConsumeBatch(ctx, []Request{{Key: key, Spec: spec, N: n}}, false)
	if err != nil {
		return Decision{}, err
	}
	return ds[0], nil
}

// ConsumeBatch decides several requests in one backend round trip. With
// atomic set, nothing is counted unless every request fits, and then every
// Decision reports Allowed=false.
func (e *Engine) ConsumeBatch(ctx context.Context, reqs []Request, atomic bool) ([]Decision, error) {
	if err := validateBatch(reqs); err != nil {
		return nil, err
	}
	now := e.now()
	ops := make([]Op, len(reqs))
	for i, r := range reqs {
		ops[i] = Op{Frame: frameFor(r.Key, r.Spec, now), N: r.N, Limit: r.Spec.Limit, Force: r.Force}
	}
	outs, err := e.backend.Apply(ctx, window.Ms(now), ops, atomic)
	if err != nil {
		return nil, config.Wrap("counter backend: ", err, "")
	}
	ds := make([]Decision, len(reqs))
	for i, r := range reqs {
		ds[i] = decide(r.Spec, now, r.N, outs[i])
	}
	return ds, nil
}

// Reserve counts n units against key now and returns a reservation to settle
// with the actual usage later; ttl ≤ 0 means DefaultReservationTTL.
func (e *Engine) Reserve(ctx context.Context, key Key, spec window.Spec, n int64, ttl time.Duration) (Reservation, error) {
	rs, err := e.ReserveBatch(ctx, []Request{{Key: key, Spec: spec, N: n}}, ttl)
	if err != nil {
		return Reservation{}, err
	}
	return rs[0], nil
}

// ReserveBatch reserves every request or none (for a token budget held by
// several quotas at once); Force is not allowed.
func (e *Engine) ReserveBatch(ctx context.Context, reqs []Request, ttl time.Duration) ([]Reservation, error) {
	if err := validateBatch(reqs); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = DefaultReservationTTL
	}
	if ttl > MaxReservationTTL {
		return nil, config.Wrap("", ErrInvalidRequest, ": ttl "+ttl.String()+" longer than "+MaxReservationTTL.String())
	}
	now := e.now()
	expires := now.Add(ttl)
	ops := make([]Op, len(reqs))
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		if r.Force {
			return nil, config.Wrap("", ErrInvalidRequest, ": force is not allowed on a reservation")
		}
		token, err := newToken()
		if err != nil {
			return nil, err
		}
		ids[i] = encodeID(r.Key, r.Spec, token)
		ops[i] = Op{Frame: frameFor(r.Key, r.Spec, now), N: r.N, Limit: r.Spec.Limit,
			Reservation: token, ReservationExpires: window.Ms(expires)}
	}
	outs, err := e.backend.Apply(ctx, window.Ms(now), ops, true)
	if err != nil {
		return nil, config.Wrap("counter backend: ", err, "")
	}
	rs := make([]Reservation, len(reqs))
	for i, r := range reqs {
		rs[i].Decision = decide(r.Spec, now, r.N, outs[i])
		if rs[i].Allowed {
			rs[i].ID = ids[i]
			rs[i].Expires = window.FromMs(window.Ms(expires))
		}
	}
	return rs, nil
}

// Settle replaces the reserved amount by actual, which may be larger or
// smaller and may exceed the limit (the excess then blocks later requests).
// The usage stays in the window where it was reserved; if that window has
// ended, settling changes no current count.
func (e *Engine) Settle(ctx context.Context, id string, actual int64) (Decision, error) {
	if actual < 0 || actual > window.MaxLimit {
		return Decision{}, config.Wrap("", ErrInvalidRequest, ": actual "+strconv.FormatInt(actual, 10)+" out of range [0, 2^53]")
	}
	return e.adjust(ctx, id, actual)
}

// Release returns the whole reserved amount.
func (e *Engine) Release(ctx context.Context, id string) (Decision, error) {
	return e.adjust(ctx, id, -1)
}

func (e *Engine) adjust(ctx context.Context, id string, actual int64) (Decision, error) {
	key, spec, token, err := decodeID(id)
	if err != nil {
		return Decision{}, err
	}
	now := e.now()
	out, err := e.backend.Adjust(ctx, window.Ms(now), Adjustment{Frame: frameFor(key, spec, now), Reservation: token, Actual: actual})
	if err != nil {
		if errors.Is(err, ErrReservationNotFound) {
			return Decision{}, err
		}
		return Decision{}, config.Wrap("counter backend: ", err, "")
	}
	d := decide(spec, now, 0, out)
	d.Allowed = out.Used <= spec.Limit
	return d, nil
}

func validateBatch(reqs []Request) error {
	if len(reqs) == 0 || len(reqs) > MaxBatch {
		return config.Wrap("", ErrInvalidRequest, ": a batch holds 1 to "+strconv.Itoa(MaxBatch)+" requests, got "+strconv.Itoa(len(reqs)))
	}
	for i, r := range reqs {
		if err := r.Validate(); err != nil {
			return config.Wrap("request "+strconv.Itoa(i)+": ", err, "")
		}
	}
	return nil
}

// CounterID is the storage identity of a key under a spec: the canonical key
// and the window shape, so that a changed limit keeps the counted usage.
func CounterID(k Key, s window.Spec) string { return k.String() + "|" + s.Shape() }

// frameFor computes the counting geometry of key under spec at now.
func frameFor(k Key, s window.Spec, now time.Time) Frame {
	f := Frame{Counter: CounterID(k, s), Kind: s.Kind}
	switch s.Kind {
	case window.Calendar:
		start, end := s.CalendarWindow(now)
		f.Current, f.Oldest, f.Deadline = window.Ms(start), window.Ms(start), window.Ms(end)
	case window.Rolling:
		f.Current, f.Oldest = s.RollingFrame(now)
		f.Deadline = window.Ms(s.BucketExpiry(f.Current))
	case window.Flexi:
		f.FlexiStart = window.Ms(now)
		f.FlexiEnd = window.Ms(s.FlexiEnd(now))
	}
	return f
}

// decide turns a backend outcome into a Decision: reset and retry times.
func decide(s window.Spec, now time.Time, n int64, o Outcome) Decision {
	d := Decision{Allowed: o.Allowed, Limit: s.Limit, Used: o.Used, Remaining: max(0, s.Limit-o.Used)}
	nowMs := window.Ms(now)
	switch s.Kind {
	case window.Calendar:
		_, d.Reset = s.CalendarWindow(now)
	case window.Flexi:
		if o.WindowEnd > nowMs {
			d.Reset = window.FromMs(o.WindowEnd)
		} else {
			d.Reset = s.FlexiEnd(now)
		}
	case window.Rolling:
		d.Reset = window.FromMs(nowMs)
		for i := len(o.Buckets) - 1; i >= 0; i-- {
			if o.Buckets[i].Used > 0 {
				d.Reset = s.BucketExpiry(o.Buckets[i].Index)
				break
			}
		}
	}
	if d.Allowed || o.Used+n <= s.Limit {
		return d
	}
	d.RetryAfter = d.Reset.Sub(now)
	if s.Kind == window.Rolling && n <= s.Limit {
		// The request fits once enough of the oldest buckets have expired.
		left := o.Used
		for _, b := range o.Buckets {
			left -= b.Used
			if left+n <= s.Limit {
				d.RetryAfter = s.BucketExpiry(b.Index).Sub(now)
				break
			}
		}
	}
	if d.RetryAfter < 0 {
		d.RetryAfter = 0
	}
	return d
}

// newToken returns 96 random bits in hex: the part of a reservation id the
// backend stores.
func newToken() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", config.Wrap("reservation token: ", err, "")
	}
	return hex.EncodeToString(b[:]), nil
}

// encodeID packs key, spec and token into an opaque URL-safe id, so that a
// settle needs no lookup to find the counter and its window.
func encodeID(k Key, s window.Spec, token string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(k.String() + " " + s.String() + " " + token))
}

// maxIDLen bounds ids before decoding them.
const maxIDLen = 4096

func decodeID(id string) (Key, window.Spec, string, error) {
	bad := func(why string) error {
		return config.Wrap("", ErrInvalidRequest, ": malformed reservation id ("+why+")")
	}
	if id == "" || len(id) > maxIDLen {
		return Key{}, window.Spec{}, "", bad("length")
	}
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil {
		return Key{}, window.Spec{}, "", bad("encoding")
	}
	parts := strings.Split(string(raw), " ")
	if len(parts) != 3 {
		return Key{}, window.Spec{}, "", bad("parts")
	}
	k, err := ParseKey(parts[0])
	if err != nil {
		return Key{}, window.Spec{}, "", bad("key")
	}
	s, err := window.ParseCompact(parts[1])
	if err != nil {
		return Key{}, window.Spec{}, "", bad("spec")
	}
	if len(parts[2]) != 24 {
		return Key{}, window.Spec{}, "", bad("token")
	}
	if _, err := hex.DecodeString(parts[2]); err != nil {
		return Key{}, window.Spec{}, "", bad("token")
	}
	return k, s, parts[2], nil
}
