package keystore

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/shared/apierror"
)

// Limits on verify request fields; longer values are rejected as malformed.
const (
	maxVerifyPath   = 8 << 10
	maxVerifyModel  = model.MaxModelLen
	maxVerifyMethod = 20
)

// DecodeVerifyRequest parses and checks a /v1/verify body. A missing key is
// not an error here (Verify answers it with reason "missing"); structural
// problems are 400s that name the field.
func DecodeVerifyRequest(body []byte) (model.VerifyRequest, *apierror.Error) {
	var req model.VerifyRequest
	if e := decodeBytes(body, &req); e != nil {
		return req, e
	}
	bad := func(param, msg string) (model.VerifyRequest, *apierror.Error) {
		e := apierror.New(http.StatusBadRequest, CodeInvalidRequest, msg)
		e.Param = param
		return req, e
	}
	switch {
	case req.Key != "" && req.KeyHash != "":
		return bad("key_hash", "send either key or key_hash, not both")
	case req.KeyHash != "" && !model.ValidKeyHash(req.KeyHash):
		return bad("key_hash", "key_hash must be 64 lower-case hex digits (SHA-256 of the key)")
	case (req.Method == "") != (req.Path == ""):
		return bad("method", "method and path must be sent together (or both left out to check the key alone)")
	case len(req.Method) > maxVerifyMethod || (req.Method != "" && !model.ValidMethod(strings.ToUpper(req.Method))) || req.Method == "*":
		return bad("method", "method must be an HTTP method such as GET or POST")
	case len(req.Path) > maxVerifyPath:
		return bad("path", fmt.Sprintf("path is longer than %d bytes", maxVerifyPath))
	case req.Path != "" && req.Path[0] != '/':
		return bad("path", "path must start with '/'")
	case len(req.Model) > maxVerifyModel:
		return bad("model", fmt.Sprintf("model is longer than %d bytes", maxVerifyModel))
	}
	req.Method = strings.ToUpper(req.Method)
	return req, nil
}

// statusRecorder remembers the status code for metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// instrument counts every request by server, route pattern and status, and
// logs it at debug level (method, route, status, duration — never bodies,
// query strings or headers).
func (s *Service) instrument(server string, mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		mux.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" || route == "/" {
			route = "unmatched"
		} else if !strings.Contains(route, " ") {
			route = methodLabel(r.Method) + " " + route
		}
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		s.metrics.request(server, route, rec.code)
		s.log.LogAttrs(r.Context(), slogDebug, "http request", attrStr("server", server), attrStr("route", route),
			attrInt("status", rec.code), attrDur("duration", time.Since(start)))
	})
}

// methodLabel keeps metric labels bounded: clients can send any method token.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

func (s *Service) dataHandler() (h http.Handler, err error) {
	mux := http.NewServeMux()
	mux.Handle("/v1/verify", methods{http.MethodPost: s.handleVerify})
	mux.Handle(UsagePath, methods{http.MethodPost: s.handleUsage})
	mux.Handle(PoolsPath, methods{http.MethodGet: s.handlePools})
	mux.Handle("/healthz", methods{http.MethodGet: s.handleHealth})
	mux.Handle("/metrics", methods{http.MethodGet: s.handleMetrics})
	defer func() {
		if p := recover(); p != nil { // ServeMux panics on conflicting patterns
			h, err = nil, fmt.Errorf("keystore: data-plane mount: %v", p)
		}
	}()
	for _, m := range s.cfg.DataMounts {
		if m.Handler == nil {
			return nil, fmt.Errorf("keystore: data-plane mount %q has no handler", m.Pattern)
		}
		mux.Handle(m.Pattern, m.Handler)
	}
	mux.HandleFunc("/", notFound)
	return s.instrument("data", s.dataAuth(mux)), nil
}

// dataAuth requires the data-plane token (when one is configured) on every
// route but GET /healthz, which readiness probes call without credentials.
// Unknown paths get the same 401, so the token also hides which routes exist.
func (s *Service) dataAuth(mux http.Handler) http.Handler {
	if s.dataSum == nil {
		return mux
	}
	guarded := s.bearer(mux, bearerRealm{"tollgate-data", "the keystore data plane", "data-plane token", CodeMissingDataToken, CodeInvalidDataToken}, s.dataSum)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			mux.ServeHTTP(w, r)
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

func (s *Service) handleVerify(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, e := readBody(w, r, VerifyMaxBodyBytes)
	if e != nil {
		s.metrics.verified("bad_request", time.Since(start))
		writeError(w, e)
		return
	}
	req, e := DecodeVerifyRequest(body)
	if e != nil {
		s.metrics.verified("bad_request", time.Since(start))
		writeError(w, e)
		return
	}
	resp, err := s.Verify(r.Context(), req)
	if err != nil {
		s.metrics.verified("error", time.Since(start))
		s.log.LogAttrs(r.Context(), slogError, "verify failed", attrErr(err))
		writeError(w, apierror.New(http.StatusServiceUnavailable, CodeUnavailable, "the keystore could not read its storage"))
		return
	}
	outcome := resp.Reason
	if resp.Valid {
		outcome = "valid"
	}
	s.metrics.verified(outcome, time.Since(start))
	s.log.LogAttrs(r.Context(), slogDebug, "verify", attrStr("outcome", outcome), attrStr("key_id", resp.KeyID), attrStr("app", resp.App))
	writeJSON(w, resp.Status, resp)
}

func (s *Service) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.cfg.Store.Ping(ctx); err != nil {
		s.log.LogAttrs(r.Context(), slogWarn, "health check failed", attrErr(err))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "storage": s.cfg.Backend})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "storage": s.cfg.Backend})
}

func (s *Service) handleMetrics(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := s.metrics.write(&buf, s.cfg.Now()); err != nil {
		writeError(w, apierror.New(http.StatusInternalServerError, CodeInternal, "could not render metrics"))
		return
	}
	for _, c := range s.cfg.Collectors {
		if err := c.WriteMetrics(&buf); err != nil {
			s.log.LogAttrs(r.Context(), slogWarn, "metrics collector failed", attrErr(err))
		}
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}
