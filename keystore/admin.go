package keystore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/keystore/store"
	"github.com/tollgate/tollgate/shared/apierror"
)

// ResultHeader tells `apply` what an idempotent PUT did: created, configured or unchanged.
const ResultHeader = "Tollgate-Result"

// AdminPrefix is where the admin API lives.
const AdminPrefix = "/admin/v1"

// storeError maps store errors to HTTP errors; unexpected ones are logged and hidden.
func (s *Service) storeError(ctx context.Context, err error) *apierror.Error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return apierror.New(http.StatusNotFound, CodeNotFound, err.Error())
	case errors.Is(err, store.ErrExists):
		return apierror.New(http.StatusConflict, CodeAlreadyExists, err.Error())
	case errors.Is(err, store.ErrInUse):
		return apierror.New(http.StatusConflict, CodeInUse, err.Error())
	case errors.Is(err, store.ErrConflict):
		return apierror.New(http.StatusConflict, CodeConflict, err.Error())
	case errors.Is(err, store.ErrBadReference):
		return apierror.New(http.StatusUnprocessableEntity, CodeUnknownReference, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return apierror.New(http.StatusServiceUnavailable, CodeUnavailable, "the request was cancelled or timed out")
	}
	s.log.LogAttrs(ctx, slogError, "storage error", attrErr(err))
	return apierror.New(http.StatusServiceUnavailable, CodeUnavailable, "the keystore could not access its storage")
}

func validationError(errs model.FieldErrors) *apierror.Error {
	e := apierror.New(http.StatusUnprocessableEntity, CodeValidationFailed, "invalid: "+errs.Error())
	if len(errs) > 0 {
		e.Param = errs[0].Field
	}
	return e
}

// requireToken guards the admin API with the bearer token.
func (s *Service) requireToken(next http.Handler) http.Handler {
	return s.bearer(next, bearerRealm{"tollgate-admin", "the admin API", "admin token", CodeMissingToken, CodeInvalidToken}, &s.tokenSum)
}

// bearerRealm words one token-guarded API's refusals.
type bearerRealm struct{ realm, what, token, missing, invalid string }

