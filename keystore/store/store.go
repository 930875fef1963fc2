// Package store persists the keystore's records behind one interface with
// two backends: an embedded bbolt file (default) and Redis (shared by
// several keystore replicas). The record logic — references, cascades,
// idempotent upserts — is written once over a small transactional engine.
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/keystore/model"
)

// Errors callers map to HTTP statuses; returned errors wrap them with details.
var (
	// ErrNotFound: the record does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrExists: a create found the record already there (409).
	ErrExists = errors.New("already exists")
	// ErrInUse: a delete would leave other records pointing at nothing (409).
	ErrInUse = errors.New("still in use")
	// ErrBadReference: a record names another that does not exist (422).
	ErrBadReference = errors.New("unknown reference")
)

// Result says what an idempotent upsert did, so `apply` can report it.
type Result string

// Upsert outcomes.
const (
	Created   Result = "created"
	Updated   Result = "configured"
	Unchanged Result = "unchanged"
)

// Grant is everything verification needs about one key, read in one view:
// the key, its app and developer, and the products (with their operation
// sets) the key may use.
type Grant struct {
	Key       model.Key
	App       model.App
	Developer model.Developer
	Products  []model.Product
	Sets      map[string]model.OperationSet
}

// Store is the keystore's persistence. Records passed in are expected to be
// normalized and validated; the store checks references and uniqueness and
// sets timestamps.
type Store interface {
	// Ping checks the backend is reachable (for /healthz).
	Ping(ctx context.Context) error

	CreateProduct(ctx context.Context, p model.Product) (model.Product, error)
	PutProduct(ctx context.Context, p model.Product) (model.Product, Result, error)
	GetProduct(ctx context.Context, name string) (model.Product, error)
	ListProducts(ctx context.Context) ([]model.Product, error)
	DeleteProduct(ctx context.Context, name string) error

	CreateOperationSet(ctx context.Context, s model.OperationSet) (model.OperationSet, error)
	PutOperationSet(ctx context.Context, s model.OperationSet) (model.OperationSet, Result, error)
	GetOperationSet(ctx context.Context, name string) (model.OperationSet, error)
	ListOperationSets(ctx context.Context) ([]model.OperationSet, error)
	DeleteOperationSet(ctx context.Context, name string) error

	CreateDeveloper(ctx context.Context, d model.Developer) (model.Developer, error)
	PutDeveloper(ctx context.Context, d model.Developer) (model.Developer, Result, error)
	GetDeveloper(ctx context.Context, email string) (model.Developer, error)
	ListDevelopers(ctx context.Context) ([]model.Developer, error)
	DeleteDeveloper(ctx context.Context, email string) error

	CreateApp(ctx context.Context, a model.App) (model.App, error)
	PutApp(ctx context.Context, a model.App) (model.App, Result, error)
	GetApp(ctx context.Context, name string) (model.App, error)
	// ListApps lists every app, or a developer's apps when developer is not empty.
	ListApps(ctx context.Context, developer string) ([]model.App, error)
	// DeleteApp deletes the app and every key it owns.
	DeleteApp(ctx context.Context, name string) error

	// CreateKey stores a new key record (hash only) for an existing app.
	CreateKey(ctx context.Context, k model.Key) (model.Key, error)
	GetKey(ctx context.Context, id string) (model.Key, error)
	// ListKeys lists every key, or an app's keys when app is not empty.
	ListKeys(ctx context.Context, app string) ([]model.Key, error)
	// SetKeyStatus approves or revokes a key.
	SetKeyStatus(ctx context.Context, id, status string) (model.Key, error)
	DeleteKey(ctx context.Context, id string) error

	// Lookup finds the key with this SHA-256 hex hash and everything needed
	// to verify it. An unknown hash, or a key whose app is gone, is ErrNotFound.
	// The Grant may share memory with a decode cache: treat it as read-only.
	Lookup(ctx context.Context, hash string) (Grant, error)

	// Pools are the inference pools (store/pools.go).
	Pools
}

// records implements Store over any engine.
type records struct {
	eng   engine
	now   func() time.Time
	cache *decodeCache
}

