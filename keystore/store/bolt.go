package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// BoltFile is the name of the embedded database file inside the data dir.
const BoltFile = "tollgate.db"

// boltBucketPrefix namespaces keystore buckets so other components (quota
// counters) can keep their own buckets in the same file.
const boltBucketPrefix = "keystore."

// OpenBolt opens (creating if needed) the bbolt file at path. Every committed
// transaction is fsync'd, so a write that returned is on disk and a crash
// mid-write leaves the previous state. Only one process may hold the file:
// a second one fails after the timeout instead of hanging.
func OpenBolt(path string, timeout time.Duration) (*bolt.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: locked by another process (is another tollgate running?): %w", path, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

type boltEngine struct{ db *bolt.DB }

func newBoltEngine(db *bolt.DB) (*boltEngine, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range bucketNames() {
			if _, err := tx.CreateBucketIfNotExists([]byte(boltBucketPrefix + b)); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("init keystore buckets: %w", err)
	}
	return &boltEngine{db: db}, nil
}

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) bucket(name string) (*bolt.Bucket, error) {
	b := t.tx.Bucket([]byte(boltBucketPrefix + name))
	if b == nil {
		return nil, fmt.Errorf("bucket %s missing", name)
	}
	return b, nil
}

func (t boltTx) Get(bucket, id string) ([]byte, bool, error) {
	b, err := t.bucket(bucket)
	if err != nil {
		return nil, false, err
	}
	v := b.Get([]byte(id))
	return v, v != nil, nil
}

func (t boltTx) Each(bucket string, fn func(string, []byte) error) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

func (t boltTx) Put(bucket, id string, v []byte) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	if err := b.Put([]byte(id), v); err != nil {
		return fmt.Errorf("put %s/%s: %w", bucket, id, err)
	}
	return nil
}

func (t boltTx) Delete(bucket, id string) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	if err := b.Delete([]byte(id)); err != nil {
		return fmt.Errorf("delete %s/%s: %w", bucket, id, err)
	}
	return nil
}

func (e *boltEngine) View(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (e *boltEngine) Update(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (e *boltEngine) Ping(ctx context.Context) error {
	return e.View(ctx, func(Tx) error { return nil })
}

// NewBolt returns a Store kept in an open bbolt database (see OpenBolt); the
// caller owns db and closes it.
func NewBolt(db *bolt.DB, opts ...Option) (Store, error) {
	eng, err := newBoltEngine(db)
	if err != nil {
		return nil, err
	}
	return newRecords(eng, opts), nil
}
