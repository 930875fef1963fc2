package store

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/keystore/model"
)

// backend opens a fresh, empty store, plus a way to open a second handle on
// the same state (a restart for bbolt, another replica for Redis).
type backend struct {
	name   string
	open   func(t *testing.T) (Store, func(t *testing.T) Store)
	shared bool
}

var testClock = func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

func backends() []backend {
	return []backend{
		{name: "bolt", open: func(t *testing.T) (Store, func(t *testing.T) Store) {
			t.Helper()
			dir := t.TempDir()
			b, err := OpenBackend(context.Background(), BackendOptions{DataDir: dir})
			require.NoError(t, err)
			s, err := b.Keystore(WithClock(testClock))
			require.NoError(t, err)
			closed := false
			t.Cleanup(func() {
				if !closed {
					require.NoError(t, b.Close())
				}
			})
			reopen := func(t *testing.T) Store {
				t.Helper()
				require.NoError(t, b.Close())
				closed = true
				b2, err := OpenBackend(context.Background(), BackendOptions{DataDir: dir})
				require.NoError(t, err)
				t.Cleanup(func() { require.NoError(t, b2.Close()) })
				s2, err := b2.Keystore()
				require.NoError(t, err)
				return s2
			}
			return s, reopen
		}},
		{name: "redis", shared: true, open: func(t *testing.T) (Store, func(t *testing.T) Store) {
			t.Helper()
			srv := redistest.Start(t)
			openOne := func(t *testing.T) Store {
				t.Helper()
				b, err := OpenBackend(context.Background(), BackendOptions{RedisURL: srv.URL(), RedisPrefix: "test:"})
				require.NoError(t, err)
				t.Cleanup(func() { require.NoError(t, b.Close()) })
				s, err := b.Keystore(WithClock(testClock))
				require.NoError(t, err)
				return s
			}
			return openOne(t), openOne
		}},
	}
}

func seed(t *testing.T, s Store) {
	t.Helper()
	ctx := context.Background()
	_, err := s.CreateOperationSet(ctx, model.OperationSet{Name: "openai", Operations: []model.Operation{{Path: "/v1/chat/completions", Methods: []string{"POST"}}}})
	require.NoError(t, err)
	_, err = s.CreateProduct(ctx, model.Product{Name: "chat", OperationSets: []string{"openai"}, Operations: []model.Operation{{Path: "/v1/models"}}})
	require.NoError(t, err)
	_, err = s.CreateProduct(ctx, model.Product{Name: "embed", Operations: []model.Operation{{Path: "/v1/embeddings"}}})
	require.NoError(t, err)
	_, err = s.CreateDeveloper(ctx, model.Developer{Email: "ada@example.com", Name: "Ada"})
	require.NoError(t, err)
	_, err = s.CreateApp(ctx, model.App{Name: "demo", Developer: "ada@example.com", Products: []string{"chat", "embed"}})
	require.NoError(t, err)
}

func newKey(t *testing.T, app string, products ...string) (model.Key, string) {
	t.Helper()
	secret, err := model.GenerateKey(nil)
	require.NoError(t, err)
	id, err := model.GenerateKeyID(nil)
	require.NoError(t, err)
	return model.Key{ID: id, App: app, Hash: model.HashKey(secret), Prefix: model.DisplayPrefix(secret), Products: products}, secret
}

