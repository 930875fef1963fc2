// Package portal is the developer portal served by `tollgate serve --portal`
// on its own listener: server-rendered pages (html/template) where developers
// sign up, browse the product catalogue, create apps and keys, and see their
// usage, and where admins approve developers and apps, edit products and see
// every app's analytics. It runs on the keystore's store and analytics.
//
// Security: argon2id password hashes; sessions in HttpOnly SameSite=Strict
// cookies (Secure behind TLS) stored only as hashes and renewed at sign-in;
// a CSRF token on every form (per session, or a double-submit cookie before
// sign-in) plus an Origin check; sign-in rate limiting per client address and
// lockout per account with one message for every failure; a CSP without
// inline scripts or styles; every page authorised on the server (another
// developer's app answers 404, exactly like one that does not exist).
package portal

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate/keystore/analytics"
	"github.com/tollgate/tollgate/keystore/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults for Config fields left zero.
const (
	DefaultListen         = "127.0.0.1:8422"
	DefaultSessionTTL     = 12 * time.Hour
	DefaultMaxFailures    = 5
	DefaultLockout        = 15 * time.Minute
	DefaultLoginRate      = 20 // sign-in attempts per client address per minute
	DefaultGatewayURL     = "http://127.0.0.1:8080"
	DefaultInviteLifetime = 7 * 24 * time.Hour
	maxFormBytes          = 64 << 10
)

// Config configures a Portal.
type Config struct {
	// Store is the keystore's records (products, developers, apps, keys).
	Store store.Store
	// Backend holds the portal's own records (users, sessions, invites).
	Backend *store.Backend
	// Analytics answers the usage pages; nil hides them.
	Analytics *analytics.Store
	// Counters is the quota counter engine the gateway's quota and
	// tokencount filters count in (the same process's engine: no extra hop);
	// it fills "quota left now". Nil hides it.
	Counters Counters
	// Signup is open, invite or approval.
	Signup string
	// GatewayURL is what the snippets shown with a new key call.
	GatewayURL string
	// SecureCookies marks cookies Secure even without TLS on this listener (TLS ends at a proxy in front).
	SecureCookies bool
	// SessionTTL, MaxFailures, Lockout and LoginRate tune sign-in.
	SessionTTL  time.Duration
	MaxFailures int
	Lockout     time.Duration
	LoginRate   int
	// Logger receives structured logs (never passwords, keys or tokens).
	Logger *slog.Logger
	// Now is the clock.
	Now func() time.Time
	// hash overrides the argon2id cost (tests).
	hash *hashParams
}

// Portal serves the portal's pages.
type Portal struct {
	cfg     Config
	kv      kv
	log     *slog.Logger
	pages   map[string]*template.Template
	limiter *limiter
	hash    hashParams
	dummy   string // a hash checked for unknown e-mails, so timing does not reveal accounts
	handler http.Handler
	apiDoc  *apiDoc // the gateway's OpenAPI document, for product references
}

