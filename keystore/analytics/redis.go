package analytics

import (
	"context"
	_ "embed"
	"fmt"
	"math"
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
	args := make([]any, 0, 2+len(items)*26)
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
		args = append(args, it.raw, it.rawAt, it.rawUntil)
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

// rawPage is how many raw records one Redis call reads.
const rawPage = 1000

// prune drops raw records past their retention from the sorted set (the
// set itself expires with its newest record); every other key carries its
// own expiry.
func (e *redisEngine) prune(ctx context.Context, _ int64, _ map[Resolution]int64, rawCutoffMS int64) error {
	upper := "(" + strconv.FormatInt(rawCutoffMS, 10)
	if rawCutoffMS == math.MaxInt64 {
		upper = "+inf"
	}
	if err := e.c.ZRemRangeByScore(ctx, e.prefix+"a:raw", "-inf", upper).Err(); err != nil {
		return fmt.Errorf("redis prune raw records: %w", err)
	}
	return nil
}

func (e *redisEngine) raw(ctx context.Context, fromMS, toMS int64, fn func([]byte) (bool, error)) error {
	for offset := int64(0); ; offset += rawPage {
		page, err := e.c.ZRangeArgs(ctx, redis.ZRangeArgs{Key: e.prefix + "a:raw", ByScore: true,
			Start: fromMS, Stop: "(" + strconv.FormatInt(toMS, 10), Offset: offset, Count: rawPage}).Result()
		if err != nil {
			return fmt.Errorf("redis raw records: %w", err)
		}
		for _, rec := range page {
			more, err := fn([]byte(rec))
			if err != nil || !more {
				return err
			}
		}
		if len(page) < rawPage {
			return nil
		}
	}
}
