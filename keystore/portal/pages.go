package portal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tollgate/tollgate/keystore"
	"github.com/tollgate/tollgate/keystore/analytics"
	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/keystore/store"
)

// signinFailed is the one message for every failed sign-in, so it reveals
// nothing about which accounts exist, are locked or await approval.
const signinFailed = "Sign-in failed. Check your e-mail and password; if your account is new it may still await approval, and after too many attempts you must wait a few minutes."

// signupDone is the one answer to a sign-up, whether or not the address had an account.
const signupDone = "Thank you. If this address was not registered yet, its account is created: sign in with it"

func (p *Portal) signupPage(w http.ResponseWriter, r *http.Request) {
	tok, err := p.preCSRF(w, r)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	p.render(w, r, http.StatusOK, "signup", nil, map[string]any{"CSRF": tok, "Mode": p.cfg.Signup, "Invite": r.URL.Query().Get("invite")})
}

func (p *Portal) signup(w http.ResponseWriter, r *http.Request) {
	if !p.checkPreCSRF(r) {
		p.render(w, r, http.StatusForbidden, "error", nil, map[string]any{"Message": "The form has expired. Reload the page and try again."})
		return
	}
	ctx := r.Context()
	tok, _ := p.preCSRF(w, r)
	again := func(msg string) {
		p.render(w, r, http.StatusBadRequest, "signup", nil, map[string]any{"CSRF": tok, "Mode": p.cfg.Signup, "Error": msg,
			"Email": r.PostForm.Get("email"), "Name": r.PostForm.Get("name"), "Invite": r.PostForm.Get("invite")})
	}
	dev := model.Developer{Email: r.PostForm.Get("email"), Name: strings.TrimSpace(r.PostForm.Get("name"))}
	dev.Normalize()
	if errs := dev.Validate(); len(errs) > 0 {
		again("Enter a valid e-mail address and a name without control characters.")
		return
	}
	password := r.PostForm.Get("password")
	if len(password) < MinPasswordLen || len(password) > MaxPasswordLen {
		again(fmt.Sprintf("The password must be %d to %d characters long.", MinPasswordLen, MaxPasswordLen))
		return
	}
	status := StatusActive
	switch p.cfg.Signup {
	case SignupApproval:
		status = StatusPending
	case SignupInvite:
		var inv Invite
		code := r.PostForm.Get("invite")
		ok, err := p.loadJSON(ctx, bucketInvites, tokenID(code), &inv)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		if code == "" || !ok || inv.Email != dev.Email || !p.cfg.Now().Before(inv.Expires) {
			again("Sign-up needs an invitation: the code is missing, expired or for another address.")
			return
		}
		if err := p.kv.del(ctx, bucketInvites, tokenID(code)); err != nil {
			p.fail(w, r, err)
			return
		}
	}
	hash, err := hashPassword(p.hash, password)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	msg := signupDone + "."
	if status == StatusPending {
		msg = signupDone + " once an administrator has approved it."
	}
	var existing User
	if ok, err := p.loadJSON(ctx, bucketUsers, dev.Email, &existing); err != nil {
		p.fail(w, r, err)
		return
	} else if ok {
		p.render(w, r, http.StatusOK, "message", nil, map[string]any{"Message": msg})
		return
	}
	if err := p.CreateUser(r, dev, hash, RoleDeveloper, status); err != nil {
		p.fail(w, r, err)
		return
	}
	p.log.Info("portal: developer signed up", "email", dev.Email, "status", status)
	p.render(w, r, http.StatusOK, "message", nil, map[string]any{"Message": msg})
}

// CreateUser stores an account and its keystore developer (kept if it exists).
func (p *Portal) CreateUser(r *http.Request, dev model.Developer, hash, role, status string) error {
	ctx := r.Context()
	if _, err := p.cfg.Store.CreateDeveloper(ctx, dev); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("create developer: %w", err)
	}
	u := User{Email: dev.Email, Name: dev.Name, PasswordHash: hash, Role: role, Status: status, Created: p.cfg.Now().UTC()}
	return p.saveJSON(ctx, bucketUsers, u.Email, u, 0)
}

