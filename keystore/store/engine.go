package store

import "context"

// Tx is the view a transaction has of the storage: flat buckets of id →
// JSON record. Values returned by Get and Each are only valid until the
// callback returns.
type Tx interface {
	// Get returns the record and true, or nil and false when it is absent.
	Get(bucket, id string) ([]byte, bool, error)
	// Each calls fn for every record of a bucket in ascending id order.
	Each(bucket string, fn func(id string, v []byte) error) error
	// Put stores a record (read-only transactions return an error).
	Put(bucket, id string, v []byte) error
	// Delete removes a record; deleting an absent record is not an error.
	Delete(bucket, id string) error
}

// engine is what a storage backend implements: serialisable read-write
// transactions and consistent-enough reads. Update may run fn more than once
// (optimistic retries), so fn must have no side effects besides Tx calls and
// assigning its results.
type engine interface {
	View(ctx context.Context, fn func(Tx) error) error
	Update(ctx context.Context, fn func(Tx) error) error
	Ping(ctx context.Context) error
}

// Buckets the keystore uses; each backend namespaces them (bbolt bucket
// "keystore.<name>", Redis hash "<prefix>keystore:<name>").
const (
	bucketProducts   = "products"
	bucketOpSets     = "opsets"
	bucketDevelopers = "developers"
	bucketApps       = "apps"
	bucketKeys       = "keys"
	bucketKeyHash    = "keyhash"
	bucketPools      = "pools"
)

// bucketNames lists every keystore bucket, for backends that create or watch them all.
func bucketNames() []string {
	return []string{bucketProducts, bucketOpSets, bucketDevelopers, bucketApps, bucketKeys, bucketKeyHash, bucketPools}
}
