package main

import (
	"context"
	"log/slog"

	"github.com/tollgate/tollgate/keystore"
	"github.com/tollgate/tollgate/keystore/store"
)

// extensionFactory builds a component served next to the keystore from the
// storage backend `tollgate serve` opened (bbolt file or Redis), so both use
// the same --data-dir / --redis choice.
type extensionFactory func(ctx context.Context, b *store.Backend, log *slog.Logger) (keystore.Extension, error)

// dataPlaneExtensions lists the components mounted on the data-plane listener
// next to /v1/verify. The quota counters register here: return their routes
// as keystore.Mount values (e.g. "POST /v1/quota/consume") built on b.Bolt
// (own buckets) or b.Redis (own keys under b.Prefix).
func dataPlaneExtensions() []extensionFactory {
	return nil
}
