package store

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/keystore/model"
)

// TestPools stores pools in both backends: upserts report what they did,
// conflicts between pools are refused, and the pools survive a restart (or
// are seen by another replica).
func TestPools(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s, reopen := b.open(t)
			pool := func(name, served, addr, engine string) model.Pool {
				return model.Pool{Name: name, Models: []string{served}, Endpoints: []model.PoolEndpoint{{Address: addr, Engine: engine}}}
			}
			_, res, err := s.PutPool(ctx, pool("a", "llama", "10.0.0.1:8000", "vllm"))
			require.NoError(t, err)
			assert.Equal(t, Created, res)
			_, res, err = s.PutPool(ctx, pool("a", "llama", "10.0.0.1:8000", "vllm"))
			require.NoError(t, err)
			assert.Equal(t, Unchanged, res)
			_, res, err = s.PutPool(ctx, pool("a", "llama", "10.0.0.2:8000", "vllm"))
			require.NoError(t, err)
			assert.Equal(t, Updated, res)

			_, _, err = s.PutPool(ctx, pool("b", "llama", "10.0.0.3:8000", "vllm"))
			assert.ErrorIs(t, err, ErrConflict, "a model belongs to one pool")
			_, _, err = s.PutPool(ctx, pool("b", "gemma", "10.0.0.2:8000", "sglang"))
			assert.ErrorIs(t, err, ErrConflict, "an address has one engine")
			_, err = s.CreatePool(ctx, pool("a", "x", "10.0.0.9:1", "vllm"))
			assert.ErrorIs(t, err, ErrExists)
			_, err = s.CreatePool(ctx, pool("b", "gemma", "10.0.0.2:8000", "vllm"))
			require.NoError(t, err)

			s2 := reopen(t)
			got, err := s2.ListPools(ctx)
			require.NoError(t, err)
			require.Len(t, got, 2)
			assert.Equal(t, "a", got[0].Name)
			assert.Equal(t, "10.0.0.2:8000", got[0].Endpoints[0].Address)
			require.NoError(t, s2.DeletePool(ctx, "a"))
			assert.ErrorIs(t, s2.DeletePool(ctx, "a"), ErrNotFound)
			_, err = s2.GetPool(ctx, "a")
			assert.ErrorIs(t, err, ErrNotFound)
		})
	}
}
