package analytics

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Bolt buckets, next to the keystore's in the same file.
const (
	boltSeen    = "analytics.seen"    // request id -> seen-until (Unix ms, 8 bytes)
	boltSeenExp = "analytics.seenexp" // seen-until (8 bytes) ‖ request id -> empty, for pruning
	boltAggPfx  = "analytics.agg."    // + resolution: start (8 bytes) ‖ dims -> Totals
	boltRaw     = "analytics.raw"     // record time (Unix ms, 8 bytes) ‖ request id -> the record's JSON
)

// pruneChunk bounds the deletions of one prune transaction.
const pruneChunk = 5000

type boltEngine struct{ db *bolt.DB }

// NewBolt keeps aggregates in an open bbolt database (the keystore's file);
// the caller owns db.
func NewBolt(db *bolt.DB, cfg Config) (*Store, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		names := []string{boltSeen, boltSeenExp, boltRaw}
		for _, r := range resolutions {
			names = append(names, boltAggPfx+string(r))
		}
		for _, n := range names {
			if _, err := tx.CreateBucketIfNotExists([]byte(n)); err != nil {
				return fmt.Errorf("create bucket %s: %w", n, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("init analytics buckets: %w", err)
	}
	cfg.defaults()
	return &Store{cfg: cfg, eng: &boltEngine{db: db}}, nil
}

func be64(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

func aggKey(start int64, dims string) []byte { return append(be64(start), dims...) }

func (e *boltEngine) ingest(ctx context.Context, items []item) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n := 0
	err := e.db.Update(func(tx *bolt.Tx) error {
		n = 0
		seen, exp := tx.Bucket([]byte(boltSeen)), tx.Bucket([]byte(boltSeenExp))
		for i := range items {
			it := &items[i]
			if seen.Get([]byte(it.rid)) != nil {
				continue
			}
			if err := seen.Put([]byte(it.rid), be64(it.seenUntil)); err != nil {
				return fmt.Errorf("remember request id: %w", err)
			}
			if err := exp.Put(append(be64(it.seenUntil), it.rid...), nil); err != nil {
				return fmt.Errorf("index request id: %w", err)
			}
			if it.raw != nil {
				if err := tx.Bucket([]byte(boltRaw)).Put(append(be64(it.rawAt), it.rid...), it.raw); err != nil {
					return fmt.Errorf("keep raw record: %w", err)
				}
			}
			for k, res := range resolutions {
				b := tx.Bucket([]byte(boltAggPfx + string(res)))
				key := aggKey(it.starts[k], it.dims)
				t := it.totals
				if old := b.Get(key); old != nil {
					prev, err := unmarshalTotals(old)
					if err != nil {
						return err
					}
					t.Add(prev)
				}
				if err := b.Put(key, t.marshal()); err != nil {
					return fmt.Errorf("add to %s aggregate: %w", res, err)
				}
			}
			n++
		}
		return nil
	})
	return n, err
}

func (e *boltEngine) scan(ctx context.Context, res Resolution, from, to int64, fn func(int64, Dims, Totals) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(boltAggPfx + string(res))).Cursor()
		end := be64(to)
		for k, v := c.Seek(be64(from)); k != nil && bytes.Compare(k[:8], end) < 0; k, v = c.Next() {
			if len(k) < 8 {
				return fmt.Errorf("corrupt aggregate key of %d bytes", len(k))
			}
			d, err := decodeDims(string(k[8:]))
			if err != nil {
				return err
			}
			t, err := unmarshalTotals(v)
			if err != nil {
				return err
			}
			if err := fn(int64(binary.BigEndian.Uint64(k[:8])), d, t); err != nil {
				return err
			}
		}
		return nil
	})
}

// deleteBelow deletes up to pruneChunk keys of bucket that sort before limit
// and reports whether more may remain; onKey sees each deleted key first.
func deleteBelow(tx *bolt.Tx, bucket string, limit []byte, onKey func(k []byte) error) (bool, error) {
	b := tx.Bucket([]byte(bucket))
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, limit) < 0; k, _ = c.Next() {
		if len(keys) == pruneChunk {
			break
		}
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if onKey != nil {
			if err := onKey(k); err != nil {
				return false, err
			}
		}
		if err := b.Delete(k); err != nil {
			return false, fmt.Errorf("prune %s: %w", bucket, err)
		}
	}
	return len(keys) == pruneChunk, nil
}

func (e *boltEngine) raw(ctx context.Context, fromMS, toMS int64, fn func([]byte) (bool, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(boltRaw)).Cursor()
		end := be64(toMS)
		for k, v := c.Seek(be64(fromMS)); k != nil && bytes.Compare(k[:8], end) < 0; k, v = c.Next() {
			if len(k) < 8 {
				return fmt.Errorf("corrupt raw record key of %d bytes", len(k))
			}
			more, err := fn(v)
			if err != nil || !more {
				return err
			}
		}
		return nil
	})
}

func (e *boltEngine) prune(ctx context.Context, nowMS int64, cutoffs map[Resolution]int64, rawCutoffMS int64) error {
	step := func(fn func(tx *bolt.Tx) (bool, error)) error {
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			more := false
			if err := e.db.Update(func(tx *bolt.Tx) error {
				var err error
				more, err = fn(tx)
				return err
			}); err != nil {
				return err
			}
			if !more {
				return nil
			}
		}
	}
	err := step(func(tx *bolt.Tx) (bool, error) {
		seen := tx.Bucket([]byte(boltSeen))
		return deleteBelow(tx, boltSeenExp, be64(nowMS), func(k []byte) error {
			rid := k[8:]
			// A later copy may have re-registered the id with a newer expiry.
			if v := seen.Get(rid); v != nil && int64(binary.BigEndian.Uint64(v)) <= nowMS {
				return seen.Delete(rid)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, res := range resolutions {
		err := step(func(tx *bolt.Tx) (bool, error) {
			return deleteBelow(tx, boltAggPfx+string(res), be64(cutoffs[res]), nil)
		})
		if err != nil {
			return err
		}
	}
	return step(func(tx *bolt.Tx) (bool, error) { return deleteBelow(tx, boltRaw, be64(rawCutoffMS), nil) })
}
