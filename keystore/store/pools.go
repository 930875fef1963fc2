package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/keystore/model"
)

// ErrConflict: the record contradicts another one (a model two pools claim,
// one address with two engines) or would exceed a limit over all records (409).
var ErrConflict = errors.New("conflict")

// Pools is the inference-pool part of the Store: the endpoint sets the
// picker filter fetches (GET /v1/pools), applied like products.
type Pools interface {
	CreatePool(ctx context.Context, p model.Pool) (model.Pool, error)
	PutPool(ctx context.Context, p model.Pool) (model.Pool, Result, error)
	GetPool(ctx context.Context, name string) (model.Pool, error)
	// ListPools lists every pool in name order.
	ListPools(ctx context.Context) ([]model.Pool, error)
	DeletePool(ctx context.Context, name string) error
}

func poolStamps(p *model.Pool) (*time.Time, *time.Time) { return &p.CreatedAt, &p.UpdatedAt }

// checkPoolSet checks p against every other stored pool, so the set the
// picker fetches is always one it accepts: a model or adapter belongs to one
// pool, an address has one engine, and the pools and their distinct
// endpoints stay within the picker's limits.
func checkPoolSet(tx Tx, p model.Pool) error {
	others, err := list(tx, bucketPools, func(o *model.Pool) bool { return o.Name != p.Name })
	if err != nil {
		return err
	}
	if len(others)+1 > model.MaxPools {
		return fmt.Errorf("pool %q: the keystore holds at most %d pools: %w", p.Name, model.MaxPools, ErrConflict)
	}
	owner := map[string]string{}
	engine := map[string]string{}
	for _, o := range others {
		for _, m := range append(append([]string{}, o.Models...), o.Adapters...) {
			owner[m] = o.Name
		}
		for _, ep := range o.Endpoints {
			engine[ep.Address] = ep.Engine
		}
	}
	for _, m := range append(append([]string{}, p.Models...), p.Adapters...) {
		if o, ok := owner[m]; ok {
			return fmt.Errorf("pool %q: model %q is already served by pool %q: %w", p.Name, m, o, ErrConflict)
		}
	}
	for _, ep := range p.Endpoints {
		if e, ok := engine[ep.Address]; ok && e != ep.Engine {
			return fmt.Errorf("pool %q: endpoint %s runs %s in another pool, not %s: %w", p.Name, ep.Address, e, ep.Engine, ErrConflict)
		}
		engine[ep.Address] = ep.Engine
	}
	if len(engine) > model.MaxPoolEndpoints {
		return fmt.Errorf("pool %q: all pools together would have %d endpoints, at most %d: %w", p.Name, len(engine), model.MaxPoolEndpoints, ErrConflict)
	}
	return nil
}

func (r *records) writePool(ctx context.Context, p model.Pool, create bool) (model.Pool, Result, error) {
	var res Result
	var out model.Pool
	err := r.eng.Update(ctx, func(tx Tx) error {
		v := p
		if err := checkPoolSet(tx, v); err != nil {
			return err
		}
		var err error
		res, err = upsert(tx, bucketPools, "pool", v.Name, &v, poolStamps, r.stamp(), create)
		out = v
		return err
	})
	return out, res, err
}

func (r *records) CreatePool(ctx context.Context, p model.Pool) (model.Pool, error) {
	out, _, err := r.writePool(ctx, p, true)
	return out, err
}

func (r *records) PutPool(ctx context.Context, p model.Pool) (model.Pool, Result, error) {
	return r.writePool(ctx, p, false)
}

func (r *records) GetPool(ctx context.Context, name string) (model.Pool, error) {
	return fetch[model.Pool](ctx, r.eng, bucketPools, "pool", name)
}

func (r *records) ListPools(ctx context.Context) ([]model.Pool, error) {
	return fetchAll[model.Pool](ctx, r.eng, bucketPools, nil)
}

func (r *records) DeletePool(ctx context.Context, name string) error {
	return r.eng.Update(ctx, func(tx Tx) error { return remove(tx, bucketPools, "pool", name) })
}