func (p *Portal) signinPage(w http.ResponseWriter, r *http.Request) {
	tok, err := p.preCSRF(w, r)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	p.render(w, r, http.StatusOK, "signin", nil, map[string]any{"CSRF": tok, "Mode": p.cfg.Signup})
}

func (p *Portal) signin(w http.ResponseWriter, r *http.Request) {
	if !p.checkPreCSRF(r) {
		p.render(w, r, http.StatusForbidden, "error", nil, map[string]any{"Message": "The form has expired. Reload the page and try again."})
		return
	}
	ctx := r.Context()
	tok, _ := p.preCSRF(w, r)
	email := strings.ToLower(strings.TrimSpace(r.PostForm.Get("email")))
	failed := func(status int) {
		p.render(w, r, status, "signin", nil, map[string]any{"CSRF": tok, "Mode": p.cfg.Signup, "Error": signinFailed, "Email": email})
	}
	now := p.cfg.Now()
	if !p.limiter.allow(clientAddr(r), now) {
		p.log.Warn("portal: sign-in rate limited", "remote", clientAddr(r))
		failed(http.StatusTooManyRequests)
		return
	}
	password := r.PostForm.Get("password")
	if len(password) > MaxPasswordLen {
		password = password[:MaxPasswordLen]
	}
	var u User
	found, err := p.loadJSON(ctx, bucketUsers, email, &u)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if !found {
		_, _ = checkPassword(p.dummy, password) // same cost as a real check
		failed(http.StatusUnauthorized)
		return
	}
	ok, err := checkPassword(u.PasswordHash, password)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if now.Before(u.LockedUntil) {
		failed(http.StatusUnauthorized)
		return
	}
	if !ok {
		u.FailedLogins++
		if u.FailedLogins >= p.cfg.MaxFailures {
			u.FailedLogins = 0
			u.LockedUntil = now.Add(p.cfg.Lockout)
			p.log.Warn("portal: account locked after failed sign-ins", "email", u.Email)
		}
		if err := p.saveJSON(ctx, bucketUsers, u.Email, u, 0); err != nil {
			p.fail(w, r, err)
			return
		}
		failed(http.StatusUnauthorized)
		return
	}
	if u.Status != StatusActive {
		failed(http.StatusUnauthorized)
		return
	}
	if u.FailedLogins != 0 || !u.LockedUntil.IsZero() {
		u.FailedLogins, u.LockedUntil = 0, time.Time{}
		if err := p.saveJSON(ctx, bucketUsers, u.Email, u, 0); err != nil {
			p.fail(w, r, err)
			return
		}
	}
	if err := p.newSession(w, r, u.Email); err != nil {
		p.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/apps", http.StatusSeeOther)
}

func (p *Portal) signout(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	if err := p.kv.del(r.Context(), bucketSessions, rc.sid); err != nil {
		p.fail(w, r, err)
		return
	}
	p.setCookie(w, r, "tg_session", "", -1)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// productView is a product as the catalogue shows it.
type productView struct {
	model.Product
	Manual bool
	Ops    []model.Operation
}

func (p *Portal) products(r *http.Request) ([]productView, error) {
	ps, err := p.cfg.Store.ListProducts(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]productView, 0, len(ps))
	for _, pr := range ps {
		out = append(out, p.productView(r, pr))
	}
	return out, nil
}

// productView adds to a product the operations of its operation sets.
func (p *Portal) productView(r *http.Request, pr model.Product) productView {
	v := productView{Product: pr, Manual: pr.Attributes[ApprovalAttr] == "manual", Ops: slices.Clone(pr.Operations)}
	for _, name := range pr.OperationSets {
		set, err := p.cfg.Store.GetOperationSet(r.Context(), name)
		if err == nil {
			v.Ops = append(v.Ops, set.Operations...)
		}
	}
	return v
}

func (p *Portal) catalogue(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	ps, err := p.products(r)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	p.render(w, r, http.StatusOK, "catalogue", &rc, map[string]any{"Products": ps, "Gateway": p.cfg.GatewayURL})
}

// ownApp loads an app the user may see: their own, or any for an admin.
// Any other app is ErrNotFound, exactly like a missing one.
func (p *Portal) ownApp(r *http.Request, rc reqCtx, name string) (model.App, error) {
	a, err := p.cfg.Store.GetApp(r.Context(), name)
	if err != nil {
		return model.App{}, err
	}
	if rc.user.Role != RoleAdmin && a.Developer != rc.user.Email {
		return model.App{}, store.ErrNotFound
	}
	return a, nil
}

func (p *Portal) approvals(r *http.Request) (map[string]Approval, error) {
	raw, err := p.kv.list(r.Context(), bucketApprovals)
	if err != nil {
		return nil, err
	}
	out := map[string]Approval{}
	for k := range raw {
		var a Approval
		if ok, err := p.loadJSON(r.Context(), bucketApprovals, k, &a); err == nil && ok {
			out[k] = a
		}
	}
	return out, nil
}

type appView struct {
	model.App
	Description string
	Pending     []string
	Revoked     bool
}

func (p *Portal) appsPage(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	p.renderApps(w, r, rc, http.StatusOK, "", nil)
}

func (p *Portal) renderApps(w http.ResponseWriter, r *http.Request, rc reqCtx, status int, msg string, form map[string]any) {
	views, ps, err := p.appViews(r, rc.user.Email)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	p.render(w, r, status, "apps", &rc, map[string]any{"Apps": views, "Products": ps, "Error": msg}, form)
}

// appViews lists a developer's apps ("": every app) with their pending
// approvals, and the catalogue's products.
func (p *Portal) appViews(r *http.Request, developer string) ([]appView, []productView, error) {
	apps, err := p.cfg.Store.ListApps(r.Context(), developer)
	if err != nil {
		return nil, nil, err
	}
	pend, err := p.approvals(r)
	if err != nil {
		return nil, nil, err
	}
	views := make([]appView, 0, len(apps))
	for _, a := range apps {
		views = append(views, appView{App: a, Description: a.Attributes["description"], Pending: pend[a.Name].Pending, Revoked: a.Attributes["status"] == "revoked"})
	}
	ps, err := p.products(r)
	if err != nil {
		return nil, nil, err
	}
	return views, ps, nil
}

func (p *Portal) createApp(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	ctx := r.Context()
	name := strings.TrimSpace(r.PostForm.Get("name"))
	desc := strings.TrimSpace(r.PostForm.Get("description"))
	chosen := r.PostForm["product"]
	form := map[string]any{"Name": name, "Description": desc}
	if len(chosen) == 0 || len(chosen) > 32 {
		p.renderApps(w, r, rc, http.StatusBadRequest, "Choose at least one product.", form)
		return
	}
	var auto, manual []string
	for _, c := range chosen {
		pr, err := p.cfg.Store.GetProduct(ctx, c)
		if err != nil {
			p.renderApps(w, r, rc, http.StatusBadRequest, "Choose products from the catalogue.", form)
			return
		}
		if pr.Attributes[ApprovalAttr] == "manual" && rc.user.Role != RoleAdmin {
			manual = append(manual, pr.Name)
		} else {
			auto = append(auto, pr.Name)
		}
	}
	app := model.App{Name: name, Developer: rc.user.Email, Products: auto, Attributes: map[string]string{}}
	if desc != "" {
		app.Attributes["description"] = desc
	}
	app.Normalize()
	if errs := app.Validate(); len(errs) > 0 {
		p.renderApps(w, r, rc, http.StatusBadRequest, "Invalid app: "+errs.Error(), form)
		return
	}
	if _, err := p.cfg.Store.CreateApp(ctx, app); err != nil {
		if errors.Is(err, store.ErrExists) {
			p.renderApps(w, r, rc, http.StatusConflict, "That app name is taken; choose another.", form)
			return
		}
		p.fail(w, r, err)
		return
	}
	if len(manual) > 0 {
		if err := p.saveJSON(ctx, bucketApprovals, app.Name, Approval{App: app.Name, Developer: app.Developer, Pending: manual}, 0); err != nil {
			p.fail(w, r, err)
			return
		}
	}
	p.log.Info("portal: app created", "app", app.Name, "developer", app.Developer, "pending", strings.Join(manual, ","))
	http.Redirect(w, r, "/apps/"+app.Name, http.StatusSeeOther)
}

func (p *Portal) appPage(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	p.renderApp(w, r, rc, http.StatusOK, nil)
}

func (p *Portal) renderApp(w http.ResponseWriter, r *http.Request, rc reqCtx, status int, extra map[string]any) {
	a, err := p.ownApp(r, rc, r.PathValue("app"))
	if p.failed(w, r, rc, err) {
		return
	}
	keys, err := p.cfg.Store.ListKeys(r.Context(), a.Name)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].CreatedAt.After(keys[j].CreatedAt) })
	var pending []string
	var ap Approval
	if ok, err := p.loadJSON(r.Context(), bucketApprovals, a.Name, &ap); err == nil && ok {
		pending = ap.Pending
	}
	data := map[string]any{"App": appView{App: a, Description: a.Attributes["description"], Pending: pending, Revoked: a.Attributes["status"] == "revoked"},
		"Keys": keys, "Gateway": p.cfg.GatewayURL, "Model": p.snippetModel(r, a)}
	p.addQuota(r, data, []model.App{a})
	p.render(w, r, status, "app", &rc, data, extra)
}

