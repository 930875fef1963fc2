package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix namespaces every Redis key Tollgate writes.
const DefaultRedisPrefix = "tollgate:"

// maxRedisRetries bounds optimistic retries when concurrent writers collide.
const maxRedisRetries = 64

// OpenRedis connects to the Redis server named by a redis:// or rediss://
// URL and checks it answers. Errors never include the URL's password.
func OpenRedis(ctx context.Context, rawURL string) (*redis.Client, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse redis URL %s: invalid (want redis://host:port/db)", RedactURL(rawURL))
	}
	c := redis.NewClient(opts)
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("connect to redis %s: %w", RedactURL(rawURL), err)
	}
	return c, nil
}

// RedactURL hides a URL's user information (Redis URLs often carry the
// password as the user name) so it can be logged.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	return u.String()
}

// redisEngine keeps each bucket in one Redis hash. Writes run as WATCH /
// MULTI / EXEC over every bucket the keystore has, so a transaction that read
// anything another writer changed is retried: serialisable, at the price of
// retries under concurrent admin writes (which are rare). Reads outside
// Update are not isolated from concurrent writes.
type redisEngine struct {
	c      *redis.Client
	prefix string
}

func (e *redisEngine) key(bucket string) string { return e.prefix + "keystore:" + bucket }

type redisWrite struct {
	v   []byte
	del bool
}

type redisTx struct {
	ctx    context.Context
	c      redis.Cmdable
	e      *redisEngine
	writes map[string]map[string]redisWrite // nil in read-only transactions
}

func (t *redisTx) Get(bucket, id string) ([]byte, bool, error) {
	if w, ok := t.writes[bucket][id]; ok {
		return w.v, !w.del, nil
	}
	v, err := t.c.HGet(t.ctx, t.e.key(bucket), id).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis HGET %s: %w", bucket, err)
	}
	return v, true, nil
}

func (t *redisTx) Each(bucket string, fn func(string, []byte) error) error {
	all, err := t.c.HGetAll(t.ctx, t.e.key(bucket)).Result()
	if err != nil {
		return fmt.Errorf("redis HGETALL %s: %w", bucket, err)
	}
	vals := make(map[string][]byte, len(all))
	for k, v := range all {
		vals[k] = []byte(v)
	}
	for id, w := range t.writes[bucket] {
		if w.del {
			delete(vals, id)
		} else {
			vals[id] = w.v
		}
	}
	ids := make([]string, 0, len(vals))
	for id := range vals {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := fn(id, vals[id]); err != nil {
			return err
		}
	}
	return nil
}

func (t *redisTx) record(bucket, id string, w redisWrite) error {
	if t.writes == nil {
		return fmt.Errorf("write %s/%s in a read-only transaction", bucket, id)
	}
	m := t.writes[bucket]
	if m == nil {
		m = map[string]redisWrite{}
		t.writes[bucket] = m
	}
	m[id] = w
	return nil
}

func (t *redisTx) Put(bucket, id string, v []byte) error {
	return t.record(bucket, id, redisWrite{v: append([]byte(nil), v...)})
}

func (t *redisTx) Delete(bucket, id string) error {
	return t.record(bucket, id, redisWrite{del: true})
}

func (e *redisEngine) View(ctx context.Context, fn func(Tx) error) error {
	return fn(&redisTx{ctx: ctx, c: e.c, e: e})
}

func (e *redisEngine) Update(ctx context.Context, fn func(Tx) error) error {
	keys := make([]string, 0, len(bucketNames()))
	for _, b := range bucketNames() {
		keys = append(keys, e.key(b))
	}
	for range maxRedisRetries {
		err := e.c.Watch(ctx, func(rtx *redis.Tx) error {
			t := &redisTx{ctx: ctx, c: rtx, e: e, writes: map[string]map[string]redisWrite{}}
			if err := fn(t); err != nil {
				return err
			}
			if len(t.writes) == 0 {
				return nil
			}
			_, err := rtx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for bucket, m := range t.writes {
					for id, w := range m {
						if w.del {
							p.HDel(ctx, e.key(bucket), id)
						} else {
							p.HSet(ctx, e.key(bucket), id, w.v)
						}
					}
				}
				return nil
			})
			return err
		}, keys...)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		return err
	}
	return fmt.Errorf("redis transaction still conflicting after %d attempts", maxRedisRetries)
}

func (e *redisEngine) Ping(ctx context.Context) error {
	if err := e.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// NewRedis returns a Store kept in Redis hashes under prefix (DefaultRedisPrefix
// when empty); the caller owns c and closes it.
func NewRedis(c *redis.Client, prefix string, opts ...Option) Store {
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	return newRecords(&redisEngine{c: c, prefix: prefix}, opts)
}
