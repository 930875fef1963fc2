package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/httpapi"
	"github.com/tollgate/tollgate/counter/memstore"
	"github.com/tollgate/tollgate/counter/redisstore"
	"github.com/tollgate/tollgate/keystore"
	"github.com/tollgate/tollgate/keystore/store"
)

// extensionFactory builds a component served next to the keystore from the
// storage backend `tollgate serve` opened (bbolt file or Redis), so both use
// the same --data-dir / --redis choice.
type extensionFactory func(ctx context.Context, b *store.Backend, log *slog.Logger) (keystore.Extension, error)

// dataPlaneExtensions lists the components mounted on the data-plane listener
// next to /v1/verify.
func dataPlaneExtensions() []extensionFactory {
	return []extensionFactory{quotaCounters}
}

// quotaCounters serves the counter engine's /v1/quota/* endpoints (see
// docs/counter.md): in Redis under "<prefix>q:" when serve runs with --redis,
// otherwise in memory with a snapshot file in the data dir.
func quotaCounters(_ context.Context, b *store.Backend, log *slog.Logger) (keystore.Extension, error) {
	var backend counter.Backend
	if b.Redis != nil {
		backend = redisstore.New(b.Redis, redisstore.Options{Prefix: b.Prefix + "q:"})
	} else {
		ms, err := memstore.Open(memstore.Options{Dir: b.DataDir, Logger: log})
		if err != nil {
			return keystore.Extension{}, fmt.Errorf("quota counters: %w", err)
		}
		backend = ms
	}
	eng := counter.New(backend)
	h := httpapi.New(eng, httpapi.Options{Logger: log})
	// Each endpoint gets its own route, so the keystore's
	// tollgate_keystore_http_requests_total counts calls per endpoint
	// (route="POST /v1/quota/lease"); the catch-all answers unknown quota
	// paths with the handler's JSON 404.
	mounts := []keystore.Mount{{Pattern: "/v1/quota/", Handler: h}}
	for _, p := range httpapi.Paths() {
		mounts = append(mounts, keystore.Mount{Pattern: p, Handler: h})
	}
	return keystore.Extension{
		Mounts:     mounts,
		Collectors: []keystore.Collector{h},
		Close:      eng.Close,
		Counters:   eng,
	}, nil
}
