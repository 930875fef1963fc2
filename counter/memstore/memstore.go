// Package memstore is the embedded counter.Backend: counters in sharded,
// mutex-protected maps, swept for expiry in bounded steps, and persisted to a
// snapshot file so that a restart keeps the counted usage.
//
// Loss bound: the snapshot is rewritten (atomically, via rename) every
// SnapshotInterval while anything changed, and on Close. A clean shutdown
// loses nothing; a crash loses at most the changes of the last
// SnapshotInterval (1 s by default). A single process owns a data dir; run
// the Redis backend to share counts between processes.
package memstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/bucket"
	"github.com/tollgate/tollgate/window"
)

// SnapshotFile is the name of the snapshot inside the data dir.
const SnapshotFile = "counters.json"

const numShards = 64

// Options configures a Store; the zero value keeps everything in memory only.
type Options struct {
	// Dir is the data directory for the snapshot; empty disables persistence.
	Dir string
	// SnapshotInterval is how often a changed store is written; default 1 s.
	SnapshotInterval time.Duration
	// SweepInterval is how often expired counters are dropped; default 5 s.
	SweepInterval time.Duration
	// SweepLimit bounds the counters examined per shard per sweep; default 4096.
	SweepLimit int
	// Clock supplies the sweeper's notion of now; default time.Now. It should
	// be the same clock the Engine uses.
	Clock func() time.Time
	// Logger receives snapshot and sweep failures; default slog.Default().
	Logger *slog.Logger
}

// Store is an in-memory counter.Backend.
type Store struct {
	opts   Options
	seed   maphash.Seed
	shards [numShards]shard
	dirty  atomic.Bool
	// saveMu serialises snapshot writes.
	saveMu    sync.Mutex
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

type shard struct {
	mu sync.Mutex
	m  map[string]*state
}

// state is one counter: its window kind (for the snapshot) and the shared
// bucket arithmetic's state.
type state struct {
	Kind window.Kind
	bucket.State
}

var (
	_ counter.Backend      = (*Store)(nil)
	_ counter.LeaseBackend = (*Store)(nil)
)

// Open creates a store, loading the snapshot in opts.Dir if there is one, and
// starts the background sweeper and snapshot writer.
func Open(opts Options) (*Store, error) {
	if opts.SnapshotInterval <= 0 {
		opts.SnapshotInterval = time.Second
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = 5 * time.Second
	}
	if opts.SweepLimit <= 0 {
		opts.SweepLimit = 4096
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{opts: opts, seed: maphash.MakeSeed(), stop: make(chan struct{}), done: make(chan struct{})}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*state)
	}
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("memstore: data dir: %w", err)
		}
		if err := s.load(); err != nil {
			return nil, err
		}
	}
	go s.loop()
	return s, nil
}

func (s *Store) shardOf(id string) int {
	return int(maphash.String(s.seed, id) % numShards)
}

// lockShards locks the shards holding ids in index order and returns the
// unlock function.
func (s *Store) lockShards(ids ...string) func() {
	idx := make([]int, 0, len(ids))
	for _, id := range ids {
		idx = append(idx, s.shardOf(id))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		s.shards[i].mu.Lock()
	}
	return func() {
		for j := len(idx) - 1; j >= 0; j-- {
			s.shards[idx[j]].mu.Unlock()
		}
	}
}

// get returns the state for a counter, creating it when create is set.
// The caller holds the shard lock.
func (s *Store) get(id string, kind window.Kind, create bool) *state {
	m := s.shards[s.shardOf(id)].m
	st := m[id]
	if st == nil && create {
		st = &state{Kind: kind}
		m[id] = st
	}
	return st
}

