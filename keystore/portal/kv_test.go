package portal

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/keystore/store"
)

// TestKVContract runs the portal's storage contract on both backends.
func TestKVContract(t *testing.T) {
	backends := map[string]func(t *testing.T) store.BackendOptions{
		"bolt": func(t *testing.T) store.BackendOptions { return store.BackendOptions{DataDir: t.TempDir()} },
		"redis": func(t *testing.T) store.BackendOptions {
			return store.BackendOptions{RedisURL: redistest.Start(t).URL()}
		},
	}
	for name, opts := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b, err := store.OpenBackend(ctx, opts(t))
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, b.Close()) })
			k, err := openKV(b)
			require.NoError(t, err)

			_, ok, err := k.get(ctx, bucketUsers, "ada@example.com")
			require.NoError(t, err)
			assert.False(t, ok)
			require.NoError(t, k.put(ctx, bucketUsers, "ada@example.com", []byte(`{"a":1}`), 0))
			require.NoError(t, k.put(ctx, bucketUsers, "bob*?[x]@example.com", []byte(`{"b":2}`), 0))
			require.NoError(t, k.put(ctx, bucketSessions, "s1", []byte(`{}`), time.Hour))
			v, ok, err := k.get(ctx, bucketUsers, "ada@example.com")
			require.NoError(t, err)
			assert.True(t, ok)
			assert.Equal(t, `{"a":1}`, string(v))
			all, err := k.list(ctx, bucketUsers)
			require.NoError(t, err)
			assert.Equal(t, map[string][]byte{"ada@example.com": []byte(`{"a":1}`), "bob*?[x]@example.com": []byte(`{"b":2}`)}, all,
				"a bucket lists only its own keys, glob characters included")
			require.NoError(t, k.del(ctx, bucketUsers, "ada@example.com"))
			require.NoError(t, k.del(ctx, bucketUsers, "never-there"))
			all, err = k.list(ctx, bucketUsers)
			require.NoError(t, err)
			assert.Len(t, all, 1)
		})
	}
}

// TestPruneSessions: expired sessions and invitations are deleted.
func TestPruneSessions(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	b.developer("ada@example.com")
	ctx := context.Background()
	require.NoError(t, e.p.saveJSON(ctx, bucketInvites, "old", Invite{Email: "x@example.com", Expires: e.clk.Now().Add(time.Minute)}, 0))
	sessions, err := e.p.kv.list(ctx, bucketSessions)
	require.NoError(t, err)
	require.Len(t, sessions, 1)

	require.NoError(t, e.p.Prune(ctx))
	sessions, err = e.p.kv.list(ctx, bucketSessions)
	require.NoError(t, err)
	assert.Len(t, sessions, 1, "a live session stays")

	e.clk.Add(DefaultSessionTTL + time.Minute)
	require.NoError(t, e.p.Prune(ctx))
	sessions, err = e.p.kv.list(ctx, bucketSessions)
	require.NoError(t, err)
	assert.Empty(t, sessions)
	invites, err := e.p.kv.list(ctx, bucketInvites)
	require.NoError(t, err)
	assert.Empty(t, invites)
}
