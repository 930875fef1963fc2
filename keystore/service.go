// Package keystore is Tollgate's key and product service: a data-plane API
// (POST /v1/verify) that the apikey filter calls, and an admin API (CRUD for
// products, operation sets, developers, apps and keys) behind a bearer token.
// Records live in a store.Store (embedded bbolt or Redis).
package keystore

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/keystore/analytics"
	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/keystore/store"
)

// Defaults for Config fields left zero.
const (
	DefaultCacheTTL         = 30 * time.Second
	DefaultNegativeCacheTTL = 5 * time.Second
	DefaultMaxBodyBytes     = 1 << 20
	// VerifyMaxBodyBytes caps /v1/verify bodies: a key, a path and a model fit easily.
	VerifyMaxBodyBytes = 16 << 10
	// MinAdminTokenLen rejects guessable admin tokens.
	MinAdminTokenLen = 16
)

// Mount is an extra handler served on the data-plane listener next to
// /v1/verify, e.g. the quota counters' endpoints. Pattern is a net/http
// ServeMux pattern such as "/v1/quota/" or "POST /v1/quota/consume".
type Mount struct {
	Pattern string
	Handler http.Handler
}

// Config configures a Service.
type Config struct {
	// Store holds the records (required).
	Store store.Store
	// Backend names the storage kind for /metrics ("bolt", "redis").
	Backend string
	// AdminToken guards the admin API (required, at least MinAdminTokenLen bytes).
	AdminToken string
	// DataToken, when set (at least MinAdminTokenLen bytes), guards every
	// data-plane route but GET /healthz: filters send it as
	// "Authorization: Bearer <token>". Empty leaves the data plane open,
	// which `tollgate serve` allows only on a loopback address.
	DataToken string
	// Logger receives structured logs; keys are never logged. Defaults to a discarding logger.
	Logger *slog.Logger
	// CacheTTL is what positive verify answers tell filters to cache them for.
	CacheTTL time.Duration
	// NegativeCacheTTL is the cache time for unknown, revoked and expired keys.
	NegativeCacheTTL time.Duration
	// MaxBodyBytes caps admin request bodies.
	MaxBodyBytes int64
	// Now is the clock (tests pin it).
	Now func() time.Time
	// DataMounts are extra data-plane handlers sharing the listener and metrics.
	DataMounts []Mount
	// Collectors add metrics to /metrics.
	Collectors []Collector
	// Analytics, when set, ingests usage records (POST /v1/usage) and answers
	// analytics queries (GET /admin/v1/analytics/usage); without it both answer 404.
	Analytics *analytics.Store
}

// Service answers both APIs; it is safe for concurrent use.
type Service struct {
	cfg      Config
	log      *slog.Logger
	tokenSum [sha256.Size]byte
	dataSum  *[sha256.Size]byte // nil: the data plane needs no token
	metrics  *metrics
	data     http.Handler
	admin    http.Handler
}