// bearer lets a request through only with "Authorization: Bearer <token>"
// matching want; otherwise it answers 401 with a JSON error and a
// WWW-Authenticate challenge. The presented token is never logged.
func (s *Service) bearer(next http.Handler, b bearerRealm, want *[sha256.Size]byte) http.Handler {
	realm, what, token := b.realm, b.what, b.token
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		scheme, presented, ok := strings.Cut(auth, " ")
		if auth == "" || !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(presented) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
			writeError(w, apierror.New(http.StatusUnauthorized, b.missing, what+" needs an \"Authorization: Bearer <"+token+">\" header"))
			return
		}
		if !tokenEqual(strings.TrimSpace(presented), want) {
			s.log.LogAttrs(r.Context(), slogWarn, "request with a wrong "+token, attrStr("remote", r.RemoteAddr), attrStr("path", r.URL.Path))
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`", error="invalid_token"`)
			writeError(w, apierror.New(http.StatusUnauthorized, b.invalid, "the "+token+" is not valid"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// resource wires the standard CRUD endpoints of one record kind.
type resource[T any] struct {
	kind    string // singular, for messages
	path    string // collection path under AdminPrefix
	idField string // name of the id field in bodies, for messages
	id      func(*T) *string
	prepare func(*T) model.FieldErrors
	create  func(context.Context, T) (T, error)
	put     func(context.Context, T) (T, store.Result, error)
	get     func(context.Context, string) (T, error)
	list    func(context.Context, *http.Request) ([]T, error)
	del     func(context.Context, string) error
	// normID canonicalises ids from URLs (e.g. lower-cased e-mail).
	normID func(string) string
}

func (rs resource[T]) routes(s *Service, mux *http.ServeMux) {
	norm := rs.normID
	if norm == nil {
		norm = func(id string) string { return id }
	}
	mux.Handle(AdminPrefix+rs.path, methods{
		http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
			items, err := rs.list(r.Context(), r)
			if err != nil {
				writeError(w, s.storeError(r.Context(), err))
				return
			}
			writeJSON(w, http.StatusOK, model.List[T]{Items: items})
		},
		http.MethodPost: func(w http.ResponseWriter, r *http.Request) {
			var v T
			if e := decodeJSON(w, r, s.cfg.MaxBodyBytes, &v); e != nil {
				writeError(w, e)
				return
			}
			if errs := rs.prepare(&v); len(errs) > 0 {
				writeError(w, validationError(errs))
				return
			}
			out, err := rs.create(r.Context(), v)
			if err != nil {
				writeError(w, s.storeError(r.Context(), err))
				return
			}
			s.log.LogAttrs(r.Context(), slogInfo, rs.kind+" created", attrStr(rs.idField, *rs.id(&out)))
			writeJSON(w, http.StatusCreated, out)
		},
	})
	item := AdminPrefix + rs.path + "/{id}"
	mux.Handle(item, methods{
		http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
			out, err := rs.get(r.Context(), norm(r.PathValue("id")))
			if err != nil {
				writeError(w, s.storeError(r.Context(), err))
				return
			}
			writeJSON(w, http.StatusOK, out)
		},
		http.MethodPut: func(w http.ResponseWriter, r *http.Request) {
			var v T
			if e := decodeJSON(w, r, s.cfg.MaxBodyBytes, &v); e != nil {
				writeError(w, e)
				return
			}
			urlID := norm(r.PathValue("id"))
			if id := rs.id(&v); *id == "" {
				*id = urlID
			} else if norm(*id) != urlID {
				e := apierror.New(http.StatusBadRequest, CodeInvalidRequest,
					fmt.Sprintf("%s %q in the body does not match %q in the URL", rs.idField, *id, urlID))
				e.Param = rs.idField
				writeError(w, e)
				return
			}
			if errs := rs.prepare(&v); len(errs) > 0 {
				writeError(w, validationError(errs))
				return
			}
			out, res, err := rs.put(r.Context(), v)
			if err != nil {
				writeError(w, s.storeError(r.Context(), err))
				return
			}
			if res != store.Unchanged {
				s.log.LogAttrs(r.Context(), slogInfo, rs.kind+" "+string(res), attrStr(rs.idField, *rs.id(&out)))
			}
			w.Header().Set(ResultHeader, string(res))
			status := http.StatusOK
			if res == store.Created {
				status = http.StatusCreated
			}
			writeJSON(w, status, out)
		},
		http.MethodDelete: func(w http.ResponseWriter, r *http.Request) {
			id := norm(r.PathValue("id"))
			if err := rs.del(r.Context(), id); err != nil {
				writeError(w, s.storeError(r.Context(), err))
				return
			}
			s.log.LogAttrs(r.Context(), slogInfo, rs.kind+" deleted", attrStr(rs.idField, id))
			w.WriteHeader(http.StatusNoContent)
		},
	})
}

func listAll[T any](f func(context.Context) ([]T, error)) func(context.Context, *http.Request) ([]T, error) {
	return func(ctx context.Context, _ *http.Request) ([]T, error) { return f(ctx) }
}

