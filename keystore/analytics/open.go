package analytics

import (
	"errors"

	"github.com/tollgate/tollgate/keystore/store"
)

// Open builds the Store on the backend `tollgate serve` opened: Redis keys
// under the backend's prefix, or buckets in the embedded bbolt file.
func Open(b *store.Backend, cfg Config) (*Store, error) {
	switch {
	case b.Redis != nil:
		return NewRedis(b.Redis, b.Prefix, cfg), nil
	case b.Bolt != nil:
		return NewBolt(b.Bolt, cfg)
	}
	return nil, errors.New("analytics: storage backend not open")
}