// addQuota puts the quota left now of apps into a page's data ("Quota",
// "QuotaShown", or "QuotaError" when the counters cannot be read: the page
// still renders).
func (p *Portal) addQuota(r *http.Request, data map[string]any, apps []model.App) {
	if p.cfg.Counters == nil {
		return
	}
	data["QuotaShown"] = true
	rows, err := p.quotaLeft(r.Context(), apps)
	if err != nil {
		p.log.Warn("portal: quota counters unavailable", "error", err)
		data["QuotaError"] = true
		return
	}
	data["Quota"] = rows
}

// failed answers a store error: 404 for a missing record (or one the user
// may not see, which ownApp reports the same way), 500 for the rest. It
// reports whether it answered.
func (p *Portal) failed(w http.ResponseWriter, r *http.Request, rc reqCtx, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrNotFound):
		p.notFound(w, r, &rc)
	default:
		p.fail(w, r, err)
	}
	return true
}

// snippetModel is the model the key snippets name: the first one the app's
// products allow by exact name, or a placeholder.
func (p *Portal) snippetModel(r *http.Request, a model.App) string {
	for _, name := range a.Products {
		pr, err := p.cfg.Store.GetProduct(r.Context(), name)
		if err != nil {
			continue
		}
		for _, m := range pr.AllowedModels {
			if !strings.ContainsAny(m, "*?") {
				return m
			}
		}
	}
	return "MODEL"
}