// New checks the configuration and builds both handlers.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("keystore: Config.Store is required")
	}
	if len(cfg.AdminToken) < MinAdminTokenLen {
		return nil, fmt.Errorf("keystore: admin token must be at least %d characters", MinAdminTokenLen)
	}
	if cfg.DataToken != "" && len(cfg.DataToken) < MinAdminTokenLen {
		return nil, fmt.Errorf("keystore: data-plane token must be at least %d characters", MinAdminTokenLen)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.NegativeCacheTTL <= 0 {
		cfg.NegativeCacheTTL = DefaultNegativeCacheTTL
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Backend == "" {
		cfg.Backend = "unknown"
	}
	s := &Service{
		cfg:      cfg,
		log:      cfg.Logger,
		tokenSum: sha256.Sum256([]byte(cfg.AdminToken)),
		metrics:  newMetrics(cfg.Backend, cfg.Now()),
	}
	if cfg.DataToken != "" {
		sum := sha256.Sum256([]byte(cfg.DataToken))
		s.dataSum = &sum
	}
	var err error
	if s.data, err = s.dataHandler(); err != nil {
		return nil, err
	}
	s.admin = s.adminHandler()
	return s, nil
}

// DataHandler serves /v1/verify, /healthz, /metrics and the configured mounts.
func (s *Service) DataHandler() http.Handler { return s.data }

// AdminHandler serves /admin/v1/..., /healthz and /metrics.
func (s *Service) AdminHandler() http.Handler { return s.admin }

// tokenEqual compares a presented token with a configured token's SHA-256 in
// constant time.
func tokenEqual(presented string, want *[sha256.Size]byte) bool {
	sum := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(sum[:], want[:]) == 1
}

func ttlSeconds(d time.Duration) int {
	secs := int(d / time.Second)
	if secs < 1 {
		return 1
	}
	return secs
}

func denial(reason, message string, ttl time.Duration) model.VerifyResponse {
	r := model.VerifyResponse{Valid: false, Status: model.ReasonStatus(reason), Reason: reason, Message: message}
	if ttl > 0 {
		r.CacheTTLSeconds = ttlSeconds(ttl)
	}
	return r
}

// Verify decides on one verify request. The error is only for storage
// failures (the filter then fails closed or open as configured); every
// decision about the key is in the response.
func (s *Service) Verify(ctx context.Context, req model.VerifyRequest) (model.VerifyResponse, error) {
	hash := req.KeyHash
	switch {
	case req.Key == "" && req.KeyHash == "":
		return denial(model.ReasonMissing, "no API key was presented", 0), nil
	case req.Key != "":
		if !model.WellFormedKey(req.Key) {
			return denial(model.ReasonUnknownKey, "invalid API key", s.cfg.NegativeCacheTTL), nil
		}
		hash = model.HashKey(req.Key)
	}
	g, err := s.cfg.Store.Lookup(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return denial(model.ReasonUnknownKey, "invalid API key", s.cfg.NegativeCacheTTL), nil
	}
	if err != nil {
		return model.VerifyResponse{}, fmt.Errorf("look up key: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(g.Key.Hash), []byte(hash)) != 1 {
		return denial(model.ReasonUnknownKey, "invalid API key", s.cfg.NegativeCacheTTL), nil
	}
	now := s.cfg.Now()
	if g.Key.Status != model.KeyApproved {
		return denial(model.ReasonRevoked, "API key has been revoked", s.cfg.NegativeCacheTTL), nil
	}
	if g.Key.Expired(now) {
		return denial(model.ReasonExpired, "API key expired at "+g.Key.ExpiresAt.UTC().Format(time.RFC3339), s.cfg.NegativeCacheTTL), nil
	}

	resp := model.VerifyResponse{
		Valid:     true,
		Status:    http.StatusOK,
		KeyID:     g.Key.ID,
		App:       g.App.Name,
		Developer: g.App.Developer,
		Products:  make([]string, 0, len(g.Products)),
	}
	ttl := s.cfg.CacheTTL
	if !g.Key.ExpiresAt.IsZero() {
		exp := g.Key.ExpiresAt.UTC()
		resp.ExpiresAt = &exp
		if left := exp.Sub(now); left < ttl {
			ttl = left
		}
	}
	resp.CacheTTLSeconds = ttlSeconds(ttl)
	resp.Entitlements = make([]model.Entitlement, 0, len(g.Products))
	for _, p := range g.Products {
		resp.Products = append(resp.Products, p.Name)
		resp.Entitlements = append(resp.Entitlements, model.Resolve(p, g.Sets))
	}
	if req.Method == "" && req.Path == "" {
		return resp, nil
	}
	d := model.Authorize(resp.Entitlements, req.Method, req.Path, req.Model)
	switch d.Reason {
	case model.ReasonOperationNotAllowed:
		resp.Valid, resp.Reason, resp.Status = false, d.Reason, model.ReasonStatus(d.Reason)
		resp.Message = fmt.Sprintf("this API key may not call %s %s", req.Method, model.RequestPath(req.Path))
	case model.ReasonModelNotAllowed:
		resp.Valid, resp.Reason, resp.Status = false, d.Reason, model.ReasonStatus(d.Reason)
		resp.Message = fmt.Sprintf("this API key may not use model %q", req.Model)
	default:
		resp.Product = d.Entitlement.Product
		resp.Operation = &model.OperationGrant{Path: d.Operation.Path, Methods: d.Operation.Methods}
		resp.AllowedModels = d.Entitlement.AllowedModels
		resp.RequestQuota = d.Operation.RequestQuota
		resp.TokenQuota = d.Operation.TokenQuota
	}
	return resp, nil
}

// timeResolution is the precision of stored timestamps (matches the store's).
const timeResolution = time.Millisecond