// Option configures a Store.
type Option func(*records)

// WithClock sets the clock used for timestamps (tests pin it).
func WithClock(now func() time.Time) Option { return func(r *records) { r.now = now } }

func newRecords(eng engine, opts []Option) *records {
	r := &records{eng: eng, now: time.Now, cache: newDecodeCache()}
	for _, o := range opts {
		o(r)
	}
	return r
}

func (r *records) Ping(ctx context.Context) error { return r.eng.Ping(ctx) }

func (r *records) stamp() time.Time { return r.now().UTC().Truncate(time.Millisecond) }

func get[T any](tx Tx, bucket, id string) (T, bool, error) {
	var v T
	raw, ok, err := tx.Get(bucket, id)
	if err != nil || !ok {
		return v, ok, err
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, false, fmt.Errorf("decode %s/%s: %w", bucket, id, err)
	}
	return v, true, nil
}

func put(tx Tx, bucket, id string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, id, err)
	}
	return tx.Put(bucket, id, raw)
}

func list[T any](tx Tx, bucket string, keep func(*T) bool) ([]T, error) {
	out := []T{}
	err := tx.Each(bucket, func(id string, raw []byte) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("decode %s/%s: %w", bucket, id, err)
		}
		if keep == nil || keep(&v) {
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// stamps gives generic code access to a record's timestamps.
type stamps[T any] func(*T) (created, updated *time.Time)

// upsert writes v under id. With create set, an existing record is ErrExists.
// Otherwise an existing record keeps its creation time, and a record equal to
// the stored one (timestamps aside) is left untouched and reported Unchanged.
func upsert[T any](tx Tx, bucket, kind, id string, v *T, ts stamps[T], now time.Time, create bool) (Result, error) {
	old, ok, err := get[T](tx, bucket, id)
	if err != nil {
		return "", err
	}
	created, updated := ts(v)
	if ok {
		if create {
			return "", fmt.Errorf("%s %q: %w", kind, id, ErrExists)
		}
		oc, ou := ts(&old)
		*created, *updated = *oc, *ou
		a, errA := json.Marshal(old)
		b, errB := json.Marshal(v)
		if errA == nil && errB == nil && bytes.Equal(a, b) {
			return Unchanged, nil
		}
		*updated = now
		return Updated, put(tx, bucket, id, v)
	}
	*created, *updated = now, now
	return Created, put(tx, bucket, id, v)
}

func remove(tx Tx, bucket, kind, id string) error {
	_, ok, err := tx.Get(bucket, id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s %q: %w", kind, id, ErrNotFound)
	}
	return tx.Delete(bucket, id)
}

func fetch[T any](ctx context.Context, eng engine, bucket, kind, id string) (T, error) {
	var v T
	err := eng.View(ctx, func(tx Tx) error {
		got, ok, err := get[T](tx, bucket, id)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s %q: %w", kind, id, ErrNotFound)
		}
		v = got
		return nil
	})
	return v, err
}

func fetchAll[T any](ctx context.Context, eng engine, bucket string, keep func(*T) bool) ([]T, error) {
	var out []T
	err := eng.View(ctx, func(tx Tx) error {
		var err error
		out, err = list(tx, bucket, keep)
		return err
	})
	return out, err
}

func names(in []string) string {
	q := make([]string, len(in))
	for i, s := range in {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// --- products ---

func productStamps(p *model.Product) (*time.Time, *time.Time) { return &p.CreatedAt, &p.UpdatedAt }

func checkSetsExist(tx Tx, p model.Product) error {
	var missing []string
	for _, s := range p.OperationSets {
		_, ok, err := tx.Get(bucketOpSets, s)
		if err != nil {
			return err
		}
		if !ok {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("product %q names operation set(s) %s: %w", p.Name, names(missing), ErrBadReference)
	}
	return nil
}

func (r *records) writeProduct(ctx context.Context, p model.Product, create bool) (model.Product, Result, error) {
	var res Result
	var out model.Product
	err := r.eng.Update(ctx, func(tx Tx) error {
		v := p
		if err := checkSetsExist(tx, v); err != nil {
			return err
		}
		var err error
		res, err = upsert(tx, bucketProducts, "product", v.Name, &v, productStamps, r.stamp(), create)
		out = v
		return err
	})
	return out, res, err
}

func (r *records) CreateProduct(ctx context.Context, p model.Product) (model.Product, error) {
	out, _, err := r.writeProduct(ctx, p, true)
	return out, err
}

func (r *records) PutProduct(ctx context.Context, p model.Product) (model.Product, Result, error) {
	return r.writeProduct(ctx, p, false)
}

func (r *records) GetProduct(ctx context.Context, name string) (model.Product, error) {
	return fetch[model.Product](ctx, r.eng, bucketProducts, "product", name)
}

func (r *records) ListProducts(ctx context.Context) ([]model.Product, error) {
	return fetchAll[model.Product](ctx, r.eng, bucketProducts, nil)
}

func (r *records) DeleteProduct(ctx context.Context, name string) error {
	return r.eng.Update(ctx, func(tx Tx) error {
		users, err := list(tx, bucketApps, func(a *model.App) bool { return slices.Contains(a.Products, name) })
		if err != nil {
			return err
		}
		if len(users) > 0 {
			appNames := make([]string, len(users))
			for i, a := range users {
				appNames[i] = a.Name
			}
			return fmt.Errorf("product %q is used by app(s) %s: %w", name, names(appNames), ErrInUse)
		}
		return remove(tx, bucketProducts, "product", name)
	})
}

// --- operation sets ---

func setStamps(s *model.OperationSet) (*time.Time, *time.Time) { return &s.CreatedAt, &s.UpdatedAt }

func (r *records) writeSet(ctx context.Context, s model.OperationSet, create bool) (model.OperationSet, Result, error) {
	var res Result
	var out model.OperationSet
	err := r.eng.Update(ctx, func(tx Tx) error {
		v := s
		var err error
		res, err = upsert(tx, bucketOpSets, "operation set", v.Name, &v, setStamps, r.stamp(), create)
		out = v
		return err
	})
	return out, res, err
}

func (r *records) CreateOperationSet(ctx context.Context, s model.OperationSet) (model.OperationSet, error) {
	out, _, err := r.writeSet(ctx, s, true)
	return out, err
}

func (r *records) PutOperationSet(ctx context.Context, s model.OperationSet) (model.OperationSet, Result, error) {
	return r.writeSet(ctx, s, false)
}

func (r *records) GetOperationSet(ctx context.Context, name string) (model.OperationSet, error) {
	return fetch[model.OperationSet](ctx, r.eng, bucketOpSets, "operation set", name)
}

func (r *records) ListOperationSets(ctx context.Context) ([]model.OperationSet, error) {
	return fetchAll[model.OperationSet](ctx, r.eng, bucketOpSets, nil)
}

func (r *records) DeleteOperationSet(ctx context.Context, name string) error {
	return r.eng.Update(ctx, func(tx Tx) error {
		users, err := list(tx, bucketProducts, func(p *model.Product) bool { return slices.Contains(p.OperationSets, name) })
		if err != nil {
			return err
		}
		if len(users) > 0 {
			prodNames := make([]string, len(users))
			for i, p := range users {
				prodNames[i] = p.Name
			}
			return fmt.Errorf("operation set %q is used by product(s) %s: %w", name, names(prodNames), ErrInUse)
		}
		return remove(tx, bucketOpSets, "operation set", name)
	})
}

// --- developers ---

func developerStamps(d *model.Developer) (*time.Time, *time.Time) { return &d.CreatedAt, &d.UpdatedAt }

func (r *records) writeDeveloper(ctx context.Context, d model.Developer, create bool) (model.Developer, Result, error) {
	var res Result
	var out model.Developer
	err := r.eng.Update(ctx, func(tx Tx) error {
		v := d
		var err error
		res, err = upsert(tx, bucketDevelopers, "developer", v.Email, &v, developerStamps, r.stamp(), create)
		out = v
		return err
	})
	return out, res, err
}

func (r *records) CreateDeveloper(ctx context.Context, d model.Developer) (model.Developer, error) {
	out, _, err := r.writeDeveloper(ctx, d, true)
	return out, err
}

func (r *records) PutDeveloper(ctx context.Context, d model.Developer) (model.Developer, Result, error) {
	return r.writeDeveloper(ctx, d, false)
}

func (r *records) GetDeveloper(ctx context.Context, email string) (model.Developer, error) {
	return fetch[model.Developer](ctx, r.eng, bucketDevelopers, "developer", email)
}

func (r *records) ListDevelopers(ctx context.Context) ([]model.Developer, error) {
	return fetchAll[model.Developer](ctx, r.eng, bucketDevelopers, nil)
}

func (r *records) DeleteDeveloper(ctx context.Context, email string) error {
	return r.eng.Update(ctx, func(tx Tx) error {
		apps, err := list(tx, bucketApps, func(a *model.App) bool { return a.Developer == email })
		if err != nil {
			return err
		}
		if len(apps) > 0 {
			appNames := make([]string, len(apps))
			for i, a := range apps {
				appNames[i] = a.Name
			}
			return fmt.Errorf("developer %q owns app(s) %s: %w", email, names(appNames), ErrInUse)
		}
		return remove(tx, bucketDevelopers, "developer", email)
	})
}

// --- apps ---

func appStamps(a *model.App) (*time.Time, *time.Time) { return &a.CreatedAt, &a.UpdatedAt }

func checkAppRefs(tx Tx, a model.App) error {
	if _, ok, err := tx.Get(bucketDevelopers, a.Developer); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("app %q names developer %q: %w", a.Name, a.Developer, ErrBadReference)
	}
	var missing []string
	for _, p := range a.Products {
		_, ok, err := tx.Get(bucketProducts, p)
		if err != nil {
			return err
		}
		if !ok {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("app %q names product(s) %s: %w", a.Name, names(missing), ErrBadReference)
	}
	return nil
}

func (r *records) writeApp(ctx context.Context, a model.App, create bool) (model.App, Result, error) {
	var res Result
	var out model.App
	err := r.eng.Update(ctx, func(tx Tx) error {
		v := a
		if v.Products == nil {
			v.Products = []string{}
		}
		if err := checkAppRefs(tx, v); err != nil {
			return err
		}
		var err error
		res, err = upsert(tx, bucketApps, "app", v.Name, &v, appStamps, r.stamp(), create)
		out = v
		return err
	})
	return out, res, err
}

func (r *records) CreateApp(ctx context.Context, a model.App) (model.App, error) {
	out, _, err := r.writeApp(ctx, a, true)
	return out, err
}

func (r *records) PutApp(ctx context.Context, a model.App) (model.App, Result, error) {
	return r.writeApp(ctx, a, false)
}

func (r *records) GetApp(ctx context.Context, name string) (model.App, error) {
	return fetch[model.App](ctx, r.eng, bucketApps, "app", name)
}

func (r *records) ListApps(ctx context.Context, developer string) ([]model.App, error) {
	var keep func(*model.App) bool
	if developer != "" {
		developer = strings.ToLower(developer)
		keep = func(a *model.App) bool { return a.Developer == developer }
	}
	return fetchAll(ctx, r.eng, bucketApps, keep)
}

func (r *records) DeleteApp(ctx context.Context, name string) error {
	return r.eng.Update(ctx, func(tx Tx) error {
		if err := remove(tx, bucketApps, "app", name); err != nil {
			return err
		}
		keys, err := list(tx, bucketKeys, func(k *model.Key) bool { return k.App == name })
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := deleteKey(tx, k); err != nil {
				return err
			}
		}
		return nil
	})
}

// --- keys ---

func (r *records) CreateKey(ctx context.Context, k model.Key) (model.Key, error) {
	if !model.ValidKeyHash(k.Hash) || !model.ValidKeyID(k.ID) {
		return model.Key{}, fmt.Errorf("key record needs a key_ id and a SHA-256 hex hash: %w", ErrBadReference)
	}
	var out model.Key
	err := r.eng.Update(ctx, func(tx Tx) error {
		v := k
		app, ok, err := get[model.App](tx, bucketApps, v.App)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("app %q: %w", v.App, ErrNotFound)
		}
		var extra []string
		for _, p := range v.Products {
			if !slices.Contains(app.Products, p) {
				extra = append(extra, p)
			}
		}
		if len(extra) > 0 {
			return fmt.Errorf("app %q is not subscribed to product(s) %s: %w", v.App, names(extra), ErrBadReference)
		}
		if _, ok, err := tx.Get(bucketKeys, v.ID); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("key %q: %w", v.ID, ErrExists)
		}
		if _, ok, err := tx.Get(bucketKeyHash, v.Hash); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("a key with this hash: %w", ErrExists)
		}
		if v.Status == "" {
			v.Status = model.KeyApproved
		}
		v.CreatedAt = r.stamp()
		v.UpdatedAt = v.CreatedAt
		if err := put(tx, bucketKeys, v.ID, v); err != nil {
			return err
		}
		out = v
		return tx.Put(bucketKeyHash, v.Hash, []byte(v.ID))
	})
	return out, err
}