// issueKey creates a key for app and returns its secret (shown once).
func (p *Portal) issueKey(r *http.Request, app string) (string, model.Key, error) {
	secret, err := model.GenerateKey(nil)
	if err != nil {
		return "", model.Key{}, err
	}
	id, err := model.GenerateKeyID(nil)
	if err != nil {
		return "", model.Key{}, err
	}
	k := model.Key{ID: id, App: app, Status: model.KeyApproved, Hash: model.HashKey(secret), Prefix: model.DisplayPrefix(secret)}
	stored, err := p.cfg.Store.CreateKey(r.Context(), k)
	if err != nil {
		return "", model.Key{}, err
	}
	return secret, stored, nil
}

func (p *Portal) createKey(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	a, err := p.ownApp(r, rc, r.PathValue("app"))
	if p.failed(w, r, rc, err) {
		return
	}
	p.newKey(w, r, rc, a, nil)
}

// newKey issues a key for a and shows it once; with old set (a rotation)
// it then revokes old: gateways refuse it once their cached verify answer
// expires (the keystore's --cache-ttl).
func (p *Portal) newKey(w http.ResponseWriter, r *http.Request, rc reqCtx, a model.App, old *model.Key) {
	if a.Attributes["status"] == "revoked" {
		p.renderApp(w, r, rc, http.StatusForbidden, map[string]any{"Error": "This app was revoked by an administrator."})
		return
	}
	secret, k, err := p.issueKey(r, a.Name)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	data := map[string]any{"Secret": secret, "NewKey": k}
	if old != nil {
		if _, err := p.cfg.Store.SetKeyStatus(r.Context(), old.ID, model.KeyRevoked); err != nil {
			p.fail(w, r, err)
			return
		}
		data["Rotated"] = old.ID
	}
	p.log.Info("portal: key created", "app", a.Name, "key_id", k.ID, "replaces", data["Rotated"])
	p.renderApp(w, r, rc, http.StatusCreated, data)
}