func (s *Service) adminHandler() http.Handler {
	st := s.cfg.Store
	api := http.NewServeMux()
	resource[model.Product]{
		kind: "product", path: "/products", idField: "name",
		id:      func(p *model.Product) *string { return &p.Name },
		prepare: func(p *model.Product) model.FieldErrors { p.Normalize(); return p.Validate() },
		create:  st.CreateProduct, put: st.PutProduct, get: st.GetProduct,
		list: listAll(st.ListProducts), del: st.DeleteProduct,
	}.routes(s, api)
	resource[model.OperationSet]{
		kind: "operation set", path: "/operationsets", idField: "name",
		id:      func(o *model.OperationSet) *string { return &o.Name },
		prepare: func(o *model.OperationSet) model.FieldErrors { o.Normalize(); return o.Validate() },
		create:  st.CreateOperationSet, put: st.PutOperationSet, get: st.GetOperationSet,
		list: listAll(st.ListOperationSets), del: st.DeleteOperationSet,
	}.routes(s, api)
	resource[model.Developer]{
		kind: "developer", path: "/developers", idField: "email",
		id:      func(d *model.Developer) *string { return &d.Email },
		prepare: func(d *model.Developer) model.FieldErrors { d.Normalize(); return d.Validate() },
		create:  st.CreateDeveloper, put: st.PutDeveloper, get: st.GetDeveloper,
		list: listAll(st.ListDevelopers), del: st.DeleteDeveloper,
		normID: func(id string) string { return strings.ToLower(strings.TrimSpace(id)) },
	}.routes(s, api)
	resource[model.App]{
		kind: "app", path: "/apps", idField: "name",
		id:      func(a *model.App) *string { return &a.Name },
		prepare: func(a *model.App) model.FieldErrors { a.Normalize(); return a.Validate() },
		create:  st.CreateApp, put: st.PutApp, get: st.GetApp,
		list: func(ctx context.Context, r *http.Request) ([]model.App, error) {
			return st.ListApps(ctx, r.URL.Query().Get("developer"))
		},
		del: st.DeleteApp,
	}.routes(s, api)

	s.poolRoutes(api)

	api.Handle(AdminPrefix+"/apps/{id}/keys", methods{
		http.MethodGet:  s.handleListAppKeys,
		http.MethodPost: s.handleCreateKey,
	})
	api.Handle(AdminPrefix+"/keys", methods{
		http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
			keys, err := st.ListKeys(r.Context(), r.URL.Query().Get("app"))
			if err != nil {
				writeError(w, s.storeError(r.Context(), err))
				return
			}
			writeJSON(w, http.StatusOK, model.List[model.Key]{Items: keys})
		},
	})
	api.Handle(AdminPrefix+"/keys/{id}", methods{
		http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
			k, err := st.GetKey(r.Context(), r.PathValue("id"))
			if err != nil {
				writeError(w, s.storeError(r.Context(), err))
				return
			}
			writeJSON(w, http.StatusOK, k)
		},
		http.MethodDelete: func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("id")
			if err := st.DeleteKey(r.Context(), id); err != nil {
				writeError(w, s.storeError(r.Context(), err))
				return
			}
			s.log.LogAttrs(r.Context(), slogInfo, "key deleted", attrStr("key_id", id))
			w.WriteHeader(http.StatusNoContent)
		},
	})
	api.Handle(AdminPrefix+"/keys/{id}/revoke", methods{http.MethodPost: s.keyStatus(model.KeyRevoked)})
	api.Handle(AdminPrefix+"/keys/{id}/approve", methods{http.MethodPost: s.keyStatus(model.KeyApproved)})
	api.Handle(AnalyticsPath, methods{http.MethodGet: s.handleAnalytics})
	api.Handle(RecordsPath, methods{http.MethodGet: s.handleRecords})
	api.HandleFunc("/", notFound)

	root := http.NewServeMux()
	root.Handle("/admin/", s.requireToken(api))
	root.Handle("/healthz", methods{http.MethodGet: s.handleHealth})
	root.Handle("/metrics", methods{http.MethodGet: s.handleMetrics})
	root.HandleFunc("/", notFound)
	return s.instrument("admin", root)
}

func (s *Service) handleListAppKeys(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("id")
	if _, err := s.cfg.Store.GetApp(r.Context(), app); err != nil {
		writeError(w, s.storeError(r.Context(), err))
		return
	}
	keys, err := s.cfg.Store.ListKeys(r.Context(), app)
	if err != nil {
		writeError(w, s.storeError(r.Context(), err))
		return
	}
	writeJSON(w, http.StatusOK, model.List[model.Key]{Items: keys})
}