func (r *records) GetKey(ctx context.Context, id string) (model.Key, error) {
	return fetch[model.Key](ctx, r.eng, bucketKeys, "key", id)
}

func (r *records) ListKeys(ctx context.Context, app string) ([]model.Key, error) {
	var keep func(*model.Key) bool
	if app != "" {
		keep = func(k *model.Key) bool { return k.App == app }
	}
	return fetchAll(ctx, r.eng, bucketKeys, keep)
}

func (r *records) SetKeyStatus(ctx context.Context, id, status string) (model.Key, error) {
	if status != model.KeyApproved && status != model.KeyRevoked {
		return model.Key{}, fmt.Errorf("key status %q: %w", status, ErrBadReference)
	}
	var out model.Key
	err := r.eng.Update(ctx, func(tx Tx) error {
		k, ok, err := get[model.Key](tx, bucketKeys, id)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("key %q: %w", id, ErrNotFound)
		}
		if k.Status != status {
			k.Status = status
			k.UpdatedAt = r.stamp()
			if err := put(tx, bucketKeys, id, k); err != nil {
				return err
			}
		}
		out = k
		return nil
	})
	return out, err
}

func deleteKey(tx Tx, k model.Key) error {
	if err := tx.Delete(bucketKeys, k.ID); err != nil {
		return err
	}
	return tx.Delete(bucketKeyHash, k.Hash)
}

