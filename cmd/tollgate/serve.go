package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/keystore"
	"github.com/tollgate/tollgate/keystore/analytics"
	"github.com/tollgate/tollgate/keystore/portal"
	"github.com/tollgate/tollgate/keystore/store"
)

// serveConfig is everything `tollgate serve` is told by flags and environment.
type serveConfig struct {
	listen, adminListen string
	dataDir             string
	redisURL            string
	redisPrefix         string
	adminToken          string
	dataToken           string
	dataTokenFile       string
	cacheTTL, negTTL    time.Duration
	maxBody             int64
	logLevel, logFormat string
	readyFile           string
	usage               analytics.Config
	portal              portalFlags
}

// portalFlags configure the developer portal's listener (off when addr is empty).
type portalFlags struct {
	addr, signup, gatewayURL string
	secureCookies            bool
	admin, demo              string
}

// Environment variables holding the seeded portal accounts' passwords.
const (
	envPortalAdminPassword = "TOLLGATE_PORTAL_ADMIN_PASSWORD"
	envPortalDemoPassword  = "TOLLGATE_PORTAL_DEMO_PASSWORD"
)

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}

func runServe(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "serve")
	var c serveConfig
	fs.StringVar(&c.listen, "listen", keystore.DefaultListen, "data-plane address (POST /v1/verify); keep it on loopback unless a proxy fronts it")
	fs.StringVar(&c.adminListen, "admin-listen", keystore.DefaultAdminListen, "admin API address")
	fs.StringVar(&c.dataDir, "data-dir", envOr(e, envDataDir, defaultDataDir), "directory for the embedded database and the generated admin token (env "+envDataDir+")")
	fs.StringVar(&c.redisURL, "redis", e.getenv(envRedis), "share state in Redis instead of the embedded file, e.g. redis://127.0.0.1:6379/0 (env "+envRedis+")")
	fs.StringVar(&c.redisPrefix, "redis-prefix", store.DefaultRedisPrefix, "prefix of every Redis key")
	fs.StringVar(&c.adminToken, "admin-token", "", "admin bearer token (env "+keystore.AdminTokenEnv+"; default: generated into --data-dir)")
	fs.StringVar(&c.dataToken, "data-token", "", "bearer token the data plane requires from the filters (env "+keystore.DataTokenEnv+"); required unless --listen is a loopback address")
	fs.StringVar(&c.dataTokenFile, "data-token-file", "", "read the data-plane token from this file instead")
	fs.DurationVar(&c.cacheTTL, "cache-ttl", keystore.DefaultCacheTTL, "how long filters may cache a positive verify answer (bounds revocation delay)")
	fs.DurationVar(&c.negTTL, "negative-cache-ttl", keystore.DefaultNegativeCacheTTL, "how long filters may cache unknown, revoked and expired answers")
	fs.Int64Var(&c.maxBody, "max-body-bytes", keystore.DefaultMaxBodyBytes, "largest admin request body")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.DurationVar(&c.usage.DedupeWindow, "usage-dedupe-window", analytics.DefaultDedupeWindow, "how long usage-record request ids are remembered; older records are acknowledged but not counted")
	fs.DurationVar(&c.usage.MinuteRetention, "usage-retention-minutes", analytics.DefaultMinuteRetention, "how long per-minute usage aggregates are kept")
	fs.DurationVar(&c.usage.HourRetention, "usage-retention-hours", analytics.DefaultHourRetention, "how long per-hour usage aggregates are kept")
	fs.DurationVar(&c.usage.DayRetention, "usage-retention-days", analytics.DefaultDayRetention, "how long per-day usage aggregates are kept")
	fs.DurationVar(&c.usage.RawRetention, "usage-raw-retention", 0, "also keep raw usage records this long, for export (0: keep none, the default)")
	fs.StringVar(&c.portal.addr, "portal", "", "serve the developer portal on this address, e.g. "+portal.DefaultListen+" (off when empty)")
	fs.StringVar(&c.portal.signup, "portal-signup", portal.SignupOpen, "portal sign-up: open, invite or approval")
	fs.StringVar(&c.portal.gatewayURL, "portal-gateway-url", portal.DefaultGatewayURL, "gateway URL the portal's key snippets call")
	fs.BoolVar(&c.portal.secureCookies, "portal-secure-cookies", false, "mark portal cookies Secure (TLS ends at a proxy in front of the portal)")
	fs.StringVar(&c.portal.admin, "portal-admin", "", "create this portal admin account at start unless it exists (password from env "+envPortalAdminPassword+")")
	fs.StringVar(&c.portal.demo, "portal-demo-developer", "", "create this developer account at start unless it exists (password from env "+envPortalDemoPassword+")")
	fs.StringVar(&c.readyFile, "ready-file", "", "write {\"data\":ADDR,\"admin\":ADDR} here once listening (useful with port 0)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if c.usage.DedupeWindow < time.Minute || c.usage.MinuteRetention < time.Minute || c.usage.HourRetention < time.Hour || c.usage.DayRetention < 24*time.Hour {
		return usagef("--usage-dedupe-window and --usage-retention-minutes must be at least 1m, --usage-retention-hours 1h, --usage-retention-days 24h")
	}
	if c.cacheTTL < time.Second || c.negTTL < time.Second {
		return usagef("--cache-ttl and --negative-cache-ttl must be at least 1s")
	}
	log, err := newLogger(e.stderr, c.logLevel, c.logFormat)
	if err != nil {
		return err
	}
	return serve(ctx, e, c, log)
}

