// Package redisstore is the shared counter.Backend: every operation runs as
// one Lua script on Redis (EVALSHA, falling back to EVAL when the script
// cache was flushed), so any number of engine instances sharing a Redis keep
// exact counts.
//
// Each counter uses three keys in one hash slot ("<prefix>{<counter>}",
// "…:r" for reservations and "…:z" for their expiries), all with TTLs that
// end one second after the last bucket or reservation stops mattering, so
// Redis never grows without bound. Expired reservations are released inside
// the scripts, atomically, the next time their counter is touched. A batch
// spans several counters, so batches need a single Redis, not a cluster.
package redisstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/window"
)

//go:embed counter.lua
var scriptSource string

// DefaultPrefix starts every key this backend writes.
const DefaultPrefix = "tollgate:q:"

// Options configures a Store.
type Options struct {
	// Prefix starts every key; default DefaultPrefix.
	Prefix string
}

// Store is a counter.Backend on Redis.
type Store struct {
	client redis.Scripter
	closer func() error
	script *redis.Script
	prefix string
}

var (
	_ counter.Backend      = (*Store)(nil)
	_ counter.LeaseBackend = (*Store)(nil)
)

// New returns a store over an existing client; Close leaves the client open.
func New(client redis.Scripter, opts Options) *Store {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	return &Store{client: client, closer: func() error { return nil }, script: redis.NewScript(scriptSource), prefix: opts.Prefix}
}

// Open connects to the Redis at url (redis://host:port/db), checks it with a
// PING and loads the script; Close closes the connection.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	c := redis.NewClient(o)
	s := New(c, opts)
	s.closer = c.Close
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redisstore: ping %s: %w", o.Addr, err)
	}
	if err := s.script.Load(ctx, c).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redisstore: load script: %w", err)
	}
	return s, nil
}

// Close closes the connection if Open made it.
func (s *Store) Close() error { return s.closer() }

func (s *Store) keys(dst []string, counterID string) []string {
	base := s.prefix + "{" + counterID + "}"
	return append(dst, base, base+":r", base+":z")
}

func kindCode(k window.Kind) string {
	switch k {
	case window.Rolling:
		return "r"
	case window.Flexi:
		return "f"
	}
	return "c"
}

func i64(v int64) string { return strconv.FormatInt(v, 10) }

func b01(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

// Apply implements counter.Backend.
func (s *Store) Apply(ctx context.Context, now int64, ops []counter.Op, atomic bool) ([]counter.Outcome, error) {
	keys := make([]string, 0, 3*len(ops))
	args := make([]any, 0, 4+11*len(ops))
	args = append(args, "apply", i64(now), b01(atomic), strconv.Itoa(len(ops)))
	for _, op := range ops {
		keys = s.keys(keys, op.Counter)
		args = append(args, i64(op.N), i64(op.Limit), b01(op.Force), kindCode(op.Kind),
			i64(op.Current), i64(op.Oldest), i64(op.Deadline), i64(op.FlexiStart), i64(op.FlexiEnd),
			op.Reservation, i64(op.ReservationExpires))
	}
	res, err := s.script.Run(ctx, s.client, keys, args...).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: apply: %w", err)
	}
	list, ok := res.([]any)
	if !ok || len(list) != len(ops) {
		return nil, fmt.Errorf("redisstore: apply: unexpected reply %T", res)
	}
	outs := make([]counter.Outcome, len(ops))
	for i, r := range list {
		if outs[i], err = parseOutcome(r); err != nil {
			return nil, err
		}
	}
	return outs, nil
}

// Adjust implements counter.Backend.
func (s *Store) Adjust(ctx context.Context, now int64, a counter.Adjustment) (counter.Outcome, error) {
	res, err := s.script.Run(ctx, s.client, s.keys(nil, a.Counter),
		"adjust", i64(now), kindCode(a.Kind), i64(a.Oldest), a.Reservation, i64(a.Actual)).Result()
	if err != nil {
		return counter.Outcome{}, fmt.Errorf("redisstore: adjust: %w", err)
	}
	if l, ok := res.([]any); ok && len(l) == 1 {
		return counter.Outcome{}, counter.ErrReservationNotFound
	}
	return parseOutcome(res)
}

// Lease implements counter.LeaseBackend: the whole batch is one script
// call, so one round trip, and each op is atomic (the script runs alone).
func (s *Store) Lease(ctx context.Context, now int64, ops []counter.LeaseOp) ([]counter.LeaseOutcome, error) {
	keys := make([]string, 0, 3*len(ops))
	args := make([]any, 0, 3+14*len(ops))
	args = append(args, "lease", i64(now), strconv.Itoa(len(ops)))
	for _, op := range ops {
		keys = s.keys(keys, op.Counter)
		args = append(args, i64(op.Used), i64(op.Want), i64(op.Min), i64(op.Limit), kindCode(op.Kind),
			i64(op.Current), i64(op.Oldest), i64(op.Deadline), i64(op.FlexiStart), i64(op.FlexiEnd),
			op.Token, op.NewToken, i64(op.Expires), i64(op.Seq))
	}
	res, err := s.script.Run(ctx, s.client, keys, args...).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: lease: %w", err)
	}
	list, ok := res.([]any)
	if !ok || len(list) != len(ops) {
		return nil, fmt.Errorf("redisstore: lease: unexpected reply %T", res)
	}
	outs := make([]counter.LeaseOutcome, len(ops))
	for i, r := range list {
		l, ok := r.([]any)
		if !ok || len(l) != 8 {
			return nil, errReply
		}
		if outs[i].Outcome, err = parseFields(l[:5]); err != nil {
			return nil, err
		}
		held, ok1 := l[5].(int64)
		token, ok2 := l[6].(string)
		lost, ok3 := l[7].(int64)
		if !ok1 || !ok2 || !ok3 {
			return nil, errReply
		}
		outs[i].Held, outs[i].Token, outs[i].Lost = held, token, lost == 1
	}
	return outs, nil
}

var errReply = errors.New("redisstore: malformed script reply")

func parseOutcome(r any) (counter.Outcome, error) {
	l, ok := r.([]any)
	if !ok || len(l) != 5 {
		return counter.Outcome{}, errReply
	}
	return parseFields(l)
}

// parseFields reads the five outcome fields of a script reply.
func parseFields(l []any) (counter.Outcome, error) {
	if len(l) != 5 {
		return counter.Outcome{}, errReply
	}
	var ok bool
	var n [4]int64
	for i := range n {
		if n[i], ok = l[i].(int64); !ok {
			return counter.Outcome{}, errReply
		}
	}
	o := counter.Outcome{Allowed: n[0] == 1, Used: n[1], WindowStart: n[2], WindowEnd: n[3]}
	flat, ok := l[4].([]any)
	if !ok || len(flat)%2 != 0 {
		return counter.Outcome{}, errReply
	}
	for i := 0; i < len(flat); i += 2 {
		idx, ok1 := flat[i].(int64)
		used, ok2 := flat[i+1].(int64)
		if !ok1 || !ok2 {
			return counter.Outcome{}, errReply
		}
		o.Buckets = append(o.Buckets, counter.Bucket{Index: idx, Used: used})
	}
	return o, nil
}