// appKey loads a key of an app the user may see; others are ErrNotFound.
func (p *Portal) appKey(r *http.Request, rc reqCtx) (model.App, model.Key, error) {
	a, err := p.ownApp(r, rc, r.PathValue("app"))
	if err != nil {
		return a, model.Key{}, err
	}
	k, err := p.cfg.Store.GetKey(r.Context(), r.PathValue("key"))
	if err != nil {
		return a, k, err
	}
	if k.App != a.Name {
		return a, model.Key{}, store.ErrNotFound
	}
	return a, k, nil
}

func (p *Portal) revokeKey(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	a, k, err := p.appKey(r, rc)
	if p.failed(w, r, rc, err) {
		return
	}
	if _, err := p.cfg.Store.SetKeyStatus(r.Context(), k.ID, model.KeyRevoked); err != nil {
		p.fail(w, r, err)
		return
	}
	p.log.Info("portal: key revoked", "app", a.Name, "key_id", k.ID)
	http.Redirect(w, r, "/apps/"+a.Name, http.StatusSeeOther)
}

// rotateKey replaces a key by a new one (see newKey).
func (p *Portal) rotateKey(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	a, k, err := p.appKey(r, rc)
	if p.failed(w, r, rc, err) {
		return
	}
	p.newKey(w, r, rc, a, &k)
}

// scope is the apps whose usage the user may see (nil: all, for admins).
func (p *Portal) scope(r *http.Request, rc reqCtx) ([]string, error) {
	if rc.user.Role == RoleAdmin {
		return nil, nil
	}
	apps, err := p.cfg.Store.ListApps(r.Context(), rc.user.Email)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(apps)) // non-nil even when empty: no app, no usage
	for _, a := range apps {
		names = append(names, a.Name)
	}
	return names, nil
}

// scopeOwner is the developer whose apps the user may list ("": every app, for admins).
func scopeOwner(rc reqCtx) string {
	if rc.user.Role == RoleAdmin {
		return ""
	}
	return rc.user.Email
}

// withScope runs h with the apps whose usage the user may see (nil: all,
// for admins); without analytics the usage pages do not exist.
func (p *Portal) withScope(h func(http.ResponseWriter, *http.Request, reqCtx, []string)) handler {
	return func(w http.ResponseWriter, r *http.Request, rc reqCtx) {
		if p.cfg.Analytics == nil {
			p.notFound(w, r, &rc)
			return
		}
		sc, err := p.scope(r, rc)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		h(w, r, rc, sc)
	}
}

func (p *Portal) usagePage(w http.ResponseWriter, r *http.Request, rc reqCtx, scope []string) {
	now := p.cfg.Now()
	q := analytics.Query{From: now.Add(-30 * 24 * time.Hour), To: now.Add(time.Second), Step: analytics.Day,
		GroupBy: []string{analytics.DimApp, analytics.DimModel}, Scoped: scope != nil, ScopeApps: scope}
	res, err := p.cfg.Analytics.Query(r.Context(), q)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	data := map[string]any{"Result": res, "RawRecords": p.cfg.Analytics.RawEnabled()}
	if p.cfg.Counters != nil {
		apps, err := p.cfg.Store.ListApps(r.Context(), scopeOwner(rc))
		if err != nil {
			p.fail(w, r, err)
			return
		}
		p.addQuota(r, data, apps)
	}
	p.render(w, r, http.StatusOK, "usage", &rc, data)
}

