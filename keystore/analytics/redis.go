package analytics

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

//go:embed ingest.lua
var ingestScript string

// fieldSep separates dims from the counter index in Redis hash fields.
const fieldSep = "\x1e"

// redisEngine keeps one hash per resolution and bucket
// ("<prefix>a:<res>:<start>", field "<dims>\x1e<counter>") and one key per
// remembered request id ("<prefix>a:seen:<id>"), all with TTLs, so Redis
// prunes by itself. A batch is one Lua script: atomic and exact with any
// number of keystores sharing the Redis (a single Redis, not a cluster).
type redisEngine struct {
	c      *redis.Client
	prefix string
	script *redis.Script
}

// NewRedis keeps aggregates in Redis under prefix (the keystore's prefix).
func NewRedis(c *redis.Client, prefix string, cfg Config) *Store {
	cfg.defaults()
	return &Store{cfg: cfg, eng: &redisEngine{c: c, prefix: prefix, script: redis.NewScript(ingestScript)}}
}

func bucketSuffix(res Resolution, start int64) string {
	return string(res.code()) + ":" + strconv.FormatInt(start, 10)
}

func (e *redisEngine) ingest(ctx context.Context, items []item) (int, error) {
	args := make([]any, 0, 2+len(items)*23)
	args = append(args, e.prefix, len(items))
	for i := range items {
		it := &items[i]
		args = append(args, it.rid, it.seenUntil, it.dims)
		for k, res := range resolutions {
			args = append(args, bucketSuffix(res, it.starts[k]), it.expires[k])
		}
		for _, f := range it.totals.fields() {
			args = append(args, *f)
		}
	}
	n, err := e.script.Run(ctx, e.c, nil, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("redis usage script: %w", err)
	}
	return n, nil
}

func (e *redisEngine) scan(ctx context.Context, res Resolution, from, to int64, fn func(int64, Dims, Totals) error) error {
	w := int64(res.Width().Seconds())
	pipe := e.c.Pipeline()
	var starts []int64
	var cmds []*redis.MapStringStringCmd
	for st := from; st < to; st += w {
		starts = append(starts, st)
		cmds = append(cmds, pipe.HGetAll(ctx, e.prefix+"a:"+bucketSuffix(res, st)))
	}
	if len(cmds) == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis usage scan: %w", err)
	}
	for i, cmd := range cmds {
		byDims := map[string]*Totals{}
		for field, val := range cmd.Val() {
			dims, idx, ok := strings.Cut(field, fieldSep)
			f, err := strconv.Atoi(idx)
			if !ok || err != nil || f < 0 || f >= numFields {
				return fmt.Errorf("corrupt usage field %q", field)
			}
			v, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return fmt.Errorf("corrupt usage value %q: %w", val, err)
			}
			t := byDims[dims]
			if t == nil {
				t = &Totals{}
				byDims[dims] = t
			}
			*t.fields()[f] = v
		}
		for dims, t := range byDims {
			d, err := decodeDims(dims)
			if err != nil {
				return err
			}
			if err := fn(starts[i], d, *t); err != nil {
				return err
			}
		}
	}
	return nil
}

// prune does nothing: every Redis key carries its own expiry.
func (e *redisEngine) prune(context.Context, int64, map[Resolution]int64) error { return nil }