func (r *records) DeleteKey(ctx context.Context, id string) error {
	return r.eng.Update(ctx, func(tx Tx) error {
		k, ok, err := get[model.Key](tx, bucketKeys, id)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("key %q: %w", id, ErrNotFound)
		}
		return deleteKey(tx, k)
	})
}

func (r *records) Lookup(ctx context.Context, hash string) (Grant, error) {
	var g Grant
	err := r.eng.View(ctx, func(tx Tx) error {
		id, ok, err := tx.Get(bucketKeyHash, hash)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("key hash: %w", ErrNotFound)
		}
		k, ok, err := getCached[model.Key](r.cache, tx, bucketKeys, string(id))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("key %q indexed but missing: %w", id, ErrNotFound)
		}
		app, ok, err := getCached[model.App](r.cache, tx, bucketApps, k.App)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("app %q of key %q: %w", k.App, k.ID, ErrNotFound)
		}
		dev, _, err := getCached[model.Developer](r.cache, tx, bucketDevelopers, app.Developer)
		if err != nil {
			return err
		}
		g = Grant{Key: k, App: app, Developer: dev}
		for _, name := range model.EffectiveProducts(k, app) {
			p, ok, err := getCached[model.Product](r.cache, tx, bucketProducts, name)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			g.Products = append(g.Products, p)
			for _, s := range p.OperationSets {
				if _, seen := g.Sets[s]; seen {
					continue
				}
				set, ok, err := getCached[model.OperationSet](r.cache, tx, bucketOpSets, s)
				if err != nil {
					return err
				}
				if ok {
					if g.Sets == nil {
						g.Sets = map[string]model.OperationSet{}
					}
					g.Sets[s] = set
				}
			}
		}
		return nil
	})
	return g, err
}