// usageData is the analytics API for the signed-in user: the admin API's
// query parameters, restricted to the user's own apps (admins see all).
func (p *Portal) usageData(w http.ResponseWriter, r *http.Request, _ reqCtx, scope []string) {
	if err := keystore.ServeAnalytics(w, r, p.cfg.Analytics, p.cfg.Now(), scope); err != nil {
		p.log.Error("portal: usage query failed", "error", err)
	}
}

// usageRecords exports the raw usage records of the user's apps (admins:
// all) when the keystore keeps them; the admin API's parameters.
func (p *Portal) usageRecords(w http.ResponseWriter, r *http.Request, _ reqCtx, scope []string) {
	if err := keystore.ServeRecords(w, r, p.cfg.Analytics, p.cfg.Now(), scope); err != nil {
		p.log.Error("portal: usage records export failed", "error", err)
	}
}

func (p *Portal) adminPage(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	p.renderAdmin(w, r, rc, http.StatusOK, nil)
}

func (p *Portal) renderAdmin(w http.ResponseWriter, r *http.Request, rc reqCtx, status int, extra map[string]any) {
	raw, err := p.kv.list(r.Context(), bucketUsers)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	users := make([]User, 0, len(raw))
	for email := range raw {
		var u User
		if ok, err := p.loadJSON(r.Context(), bucketUsers, email, &u); err == nil && ok {
			u.PasswordHash = ""
			users = append(users, u)
		}
	}
	sort.Slice(users, func(i, j int) bool { return users[i].Email < users[j].Email })
	views, ps, err := p.appViews(r, "")
	if err != nil {
		p.fail(w, r, err)
		return
	}
	p.render(w, r, status, "admin", &rc, map[string]any{"Users": users, "Apps": views, "Products": ps}, extra)
}

func (p *Portal) adminUser(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	email := strings.ToLower(r.PathValue("email"))
	var u User
	ok, err := p.loadJSON(r.Context(), bucketUsers, email, &u)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if !ok {
		p.notFound(w, r, &rc)
		return
	}
	switch r.PathValue("action") {
	case "approve":
		u.Status = StatusActive
	case "disable":
		if u.Email == rc.user.Email {
			p.renderAdmin(w, r, rc, http.StatusBadRequest, map[string]any{"Error": "You cannot disable your own account."})
			return
		}
		u.Status = StatusDisabled
	default:
		p.notFound(w, r, &rc)
		return
	}
	if err := p.saveJSON(r.Context(), bucketUsers, u.Email, u, 0); err != nil {
		p.fail(w, r, err)
		return
	}
	p.log.Info("portal: developer "+u.Status, "email", u.Email, "by", rc.user.Email)
	http.Redirect(w, r, "/admin", http.StatusSeeOther)
}

func (p *Portal) adminApp(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	ctx := r.Context()
	a, err := p.cfg.Store.GetApp(ctx, r.PathValue("app"))
	if p.failed(w, r, rc, err) {
		return
	}
	if a.Attributes == nil {
		a.Attributes = map[string]string{}
	}
	switch r.PathValue("action") {
	case "approve":
		var ap Approval
		if _, err := p.loadJSON(ctx, bucketApprovals, a.Name, &ap); err != nil {
			p.fail(w, r, err)
			return
		}
		for _, pr := range ap.Pending {
			if !slices.Contains(a.Products, pr) {
				a.Products = append(a.Products, pr)
			}
		}
		delete(a.Attributes, "status")
		if _, _, err := p.cfg.Store.PutApp(ctx, a); err != nil {
			p.fail(w, r, err)
			return
		}
		if err := p.kv.del(ctx, bucketApprovals, a.Name); err != nil {
			p.fail(w, r, err)
			return
		}
	case "revoke":
		a.Attributes["status"] = "revoked"
		if _, _, err := p.cfg.Store.PutApp(ctx, a); err != nil {
			p.fail(w, r, err)
			return
		}
		keys, err := p.cfg.Store.ListKeys(ctx, a.Name)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		for _, k := range keys {
			if k.Status != model.KeyRevoked {
				if _, err := p.cfg.Store.SetKeyStatus(ctx, k.ID, model.KeyRevoked); err != nil {
					p.fail(w, r, err)
					return
				}
			}
		}
	default:
		p.notFound(w, r, &rc)
		return
	}
	p.log.Info("portal: app "+r.PathValue("action"), "app", a.Name, "by", rc.user.Email)
	http.Redirect(w, r, "/admin", http.StatusSeeOther)
}

