package portal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/keystore/store"
)

// Buckets of portal state (users, sessions, invites, app approvals).
const (
	bucketUsers     = "users"
	bucketSessions  = "sessions"
	bucketInvites   = "invites"
	bucketApprovals = "approvals"
)

// kv is the portal's small storage: named buckets of key -> JSON. A TTL is
// a hint for backends that expire keys (Redis); records also carry their own
// expiry, checked on read.
type kv interface {
	get(ctx context.Context, bucket, key string) ([]byte, bool, error)
	put(ctx context.Context, bucket, key string, v []byte, ttl time.Duration) error
	del(ctx context.Context, bucket, key string) error
	list(ctx context.Context, bucket string) (map[string][]byte, error)
}

func openKV(b *store.Backend) (kv, error) {
	switch {
	case b.Redis != nil:
		return &redisKV{c: b.Redis, prefix: b.Prefix + "portal:"}, nil
	case b.Bolt != nil:
		err := b.Bolt.Update(func(tx *bolt.Tx) error {
			for _, n := range []string{bucketUsers, bucketSessions, bucketInvites, bucketApprovals} {
				if _, err := tx.CreateBucketIfNotExists([]byte("portal." + n)); err != nil {
					return fmt.Errorf("create bucket %s: %w", n, err)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("init portal buckets: %w", err)
		}
		return &boltKV{db: b.Bolt}, nil
	}
	return nil, errors.New("portal: storage backend not open")
}

type boltKV struct{ db *bolt.DB }

func (k *boltKV) get(_ context.Context, bucket, key string) ([]byte, bool, error) {
	var out []byte
	err := k.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte("portal." + bucket)).Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, out != nil, err
}

func (k *boltKV) put(_ context.Context, bucket, key string, v []byte, _ time.Duration) error {
	return k.db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("portal."+bucket)).Put([]byte(key), v) })
}

func (k *boltKV) del(_ context.Context, bucket, key string) error {
	return k.db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("portal." + bucket)).Delete([]byte(key)) })
}

func (k *boltKV) list(_ context.Context, bucket string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := k.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("portal." + bucket)).ForEach(func(key, v []byte) error {
			out[string(key)] = append([]byte(nil), v...)
			return nil
		})
	})
	return out, err
}

type redisKV struct {
	c      *redis.Client
	prefix string
}

func (k *redisKV) name(bucket, key string) string { return k.prefix + bucket + ":" + key }

func (k *redisKV) get(ctx context.Context, bucket, key string) ([]byte, bool, error) {
	v, err := k.c.Get(ctx, k.name(bucket, key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis GET: %w", err)
	}
	return v, true, nil
}

func (k *redisKV) put(ctx context.Context, bucket, key string, v []byte, ttl time.Duration) error {
	if err := k.c.Set(ctx, k.name(bucket, key), v, ttl).Err(); err != nil {
		return fmt.Errorf("redis SET: %w", err)
	}
	return nil
}

func (k *redisKV) del(ctx context.Context, bucket, key string) error {
	if err := k.c.Del(ctx, k.name(bucket, key)).Err(); err != nil {
		return fmt.Errorf("redis DEL: %w", err)
	}
	return nil
}

func (k *redisKV) list(ctx context.Context, bucket string) (map[string][]byte, error) {
	out := map[string][]byte{}
	pfx := k.name(bucket, "")
	iter := k.c.Scan(ctx, 0, pfx+"*", 256).Iterator()
	for iter.Next(ctx) {
		name := iter.Val()
		v, ok, err := k.get(ctx, bucket, strings.TrimPrefix(name, pfx))
		if err != nil {
			return nil, err
		}
		if ok {
			out[strings.TrimPrefix(name, pfx)] = v
		}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("redis SCAN: %w", err)
	}
	return out, nil
}
