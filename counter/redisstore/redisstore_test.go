package redisstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/countertest"
	"github.com/tollgate/tollgate/counter/memstore"
	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/window"
)

// TestContract runs the engine contract with every engine instance on its
// own Redis connection, all sharing one redis-server.
func TestContract(t *testing.T) {
	countertest.Run(t, countertest.Harness{
		Shared: true,
		Leases: true,
		Storage: func(t *testing.T, _ func() time.Time) func() counter.Backend {
			srv := redistest.Start(t)
			return func() counter.Backend {
				s, err := Open(context.Background(), srv.URL(), Options{})
				require.NoError(t, err)
				return s
			}
		},
	})
}

func newEngine(t *testing.T, c *redis.Client, clock *countertest.Clock) *counter.Engine {
	t.Helper()
	return counter.New(New(c, Options{Prefix: "t:"}), counter.WithClock(clock.Now))
}

// TestKeysExpire checks that every key carries a TTL covering its window and
// open reservations, so Redis never keeps counters forever.
func TestKeysExpire(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	clock := countertest.NewClock(countertest.T0.Add(15 * time.Second))
	eng := newEngine(t, c, clock)
	k := counter.Key{App: "a", Product: "p", Kind: counter.Tokens}
	cases := []struct {
		spec   string
		maxTTL time.Duration
	}{
		{"100/1minute/calendar", 46 * time.Second},           // window ends 45 s later, +1 s grace
		{"100/1minute/rolling", 62 * time.Second},            // bucket [15 s,16 s) counts until 76 s
		{"100/1hour/flexi", time.Hour + time.Second},         // window starts now
		{"100/1month/calendar", 22*24*time.Hour + time.Hour}, // 2024-04-01
	}
	for _, tc := range cases {
		t.Run(tc.spec, func(t *testing.T) {
			s, err := window.ParseCompact(tc.spec)
			require.NoError(t, err)
			require.True(t, consumeOK(t, eng, k, s))
			base := "t:{" + counter.CounterID(k, s) + "}"
			ttl, err := c.PTTL(ctx, base).Result()
			require.NoError(t, err)
			assert.Positive(t, ttl)
			assert.LessOrEqual(t, ttl, tc.maxTTL)
		})
	}
	// A reservation outliving its window extends all three keys.
	s, err := window.ParseCompact("100/1minute/calendar")
	require.NoError(t, err)
	k2 := counter.Key{App: "b", Kind: counter.Tokens}
	_, err = eng.Reserve(ctx, k2, s, 10, 10*time.Minute)
	require.NoError(t, err)
	base := "t:{" + counter.CounterID(k2, s) + "}"
	for _, key := range []string{base, base + ":r", base + ":z"} {
		ttl, err := c.PTTL(ctx, key).Result()
		require.NoError(t, err)
		assert.Greater(t, ttl, 9*time.Minute, key)
		assert.LessOrEqual(t, ttl, 10*time.Minute+time.Second, key)
	}
	// A lease outliving its window extends all three keys to its expiry.
	k4 := counter.Key{App: "d", Kind: counter.Tokens}
	ls, err := eng.Lease(ctx, []counter.LeaseRequest{{Key: k4, Spec: s, Want: 10, TTL: 5 * time.Minute}})
	require.NoError(t, err)
	require.Equal(t, int64(10), ls[0].Held)
	base = "t:{" + counter.CounterID(k4, s) + "}"
	for _, key := range []string{base, base + ":r", base + ":z"} {
		ttl, err := c.PTTL(ctx, key).Result()
		require.NoError(t, err)
		assert.Greater(t, ttl, 4*time.Minute, key)
		assert.LessOrEqual(t, ttl, 5*time.Minute+time.Second, key)
	}
	// A denied request writes nothing.
	k3 := counter.Key{App: "c", Kind: counter.Tokens}
	d, err := eng.Consume(ctx, k3, s, 101)
	require.NoError(t, err)
	require.False(t, d.Allowed)
	n, err := c.Exists(ctx, "t:{"+counter.CounterID(k3, s)+"}").Result()
	require.NoError(t, err)
	assert.Zero(t, n)
}

func consumeOK(t *testing.T, eng *counter.Engine, k counter.Key, s window.Spec) bool {
	t.Helper()
	d, err := eng.Consume(context.Background(), k, s, 1)
	require.NoError(t, err)
	return d.Allowed
}

// TestScriptCacheFlush checks the EVALSHA → EVAL fallback.
func TestScriptCacheFlush(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	clock := countertest.NewClock(countertest.T0)
	eng := newEngine(t, c, clock)
	s, err := window.ParseCompact("2/1minute/calendar")
	require.NoError(t, err)
	k := counter.Key{App: "a", Kind: counter.Requests}
	require.True(t, consumeOK(t, eng, k, s))
	require.NoError(t, c.ScriptFlush(context.Background()).Err())
	require.True(t, consumeOK(t, eng, k, s))
	require.False(t, consumeOK(t, eng, k, s))
}

// TestLargeNumbers checks values beyond Lua's 14-digit number printing.
func TestLargeNumbers(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	clock := countertest.NewClock(countertest.T0)
	eng := newEngine(t, c, clock)
	s := window.Spec{Limit: window.MaxLimit, Interval: 1, Unit: window.Day, Kind: window.Calendar}
	k := counter.Key{App: "a", Kind: counter.Tokens}
	d, err := eng.Consume(context.Background(), k, s, window.MaxLimit-3)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	assert.Equal(t, int64(3), d.Remaining)
	r, err := eng.Reserve(context.Background(), k, s, 3, time.Minute)
	require.NoError(t, err)
	require.True(t, r.Allowed)
	d, err = eng.Settle(context.Background(), r.ID, 1)
	require.NoError(t, err)
	assert.Equal(t, window.MaxLimit-2, d.Used)
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(context.Background(), "http://nope", Options{})
	require.Error(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = Open(ctx, "redis://127.0.0.1:1/0", Options{})
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "ping"), err.Error())
}

// TestMatchesBucketArithmetic runs counter.lua and the Go arithmetic of
// counter/bucket (through memstore) through the same random sequences of
// operations and requires identical answers.
func TestMatchesBucketArithmetic(t *testing.T) {
	srv := redistest.Start(t)
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			ref, err := memstore.Open(memstore.Options{})
			require.NoError(t, err)
			got := New(srv.Client(t), Options{Prefix: fmt.Sprintf("cmp%d:", seed)})
			countertest.Compare(t, ref, got, seed, 400)
		})
	}
}