func (s *Service) handleCreateKey(w http.ResponseWriter, r *http.Request) {
	var req model.KeyRequest
	body, e := readBody(w, r, s.cfg.MaxBodyBytes)
	if e != nil {
		writeError(w, e)
		return
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if e := decodeBytes(body, &req); e != nil {
			writeError(w, e)
			return
		}
	}
	now := s.cfg.Now().UTC()
	k := model.Key{App: r.PathValue("id"), Products: req.Products, Status: model.KeyApproved}
	var errs model.FieldErrors
	switch {
	case req.ExpiresIn != "" && req.ExpiresAt != "":
		errs = append(errs, model.FieldError{Field: "expiresIn", Message: "set expiresIn or expiresAt, not both"})
	case req.ExpiresIn != "":
		d, err := model.ParseLifetime(req.ExpiresIn)
		if err != nil {
			errs = append(errs, model.FieldError{Field: "expiresIn", Message: err.Error()})
		}
		k.ExpiresAt = now.Add(d).Truncate(timeResolution)
	case req.ExpiresAt != "":
		at, err := time.Parse(time.RFC3339, req.ExpiresAt)
		switch {
		case err != nil:
			errs = append(errs, model.FieldError{Field: "expiresAt", Message: fmt.Sprintf("%q is not an RFC 3339 timestamp such as 2030-01-02T15:04:05Z", req.ExpiresAt)})
		case !at.After(now):
			errs = append(errs, model.FieldError{Field: "expiresAt", Message: "must be in the future"})
		case at.Sub(now) > model.MaxKeyLifetime:
			errs = append(errs, model.FieldError{Field: "expiresAt", Message: "is too far in the future"})
		}
		k.ExpiresAt = at.UTC().Truncate(timeResolution)
	}
	for i, p := range req.Products {
		if !model.ValidName(p) {
			errs = append(errs, model.FieldError{Field: fmt.Sprintf("products[%d]", i), Message: fmt.Sprintf("%q is not a valid product name", p)})
		}
	}
	if len(errs) > 0 {
		writeError(w, validationError(errs))
		return
	}
	secret, err := model.GenerateKey(nil)
	if err == nil {
		k.ID, err = model.GenerateKeyID(nil)
	}
	if err != nil {
		s.log.LogAttrs(r.Context(), slogError, "key generation failed", attrErr(err))
		writeError(w, apierror.New(http.StatusInternalServerError, CodeInternal, "could not generate a key"))
		return
	}
	k.Hash = model.HashKey(secret)
	k.Prefix = model.DisplayPrefix(secret)
	stored, err := s.cfg.Store.CreateKey(r.Context(), k)
	if err != nil {
		writeError(w, s.storeError(r.Context(), err))
		return
	}
	s.log.LogAttrs(r.Context(), slogInfo, "key created", attrStr("key_id", stored.ID), attrStr("app", stored.App), attrStr("prefix", stored.Prefix))
	writeJSON(w, http.StatusCreated, model.IssuedKey{Secret: secret, Key: stored})
}

func (s *Service) keyStatus(status string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// The action takes no body; refuse one rather than silently ignoring it.
		body, e := readBody(w, r, 1024)
		if e == nil && len(bytes.TrimSpace(body)) > 0 {
			e = apierror.New(http.StatusBadRequest, CodeInvalidRequest, "this endpoint takes no request body")
		}
		if e != nil {
			writeError(w, e)
			return
		}
		k, err := s.cfg.Store.SetKeyStatus(r.Context(), r.PathValue("id"), status)
		if err != nil {
			writeError(w, s.storeError(r.Context(), err))
			return
		}
		s.log.LogAttrs(r.Context(), slogInfo, "key "+status, attrStr("key_id", k.ID), attrStr("app", k.App))
		writeJSON(w, http.StatusOK, k)
	}
}