// Apply implements counter.Backend.
func (s *Store) Apply(ctx context.Context, now int64, ops []counter.Op, atomic bool) ([]counter.Outcome, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ids := make([]string, len(ops))
	for i, op := range ops {
		ids[i] = op.Counter
	}
	unlock := s.lockShards(ids...)
	defer unlock()
	outs := make([]counter.Outcome, len(ops))
	if !atomic {
		for i, op := range ops {
			outs[i], _ = s.get(op.Counter, op.Kind, true).Apply(now, op)
		}
		s.dirty.Store(true)
		return outs, nil
	}
	// Atomic: decide all first, counting earlier ops of the batch on the same
	// counter, then apply all or none.
	pending := make(map[string]int64, len(ops))
	all := true
	for _, op := range ops {
		c := s.get(op.Counter, op.Kind, true).Prune(now, op.Frame)
		if !op.Force && !bucket.Fits(c, op, pending[op.Counter]) {
			all = false
		}
		pending[op.Counter] += op.N
	}
	for i, op := range ops {
		st := s.get(op.Counter, op.Kind, true)
		c := st.Prune(now, op.Frame)
		if all {
			_, c = st.Charge(op, c)
		}
		outs[i] = st.Outcome(op.Kind, all, c)
	}
	s.dirty.Store(true)
	return outs, nil
}

// Adjust implements counter.Backend.
func (s *Store) Adjust(ctx context.Context, now int64, a counter.Adjustment) (counter.Outcome, error) {
	if err := ctx.Err(); err != nil {
		return counter.Outcome{}, err
	}
	unlock := s.lockShards(a.Counter)
	defer unlock()
	st := s.get(a.Counter, a.Kind, false)
	if st == nil {
		return counter.Outcome{}, counter.ErrReservationNotFound
	}
	out, found := st.Adjust(now, a)
	if !found {
		return counter.Outcome{}, counter.ErrReservationNotFound
	}
	s.dirty.Store(true)
	return out, nil
}

// Lease implements counter.LeaseBackend: the ops run in order under the
// locks of every shard they touch, each with counter/bucket's arithmetic.
func (s *Store) Lease(ctx context.Context, now int64, ops []counter.LeaseOp) ([]counter.LeaseOutcome, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ids := make([]string, len(ops))
	for i, op := range ops {
		ids[i] = op.Counter
	}
	unlock := s.lockShards(ids...)
	defer unlock()
	outs := make([]counter.LeaseOutcome, len(ops))
	for i, op := range ops {
		var changed bool
		if outs[i], changed = s.get(op.Counter, op.Kind, true).Lease(now, op); changed {
			s.dirty.Store(true)
		}
	}
	return outs, nil
}

// Len returns the number of counters held, for tests and metrics.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		s.shards[i].mu.Lock()
		n += len(s.shards[i].m)
		s.shards[i].mu.Unlock()
	}
	return n
}

// Sweep drops counters whose state no longer matters at now, examining at
// most SweepLimit counters per shard, and returns how many it dropped.
func (s *Store) Sweep(now int64) int {
	dropped := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		seen := 0
		for id, st := range sh.m {
			if seen >= s.opts.SweepLimit {
				break
			}
			seen++
			if now >= st.ExpireAt {
				delete(sh.m, id)
				dropped++
			}
		}
		sh.mu.Unlock()
	}
	if dropped > 0 {
		s.dirty.Store(true)
	}
	return dropped
}

func (s *Store) loop() {
	defer close(s.done)
	snap := time.NewTicker(s.opts.SnapshotInterval)
	defer snap.Stop()
	sweep := time.NewTicker(s.opts.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-sweep.C:
			s.Sweep(window.Ms(s.opts.Clock()))
		case <-snap.C:
			if s.opts.Dir != "" && s.dirty.Load() {
				if err := s.Snapshot(); err != nil {
					s.opts.Logger.Error("memstore snapshot failed", "dir", s.opts.Dir, "err", err)
				}
			}
		}
	}
}

// Close stops the background work and writes a final snapshot.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		if s.opts.Dir != "" {
			s.closeErr = s.Snapshot()
		}
	})
	return s.closeErr
}

// snapshot is the on-disk form of a store.
type snapshot struct {
	Version  int           `json:"version"`
	SavedAt  int64         `json:"saved_at"`
	Counters []snapCounter `json:"counters"`
}