// New checks cfg and builds the handler.
func New(cfg Config) (*Portal, error) {
	if cfg.Store == nil || cfg.Backend == nil {
		return nil, errors.New("portal: Store and Backend are required")
	}
	switch cfg.Signup {
	case "":
		cfg.Signup = SignupOpen
	case SignupOpen, SignupInvite, SignupApproval:
	default:
		return nil, fmt.Errorf("portal: sign-up mode %q: want open, invite or approval", cfg.Signup)
	}
	if cfg.GatewayURL == "" {
		cfg.GatewayURL = DefaultGatewayURL
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = DefaultMaxFailures
	}
	if cfg.Lockout <= 0 {
		cfg.Lockout = DefaultLockout
	}
	if cfg.LoginRate <= 0 {
		cfg.LoginRate = DefaultLoginRate
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	k, err := openKV(cfg.Backend)
	if err != nil {
		return nil, err
	}
	p := &Portal{cfg: cfg, kv: k, log: cfg.Logger, limiter: newLimiter(cfg.LoginRate, time.Minute), hash: defaultHash}
	if cfg.hash != nil {
		p.hash = *cfg.hash
	}
	if p.dummy, err = hashPassword(p.hash, "not-a-password-of-anyone"); err != nil {
		return nil, err
	}
	if p.apiDoc, err = parseAPIDoc(gatewayOpenAPI); err != nil {
		return nil, err
	}
	if p.pages, err = parseTemplates(); err != nil {
		return nil, err
	}
	p.handler = p.routes()
	return p, nil
}

// Handler serves the portal.
func (p *Portal) Handler() http.Handler { return p.handler }

func parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"join": strings.Join,
		"date": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return t.UTC().Format("2006-01-02 15:04 UTC")
		},
		"code": inlineCode,
		"datetime": func(t time.Time) string {
			if t.IsZero() {
				return "–"
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("portal templates: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("portal template %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// inlineCode escapes s and shows its `backquoted` spans as code, for the
// prose of the gateway's OpenAPI document.
func inlineCode(s string) template.HTML {
	parts := strings.Split(template.HTMLEscapeString(s), "`")
	var b strings.Builder
	for i, part := range parts {
		switch {
		case i%2 == 1 && i < len(parts)-1:
			b.WriteString("<code>" + part + "</code>")
		case i%2 == 1:
			b.WriteString("`" + part) // an unpaired backquote stays text
		default:
			b.WriteString(part)
		}
	}
	return template.HTML(b.String()) //nolint:gosec // every part is escaped above
}

// contentSecurityPolicy allows scripts, styles and fetches from the portal
// itself only: no inline script or style, no framing, forms post only here.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

func (p *Portal) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/catalogue", http.StatusSeeOther) })
	mux.HandleFunc("GET /signup", p.signupPage)
	mux.HandleFunc("POST /signup", p.signup)
	mux.HandleFunc("GET /signin", p.signinPage)
	mux.HandleFunc("POST /signin", p.signin)
	mux.HandleFunc("POST /signout", p.user(p.signout))
	mux.HandleFunc("GET /catalogue", p.user(p.catalogue))
	mux.HandleFunc("GET /catalogue/{product}", p.user(p.referencePage))
	mux.HandleFunc("GET /apps", p.user(p.appsPage))
	mux.HandleFunc("POST /apps", p.user(p.createApp))
	mux.HandleFunc("GET /apps/{app}", p.user(p.appPage))
	mux.HandleFunc("POST /apps/{app}/keys", p.user(p.createKey))
	mux.HandleFunc("POST /apps/{app}/keys/{key}/revoke", p.user(p.revokeKey))
	mux.HandleFunc("POST /apps/{app}/keys/{key}/rotate", p.user(p.rotateKey))
	mux.HandleFunc("GET /usage", p.user(p.withScope(p.usagePage)))
	mux.HandleFunc("GET /usage.json", p.user(p.withScope(p.usageData)))
	mux.HandleFunc("GET /usage/records", p.user(p.withScope(p.usageRecords)))
	mux.HandleFunc("GET /admin", p.admin(p.adminPage))
	mux.HandleFunc("POST /admin/users/{email}/{action}", p.admin(p.adminUser))
	mux.HandleFunc("POST /admin/apps/{app}/{action}", p.admin(p.adminApp))
	mux.HandleFunc("POST /admin/invites", p.admin(p.adminInvite))
	mux.HandleFunc("GET /admin/products/{product}", p.admin(p.productPage))
	mux.HandleFunc("POST /admin/products/{product}", p.admin(p.editProduct))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { p.notFound(w, r, nil) })
	return securityHeaders(http.MaxBytesHandler(mux, maxFormBytes))
}

// clientAddr is the address sign-in attempts are counted by.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// pruneInterval is how often Serve deletes expired sessions and invitations.
const pruneInterval = 10 * time.Minute

// Prune deletes expired sessions and invitations (Redis also expires them by TTL).
func (p *Portal) Prune(ctx context.Context) error {
	now := p.cfg.Now()
	for _, bucket := range []string{bucketSessions, bucketInvites} {
		all, err := p.kv.list(ctx, bucket)
		if err != nil {
			return fmt.Errorf("prune %s: %w", bucket, err)
		}
		for k, raw := range all {
			var rec struct {
				Expires time.Time `json:"expires"`
			}
			if json.Unmarshal(raw, &rec) == nil && now.Before(rec.Expires) {
				continue
			}
			if err := p.kv.del(ctx, bucket, k); err != nil {
				return fmt.Errorf("prune %s: %w", bucket, err)
			}
		}
	}
	return nil
}

// Serve answers on l until ctx ends, pruning expired sessions meanwhile.
func (p *Portal) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: p.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	tick := time.NewTicker(pruneInterval)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("portal: %w", err)
		case <-tick.C:
			if err := p.Prune(ctx); err != nil {
				p.log.Warn("portal: prune failed", "error", err)
			}
		case <-ctx.Done():
			break wait
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("portal shutdown: %w", err)
	}
	return nil
}