func TestStore(t *testing.T) {
	ctx := context.Background()
	scenarios := []struct {
		name string
		run  func(t *testing.T, s Store, reopen func(*testing.T) Store)
	}{
		{"product lifecycle", func(t *testing.T, s Store, _ func(*testing.T) Store) {
			p := model.Product{Name: "chat", Description: "v1", Operations: []model.Operation{{Path: "/v1/**"}}}
			created, err := s.CreateProduct(ctx, p)
			require.NoError(t, err)
			assert.Equal(t, testClock(), created.CreatedAt)
			_, err = s.CreateProduct(ctx, p)
			require.ErrorIs(t, err, ErrExists)

			_, res, err := s.PutProduct(ctx, p)
			require.NoError(t, err)
			assert.Equal(t, Unchanged, res)
			p.Description = "v2"
			got, res, err := s.PutProduct(ctx, p)
			require.NoError(t, err)
			assert.Equal(t, Updated, res)
			assert.Equal(t, created.CreatedAt, got.CreatedAt)

			_, res, err = s.PutProduct(ctx, model.Product{Name: "aaa", Operations: []model.Operation{{Path: "/"}}})
			require.NoError(t, err)
			assert.Equal(t, Created, res)

			all, err := s.ListProducts(ctx)
			require.NoError(t, err)
			require.Len(t, all, 2)
			assert.Equal(t, "aaa", all[0].Name, "listing is sorted by name")
			assert.Equal(t, "v2", all[1].Description)

			require.NoError(t, s.DeleteProduct(ctx, "aaa"))
			require.ErrorIs(t, s.DeleteProduct(ctx, "aaa"), ErrNotFound)
			_, err = s.GetProduct(ctx, "aaa")
			require.ErrorIs(t, err, ErrNotFound)
		}},
		{"product references operation sets", func(t *testing.T, s Store, _ func(*testing.T) Store) {
			p := model.Product{Name: "chat", OperationSets: []string{"openai"}}
			_, err := s.CreateProduct(ctx, p)
			require.ErrorIs(t, err, ErrBadReference)
			assert.ErrorContains(t, err, `"openai"`)
			_, res, err := s.PutOperationSet(ctx, model.OperationSet{Name: "openai", Operations: []model.Operation{{Path: "/v1/**"}}})
			require.NoError(t, err)
			assert.Equal(t, Created, res)
			_, err = s.CreateProduct(ctx, p)
			require.NoError(t, err)
			err = s.DeleteOperationSet(ctx, "openai")
			require.ErrorIs(t, err, ErrInUse)
			assert.ErrorContains(t, err, "chat")
			require.NoError(t, s.DeleteProduct(ctx, "chat"))
			require.NoError(t, s.DeleteOperationSet(ctx, "openai"))
			sets, err := s.ListOperationSets(ctx)
			require.NoError(t, err)
			assert.Empty(t, sets)
		}},
		{"developers and apps", func(t *testing.T, s Store, _ func(*testing.T) Store) {
			seed(t, s)
			_, err := s.CreateApp(ctx, model.App{Name: "x", Developer: "nobody@example.com"})
			require.ErrorIs(t, err, ErrBadReference)
			_, err = s.CreateApp(ctx, model.App{Name: "x", Developer: "ada@example.com", Products: []string{"chat", "nope"}})
			require.ErrorIs(t, err, ErrBadReference)
			assert.ErrorContains(t, err, "nope")
			_, err = s.CreateApp(ctx, model.App{Name: "demo", Developer: "ada@example.com"})
			require.ErrorIs(t, err, ErrExists)

			_, err = s.CreateDeveloper(ctx, model.Developer{Email: "bob@example.com"})
			require.NoError(t, err)
			_, err = s.CreateApp(ctx, model.App{Name: "bobs", Developer: "bob@example.com"})
			require.NoError(t, err)
			apps, err := s.ListApps(ctx, "BOB@example.com")
			require.NoError(t, err)
			require.Len(t, apps, 1)
			assert.Equal(t, "bobs", apps[0].Name)
			assert.Equal(t, []string{}, apps[0].Products)
			apps, err = s.ListApps(ctx, "")
			require.NoError(t, err)
			assert.Len(t, apps, 2)

			err = s.DeleteDeveloper(ctx, "ada@example.com")
			require.ErrorIs(t, err, ErrInUse)
			assert.ErrorContains(t, err, "demo")
			err = s.DeleteProduct(ctx, "chat")
			require.ErrorIs(t, err, ErrInUse)

			_, res, err := s.PutApp(ctx, model.App{Name: "bobs", Developer: "bob@example.com", Products: []string{"embed"}})
			require.NoError(t, err)
			assert.Equal(t, Updated, res)
			d, res, err := s.PutDeveloper(ctx, model.Developer{Email: "bob@example.com", Name: "Bob"})
			require.NoError(t, err)
			assert.Equal(t, Updated, res)
			assert.Equal(t, "Bob", d.Name)
			devs, err := s.ListDevelopers(ctx)
			require.NoError(t, err)
			assert.Len(t, devs, 2)

			require.NoError(t, s.DeleteApp(ctx, "bobs"))
			require.NoError(t, s.DeleteDeveloper(ctx, "bob@example.com"))
			_, err = s.GetDeveloper(ctx, "bob@example.com")
			require.ErrorIs(t, err, ErrNotFound)
			require.ErrorIs(t, s.DeleteApp(ctx, "bobs"), ErrNotFound)
		}},
		{"keys and lookup", func(t *testing.T, s Store, _ func(*testing.T) Store) {
			seed(t, s)
			k, _ := newKey(t, "nope")
			_, err := s.CreateKey(ctx, k)
			require.ErrorIs(t, err, ErrNotFound)
			k, _ = newKey(t, "demo", "chat", "other")
			_, err = s.CreateKey(ctx, k)
			require.ErrorIs(t, err, ErrBadReference)
			bad, _ := newKey(t, "demo")
			bad.Hash = "not-a-hash"
			_, err = s.CreateKey(ctx, bad)
			require.Error(t, err)

			k, secret := newKey(t, "demo", "chat")
			stored, err := s.CreateKey(ctx, k)
			require.NoError(t, err)
			assert.Equal(t, model.KeyApproved, stored.Status)
			assert.Equal(t, testClock(), stored.CreatedAt)
			_, err = s.CreateKey(ctx, k)
			require.ErrorIs(t, err, ErrExists)

			g, err := s.Lookup(ctx, model.HashKey(secret))
			require.NoError(t, err)
			assert.Equal(t, k.ID, g.Key.ID)
			assert.Equal(t, "demo", g.App.Name)
			assert.Equal(t, "Ada", g.Developer.Name)
			require.Len(t, g.Products, 1, "key restricted to chat")
			assert.Equal(t, "chat", g.Products[0].Name)
			require.Contains(t, g.Sets, "openai")

			_, err = s.Lookup(ctx, model.HashKey("tg_unknown"))
			require.ErrorIs(t, err, ErrNotFound)

			revoked, err := s.SetKeyStatus(ctx, k.ID, model.KeyRevoked)
			require.NoError(t, err)
			assert.Equal(t, model.KeyRevoked, revoked.Status)
			g, err = s.Lookup(ctx, k.Hash)
			require.NoError(t, err)
			assert.Equal(t, model.KeyRevoked, g.Key.Status)
			_, err = s.SetKeyStatus(ctx, k.ID, "paused")
			require.Error(t, err)
			_, err = s.SetKeyStatus(ctx, "key_0000000000000000", model.KeyRevoked)
			require.ErrorIs(t, err, ErrNotFound)

			k2, _ := newKey(t, "demo")
			_, err = s.CreateKey(ctx, k2)
			require.NoError(t, err)
			keys, err := s.ListKeys(ctx, "demo")
			require.NoError(t, err)
			assert.Len(t, keys, 2)
			require.NoError(t, s.DeleteKey(ctx, k2.ID))
			require.ErrorIs(t, s.DeleteKey(ctx, k2.ID), ErrNotFound)
			_, err = s.Lookup(ctx, k2.Hash)
			require.ErrorIs(t, err, ErrNotFound)
			got, err := s.GetKey(ctx, k.ID)
			require.NoError(t, err)
			assert.Equal(t, k.Hash, got.Hash)
		}},
		{"deleting an app deletes its keys", func(t *testing.T, s Store, _ func(*testing.T) Store) {
			seed(t, s)
			k, secret := newKey(t, "demo")
			_, err := s.CreateKey(ctx, k)
			require.NoError(t, err)
			require.NoError(t, s.DeleteApp(ctx, "demo"))
			_, err = s.Lookup(ctx, model.HashKey(secret))
			require.ErrorIs(t, err, ErrNotFound)
			keys, err := s.ListKeys(ctx, "")
			require.NoError(t, err)
			assert.Empty(t, keys)
		}},
		{"lookup skips products the app dropped", func(t *testing.T, s Store, _ func(*testing.T) Store) {
			seed(t, s)
			k, secret := newKey(t, "demo", "embed")
			_, err := s.CreateKey(ctx, k)
			require.NoError(t, err)
			_, _, err = s.PutApp(ctx, model.App{Name: "demo", Developer: "ada@example.com", Products: []string{"chat"}})
			require.NoError(t, err)
			g, err := s.Lookup(ctx, model.HashKey(secret))
			require.NoError(t, err)
			assert.Empty(t, g.Products)
		}},
		{"state survives reopen", func(t *testing.T, s Store, reopen func(*testing.T) Store) {
			seed(t, s)
			k, secret := newKey(t, "demo")
			_, err := s.CreateKey(ctx, k)
			require.NoError(t, err)
			s2 := reopen(t)
			g, err := s2.Lookup(ctx, model.HashKey(secret))
			require.NoError(t, err)
			assert.Equal(t, k.ID, g.Key.ID)
			assert.Len(t, g.Products, 2)
			require.NoError(t, s2.Ping(ctx))
		}},
		{"concurrent writers all land", func(t *testing.T, s Store, reopen func(*testing.T) Store) {
			seed(t, s)
			writers := []Store{s, s}
			var wg sync.WaitGroup
			errs := make(chan error, 40)
			for w := range 4 {
				st := writers[w%2]
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 10 {
						k, _ := newKey(t, "demo")
						_, err := st.CreateKey(ctx, k)
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			keys, err := s.ListKeys(ctx, "demo")
			require.NoError(t, err)
			assert.Len(t, keys, 40)
		}},
		{"cancelled context", func(t *testing.T, s Store, _ func(*testing.T) Store) {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := s.CreateDeveloper(cctx, model.Developer{Email: "x@example.com"})
			require.Error(t, err)
			_, err = s.ListProducts(cctx)
			require.Error(t, err)
		}},
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) {
					s, reopen := b.open(t)
					sc.run(t, s, reopen)
				})
			}
		})
	}
}