func (p *Portal) adminInvite(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	email := strings.ToLower(strings.TrimSpace(r.PostForm.Get("email")))
	if !model.ValidEmail(email) {
		p.renderAdmin(w, r, rc, http.StatusBadRequest, map[string]any{"Error": "Enter a valid e-mail address to invite."})
		return
	}
	code, err := randomToken(24)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if err := p.saveJSON(r.Context(), bucketInvites, tokenID(code), Invite{Email: email, Expires: p.cfg.Now().Add(DefaultInviteLifetime)}, DefaultInviteLifetime); err != nil {
		p.fail(w, r, err)
		return
	}
	p.renderAdmin(w, r, rc, http.StatusCreated, map[string]any{"InviteEmail": email, "InviteLink": "/signup?invite=" + code})
}

func (p *Portal) productPage(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	pr, err := p.cfg.Store.GetProduct(r.Context(), r.PathValue("product"))
	if p.failed(w, r, rc, err) {
		return
	}
	p.render(w, r, http.StatusOK, "product", &rc, map[string]any{"Product": productView{Product: pr, Manual: pr.Attributes[ApprovalAttr] == "manual"}})
}

func (p *Portal) editProduct(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	ctx := r.Context()
	pr, err := p.cfg.Store.GetProduct(ctx, r.PathValue("product"))
	if p.failed(w, r, rc, err) {
		return
	}
	pr.DisplayName = strings.TrimSpace(r.PostForm.Get("display_name"))
	pr.Description = strings.TrimSpace(r.PostForm.Get("description"))
	if pr.Attributes == nil {
		pr.Attributes = map[string]string{}
	}
	if r.PostForm.Get("approval") == "manual" {
		pr.Attributes[ApprovalAttr] = "manual"
	} else {
		delete(pr.Attributes, ApprovalAttr)
	}
	pr.Normalize()
	if errs := pr.Validate(); len(errs) > 0 {
		p.render(w, r, http.StatusBadRequest, "product", &rc, map[string]any{"Product": productView{Product: pr}, "Error": "Invalid product: " + errs.Error()})
		return
	}
	if _, _, err := p.cfg.Store.PutProduct(ctx, pr); err != nil {
		p.fail(w, r, err)
		return
	}
	p.log.Info("portal: product edited", "product", pr.Name, "by", rc.user.Email)
	http.Redirect(w, r, "/catalogue", http.StatusSeeOther)
}

// Seed creates an active account with a password unless the e-mail already
// has one (`tollgate serve --portal-admin` and the demo's developer).
func (p *Portal) Seed(ctx context.Context, email, name, password, role string) error {
	dev := model.Developer{Email: email, Name: name}
	dev.Normalize()
	if errs := dev.Validate(); len(errs) > 0 {
		return fmt.Errorf("portal seed: %s", errs.Error())
	}
	if len(password) < MinPasswordLen || len(password) > MaxPasswordLen {
		return fmt.Errorf("portal seed %s: the password must be %d to %d characters", dev.Email, MinPasswordLen, MaxPasswordLen)
	}
	if _, ok, err := p.kv.get(ctx, bucketUsers, dev.Email); err != nil || ok {
		return err
	}
	hash, err := hashPassword(p.hash, password)
	if err != nil {
		return err
	}
	if _, err := p.cfg.Store.CreateDeveloper(ctx, dev); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("portal seed: create developer: %w", err)
	}
	u := User{Email: dev.Email, Name: dev.Name, PasswordHash: hash, Role: role, Status: StatusActive, Created: p.cfg.Now().UTC()}
	return p.saveJSON(ctx, bucketUsers, u.Email, u, 0)
}