func serve(ctx context.Context, e env, c serveConfig, log *slog.Logger) (err error) {
	dataToken, dataSrc, err := keystore.ResolveDataToken(c.dataToken, c.dataTokenFile, e.getenv(keystore.DataTokenEnv))
	if err != nil {
		return err
	}
	switch {
	case dataToken != "":
		log.Info("the data plane requires a token", "source", string(dataSrc))
	case !keystore.IsLoopback(c.listen):
		return usagef("the data plane would listen on %s, beyond loopback, without a token: set --data-token, --data-token-file or %s", c.listen, keystore.DataTokenEnv)
	default:
		log.Info("the data plane needs no token (loopback only); set " + keystore.DataTokenEnv + " to require one")
	}

	backend, err := store.OpenBackend(ctx, store.BackendOptions{DataDir: c.dataDir, RedisURL: c.redisURL, RedisPrefix: c.redisPrefix})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := backend.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	log.Info("storage opened", "backend", backend.Kind(), "where", backend.Where)

	st, err := backend.Keystore()
	if err != nil {
		return err
	}
	tokenDir := c.dataDir
	token, src, err := keystore.ResolveAdminToken(c.adminToken, e.getenv(keystore.AdminTokenEnv), tokenDir)
	if err != nil {
		return err
	}
	switch src {
	case keystore.TokenFromGenerated:
		log.Info("generated an admin token", "file", filepath.Join(tokenDir, keystore.AdminTokenFile))
	case keystore.TokenFromFile:
		log.Info("using the admin token", "file", filepath.Join(tokenDir, keystore.AdminTokenFile))
	default:
		log.Info("using the admin token", "source", string(src))
	}

	var mounts []keystore.Mount
	var collectors []keystore.Collector
	var counters *counter.Engine
	for _, build := range dataPlaneExtensions() {
		ext, err := build(ctx, backend, log)
		if err != nil {
			return fmt.Errorf("start data-plane extension: %w", err)
		}
		mounts = append(mounts, ext.Mounts...)
		collectors = append(collectors, ext.Collectors...)
		if ext.Counters != nil {
			counters = ext.Counters
		}
		if ext.Close != nil {
			defer func() {
				if cerr := ext.Close(); cerr != nil {
					log.Warn("extension close failed", "error", cerr)
				}
			}()
		}
	}

	usage, err := analytics.Open(backend, c.usage)
	if err != nil {
		return err
	}
	pruneCtx, stopPrune := context.WithCancel(ctx)
	defer stopPrune()
	go usage.Run(pruneCtx, time.Minute, func(err error) { log.Warn("usage prune failed", "error", err) })

	svc, err := keystore.New(keystore.Config{
		Store:            st,
		Backend:          backend.Kind(),
		AdminToken:       token,
		DataToken:        dataToken,
		Logger:           log,
		CacheTTL:         c.cacheTTL,
		NegativeCacheTTL: c.negTTL,
		MaxBodyBytes:     c.maxBody,
		DataMounts:       mounts,
		Collectors:       collectors,
		Analytics:        usage,
	})
	if err != nil {
		return err
	}
	var pt *portal.Portal
	if c.portal.addr != "" {
		if pt, err = startPortal(ctx, e, c.portal, st, backend, usage, counters, log); err != nil {
			return err
		}
	}
	data, admin, err := keystore.Listen(ctx, c.listen, c.adminListen)
	if err != nil {
		return err
	}
	warnIfPublic(log, "data plane", data.Addr().String())
	warnIfPublic(log, "admin API", admin.Addr().String())
	var portalL net.Listener
	if pt != nil {
		var lc net.ListenConfig
		if portalL, err = lc.Listen(ctx, "tcp", c.portal.addr); err != nil {
			data.Close()
			admin.Close()
			return fmt.Errorf("listen on %s (portal): %w", c.portal.addr, err)
		}
		warnIfPublic(log, "portal", portalL.Addr().String())
		log.Info("portal listening", "addr", portalL.Addr().String(), "signup", c.portal.signup)
	}
	if c.readyFile != "" {
		addrs := map[string]string{"data": data.Addr().String(), "admin": admin.Addr().String()}
		if portalL != nil {
			addrs["portal"] = portalL.Addr().String()
		}
		if err := writeReadyAddrs(c.readyFile, addrs); err != nil {
			data.Close()
			admin.Close()
			if portalL != nil {
				portalL.Close()
			}
			return err
		}
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	portalErr := make(chan error, 1)
	if portalL != nil {
		go func() {
			err := pt.Serve(sctx, portalL)
			if err != nil {
				stop() // a failed portal stops the keystore too
			}
			portalErr <- err
		}()
	} else {
		portalErr <- nil
	}
	serveErr := svc.Serve(sctx, data, admin)
	stop()
	if perr := <-portalErr; serveErr == nil && perr != nil {
		serveErr = perr
	}
	if serveErr != nil {
		return serveErr
	}
	log.Info("keystore stopped")
	return nil
}

func warnIfPublic(log *slog.Logger, what, addr string) {
	if !strings.HasPrefix(addr, "127.") && !strings.HasPrefix(addr, "[::1]") {
		log.Warn(what+" is not bound to loopback", "addr", addr)
	}
}

// startPortal builds the portal and seeds the accounts the flags name.
func startPortal(ctx context.Context, e env, f portalFlags, st store.Store, b *store.Backend, usage *analytics.Store,
	counters *counter.Engine, log *slog.Logger) (*portal.Portal, error) {
	cfg := portal.Config{Store: st, Backend: b, Analytics: usage, Signup: f.signup, GatewayURL: f.gatewayURL,
		SecureCookies: f.secureCookies, Logger: log}
	if counters != nil { // a nil *Engine must not become a non-nil interface
		cfg.Counters = counters
	}
	pt, err := portal.New(cfg)
	if err != nil {
		return nil, usagef("%v", err)
	}
	for _, seed := range []struct{ email, env, name, role string }{
		{f.admin, envPortalAdminPassword, "Portal admin", portal.RoleAdmin},
		{f.demo, envPortalDemoPassword, "Demo developer", portal.RoleDeveloper},
	} {
		if seed.email == "" {
			continue
		}
		pw := e.getenv(seed.env)
		if pw == "" {
			return nil, usagef("seeding portal account %s needs its password in %s", seed.email, seed.env)
		}
		if err := pt.Seed(ctx, seed.email, seed.name, pw, seed.role); err != nil {
			return nil, err
		}
		log.Info("portal account ready", "email", seed.email, "role", seed.role)
	}
	return pt, nil
}

// writeReadyFile atomically publishes the bound addresses.
func writeReadyFile(path, data, admin string) error {
	return writeReadyAddrs(path, map[string]string{"data": data, "admin": admin})
}

// writeReadyAddrs atomically publishes named addresses as a JSON object.
func writeReadyAddrs(path string, addrs map[string]string) error {
	raw, err := json.Marshal(addrs)
	if err != nil {
		return fmt.Errorf("encode ready file: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("write ready file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(fmt.Errorf("write ready file: %w", err), os.Remove(tmp))
	}
	return nil
}