func TestRedisReplicasShareState(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	open := func() Store {
		b, err := OpenBackend(ctx, BackendOptions{RedisURL: srv.URL()})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		assert.Equal(t, "redis", b.Kind())
		s, err := b.Keystore()
		require.NoError(t, err)
		return s
	}
	a, b := open(), open()
	seed(t, a)
	k, secret := newKey(t, "demo")
	_, err := a.CreateKey(ctx, k)
	require.NoError(t, err)
	g, err := b.Lookup(ctx, model.HashKey(secret))
	require.NoError(t, err)
	assert.Equal(t, k.ID, g.Key.ID)
	_, err = b.SetKeyStatus(ctx, k.ID, model.KeyRevoked)
	require.NoError(t, err)
	g, err = a.Lookup(ctx, model.HashKey(secret))
	require.NoError(t, err)
	assert.Equal(t, model.KeyRevoked, g.Key.Status, "revocation on one replica is seen by the other")
}

func TestOpenBackendErrors(t *testing.T) {
	ctx := context.Background()
	_, err := OpenBackend(ctx, BackendOptions{})
	require.Error(t, err)

	_, err = OpenBackend(ctx, BackendOptions{RedisURL: "redis://user:s3cret@127.0.0.1:1/0"})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret")

	_, err = OpenBackend(ctx, BackendOptions{RedisURL: "mysql://s3cret@x"})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret")

	dir := t.TempDir()
	b, err := OpenBackend(ctx, BackendOptions{DataDir: dir})
	require.NoError(t, err)
	defer b.Close()
	assert.Equal(t, "bolt", b.Kind())
	assert.Equal(t, filepath.Join(dir, BoltFile), b.Where)
	_, err = OpenBackend(ctx, BackendOptions{DataDir: dir, LockTimeout: 50 * time.Millisecond})
	require.Error(t, err, "a second process must not open a locked file")
	assert.ErrorContains(t, err, "locked")
}

func TestRedactURL(t *testing.T) {
	assert.Equal(t, "redis://REDACTED@host:6379/0", RedactURL("redis://user:pw@host:6379/0"))
	assert.Equal(t, "redis://127.0.0.1:6379/0", RedactURL("redis://127.0.0.1:6379/0"))
	assert.Equal(t, "(unparseable URL)", RedactURL("redis://[::1"))
}