type snapCounter struct {
	ID       string     `json:"id"`
	Kind     string     `json:"kind"`
	Buckets  [][2]int64 `json:"buckets,omitempty"`
	FS       int64      `json:"fs,omitempty"`
	FE       int64      `json:"fe,omitempty"`
	Res      []snapRes  `json:"res,omitempty"`
	ExpireAt int64      `json:"expire_at"`
}

type snapRes struct {
	Token    string `json:"token"`
	Bucket   int64  `json:"bucket"`
	Amount   int64  `json:"amount"`
	Expires  int64  `json:"expires"`
	Seq      int64  `json:"seq,omitempty"`
	Reported int64  `json:"reported,omitempty"`
}

// Snapshot writes the whole store to the data dir atomically.
func (s *Store) Snapshot() error {
	if s.opts.Dir == "" {
		return errors.New("memstore: no data dir")
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.dirty.Store(false)
	snap := snapshot{Version: 1, SavedAt: window.Ms(s.opts.Clock())}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for id, st := range sh.m {
			c := snapCounter{ID: id, Kind: st.Kind.String(), FS: st.FlexiStart, FE: st.FlexiEnd, ExpireAt: st.ExpireAt}
			for _, b := range st.Buckets {
				c.Buckets = append(c.Buckets, [2]int64{b.Index, b.Used})
			}
			for _, r := range st.Reservations {
				c.Res = append(c.Res, snapRes{Token: r.Token, Bucket: r.Bucket, Amount: r.Amount, Expires: r.Expires, Seq: r.Seq, Reported: r.Reported})
			}
			snap.Counters = append(snap.Counters, c)
		}
		sh.mu.Unlock()
	}
	b, err := json.Marshal(snap)
	if err != nil {
		s.dirty.Store(true)
		return fmt.Errorf("memstore: encode snapshot: %w", err)
	}
	if err := writeAtomic(filepath.Join(s.opts.Dir, SnapshotFile), b); err != nil {
		s.dirty.Store(true)
		return err
	}
	return nil
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".counters-*.tmp")
	if err != nil {
		return fmt.Errorf("memstore: snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("memstore: write snapshot: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("memstore: sync snapshot: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("memstore: close snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("memstore: install snapshot: %w", err)
	}
	return nil
}

func (s *Store) load() error {
	b, err := os.ReadFile(filepath.Join(s.opts.Dir, SnapshotFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("memstore: read snapshot: %w", err)
	}
	var snap snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("memstore: snapshot %s is corrupt (move it away to start empty): %w", SnapshotFile, err)
	}
	if snap.Version != 1 {
		return fmt.Errorf("memstore: snapshot version %d not supported", snap.Version)
	}
	now := window.Ms(s.opts.Clock())
	for _, c := range snap.Counters {
		if now >= c.ExpireAt {
			continue
		}
		kind, err := window.ParseKind(c.Kind)
		if err != nil {
			return fmt.Errorf("memstore: snapshot counter %q: %w", c.ID, err)
		}
		st := &state{Kind: kind, State: bucket.State{FlexiStart: c.FS, FlexiEnd: c.FE, ExpireAt: c.ExpireAt}}
		// Snapshots of earlier versions listed buckets in map order.
		slices.SortFunc(c.Buckets, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
		for _, bk := range c.Buckets {
			if bk[1] <= 0 {
				continue
			}
			if n := len(st.Buckets); n > 0 && st.Buckets[n-1].Index == bk[0] {
				return fmt.Errorf("memstore: snapshot counter %q: bucket %d listed twice", c.ID, bk[0])
			}
			st.Buckets = append(st.Buckets, counter.Bucket{Index: bk[0], Used: bk[1]})
		}
		for _, r := range c.Res {
			st.Reservations = append(st.Reservations, bucket.Reservation{Token: r.Token, Bucket: r.Bucket, Amount: r.Amount, Expires: r.Expires, Seq: r.Seq, Reported: r.Reported})
		}
		s.shards[s.shardOf(c.ID)].m[c.ID] = st
	}
	return nil
}
