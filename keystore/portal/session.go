package portal

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// reqCtx is the signed-in user of a request.
type reqCtx struct {
	user User
	sess Session
	sid  string // the session's storage id (hash of the cookie)
}

func (p *Portal) secure(r *http.Request) bool { return r.TLS != nil || p.cfg.SecureCookies }

// cookieName uses the __Host- prefix when Secure, so the cookie cannot be
// set by a sibling domain or over plain HTTP.
func (p *Portal) cookieName(r *http.Request, base string) string {
	if p.secure(r) {
		return "__Host-" + base
	}
	return base
}

func (p *Portal) setCookie(w http.ResponseWriter, r *http.Request, base, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: p.cookieName(r, base), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: p.secure(r), SameSite: http.SameSiteStrictMode})
}

func (p *Portal) loadJSON(ctx context.Context, bucket, key string, v any) (bool, error) {
	raw, ok, err := p.kv.get(ctx, bucket, key)
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("decode %s record: %w", bucket, err)
	}
	return true, nil
}

func (p *Portal) saveJSON(ctx context.Context, bucket, key string, v any, ttl time.Duration) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s record: %w", bucket, err)
	}
	return p.kv.put(ctx, bucket, key, raw, ttl)
}

// session returns the request's live session and its user, or ok false.
func (p *Portal) session(r *http.Request) (reqCtx, bool, error) {
	c, err := r.Cookie(p.cookieName(r, "tg_session"))
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return reqCtx{}, false, nil
	}
	rc := reqCtx{sid: tokenID(c.Value)}
	ok, err := p.loadJSON(r.Context(), bucketSessions, rc.sid, &rc.sess)
	if err != nil || !ok {
		return reqCtx{}, false, err
	}
	if !p.cfg.Now().Before(rc.sess.Expires) {
		return reqCtx{}, false, p.kv.del(r.Context(), bucketSessions, rc.sid)
	}
	ok, err = p.loadJSON(r.Context(), bucketUsers, rc.sess.Email, &rc.user)
	if err != nil || !ok || rc.user.Status != StatusActive {
		return reqCtx{}, false, err
	}
	return rc, true, nil
}

// newSession starts a session for email with a fresh id and CSRF token,
// deleting the one the browser had (no session fixation).
func (p *Portal) newSession(w http.ResponseWriter, r *http.Request, email string) error {
	if c, err := r.Cookie(p.cookieName(r, "tg_session")); err == nil && c.Value != "" {
		if err := p.kv.del(r.Context(), bucketSessions, tokenID(c.Value)); err != nil {
			return err
		}
	}
	tok, err := randomToken(32)
	if err != nil {
		return err
	}
	csrf, err := randomToken(32)
	if err != nil {
		return err
	}
	s := Session{Email: email, CSRF: csrf, Expires: p.cfg.Now().Add(p.cfg.SessionTTL)}
	if err := p.saveJSON(r.Context(), bucketSessions, tokenID(tok), s, p.cfg.SessionTTL); err != nil {
		return err
	}
	p.setCookie(w, r, "tg_session", tok, int(p.cfg.SessionTTL/time.Second))
	return nil
}

// sameOrigin refuses requests a browser marks as cross-site (defence in
// depth next to the CSRF tokens and SameSite=Strict).
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return origin == scheme+r.Host || origin == "https://"+r.Host
}

func tokensEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// checkForm parses a POST form and checks its CSRF token against want.
func checkForm(r *http.Request, want string) bool {
	if err := r.ParseForm(); err != nil {
		return false
	}
	return sameOrigin(r) && tokensEqual(r.PostForm.Get("csrf"), want)
}

// preCSRF is the double-submit token of the sign-in and sign-up forms,
// set as a cookie when the form is shown.
func (p *Portal) preCSRF(w http.ResponseWriter, r *http.Request) (string, error) {
	if c, err := r.Cookie(p.cookieName(r, "tg_csrf")); err == nil && len(c.Value) >= 32 && len(c.Value) <= 64 {
		return c.Value, nil
	}
	tok, err := randomToken(32)
	if err != nil {
		return "", err
	}
	p.setCookie(w, r, "tg_csrf", tok, 3600)
	return tok, nil
}

func (p *Portal) checkPreCSRF(r *http.Request) bool {
	c, err := r.Cookie(p.cookieName(r, "tg_csrf"))
	if err != nil {
		return false
	}
	return checkForm(r, c.Value)
}

type handler func(w http.ResponseWriter, r *http.Request, rc reqCtx)

// user requires a signed-in, active user, and a valid CSRF token on POSTs.
func (p *Portal) user(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rc, ok, err := p.session(r)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/signin", http.StatusSeeOther)
				return
			}
			p.render(w, r, http.StatusForbidden, "error", nil, map[string]any{"Message": "Your session has ended. Sign in again."})
			return
		}
		if r.Method == http.MethodPost && !checkForm(r, rc.sess.CSRF) {
			p.log.Warn("portal: form without a valid CSRF token", "path", r.URL.Path, "user", rc.user.Email)
			p.render(w, r, http.StatusForbidden, "error", &rc, map[string]any{"Message": "The form has expired. Reload the page and try again."})
			return
		}
		h(w, r, rc)
	}
}

// admin is user plus the admin role; others get the same 404 as an unknown page.
func (p *Portal) admin(h handler) http.HandlerFunc {
	return p.user(func(w http.ResponseWriter, r *http.Request, rc reqCtx) {
		if rc.user.Role != RoleAdmin {
			p.notFound(w, r, &rc)
			return
		}
		h(w, r, rc)
	})
}

// render executes a page into a buffer first, so a template error never
// sends half a page; extra maps are merged into data.
func (p *Portal) render(w http.ResponseWriter, r *http.Request, status int, page string, rc *reqCtx, data map[string]any, extra ...map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	for _, m := range extra {
		for k, v := range m {
			data[k] = v
		}
	}
	if rc != nil {
		data["User"] = rc.user
		data["CSRF"] = rc.sess.CSRF
		data["Admin"] = rc.user.Role == RoleAdmin
	}
	data["Analytics"] = p.cfg.Analytics != nil
	var buf bytes.Buffer
	t := p.pages[page]
	if t == nil {
		p.fail(w, r, fmt.Errorf("no template %q", page))
		return
	}
	if err := t.Execute(&buf, data); err != nil {
		p.fail(w, r, fmt.Errorf("render %s: %w", page, err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (p *Portal) notFound(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	p.render(w, r, http.StatusNotFound, "error", rc, map[string]any{"Message": "Page not found."})
}

func (p *Portal) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	p.log.Error("portal request failed", "path", r.URL.Path, "error", err)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte("The portal could not complete the request.\n"))
}
