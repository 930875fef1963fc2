package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
)

// Backend is the storage one tollgate process opened: the embedded bbolt file
// or a Redis client. The keystore and the quota counters are built on the same
// Backend, so `tollgate serve --redis ...` switches both at once. Exactly one
// of Bolt and Redis is set.
type Backend struct {
	// Bolt is the embedded database; other components add their own buckets.
	Bolt *bolt.DB
	// Redis is the shared client; other components use their own key names under Prefix.
	Redis *redis.Client
	// Prefix namespaces every Redis key (DefaultRedisPrefix by default).
	Prefix string
	// Where describes the storage for logs (file path or redacted URL).
	Where string
	// DataDir is the directory of the embedded file (empty with Redis), for
	// components that keep their own files next to it.
	DataDir string
}

// BackendOptions chooses the storage: Redis when RedisURL is set, else a bbolt file in DataDir.
type BackendOptions struct {
	DataDir     string
	RedisURL    string
	RedisPrefix string
	// LockTimeout bounds waiting for another process's lock on the bbolt file.
	LockTimeout time.Duration
}

// OpenBackend opens the storage the options choose.
func OpenBackend(ctx context.Context, o BackendOptions) (*Backend, error) {
	if o.RedisURL != "" {
		c, err := OpenRedis(ctx, o.RedisURL)
		if err != nil {
			return nil, err
		}
		prefix := o.RedisPrefix
		if prefix == "" {
			prefix = DefaultRedisPrefix
		}
		return &Backend{Redis: c, Prefix: prefix, Where: RedactURL(o.RedisURL)}, nil
	}
	if o.DataDir == "" {
		return nil, errors.New("open storage: need a data dir or a redis URL")
	}
	timeout := o.LockTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	path := filepath.Join(o.DataDir, BoltFile)
	db, err := OpenBolt(path, timeout)
	if err != nil {
		return nil, err
	}
	return &Backend{Bolt: db, Where: path, DataDir: o.DataDir}, nil
}

// Kind names the backend ("bolt" or "redis") for logs and metrics.
func (b *Backend) Kind() string {
	if b.Redis != nil {
		return "redis"
	}
	return "bolt"
}

// Keystore returns the keystore's Store on this backend.
func (b *Backend) Keystore(opts ...Option) (Store, error) {
	if b.Redis != nil {
		return NewRedis(b.Redis, b.Prefix, opts...), nil
	}
	if b.Bolt == nil {
		return nil, errors.New("backend not open")
	}
	return NewBolt(b.Bolt, opts...)
}

// Close releases the file or the connection pool.
func (b *Backend) Close() error {
	switch {
	case b.Redis != nil:
		if err := b.Redis.Close(); err != nil {
			return fmt.Errorf("close redis: %w", err)
		}
	case b.Bolt != nil:
		if err := b.Bolt.Close(); err != nil {
			return fmt.Errorf("close %s: %w", b.Where, err)
		}
	}
	return nil
}
