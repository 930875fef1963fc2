package keystore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/keystore/analytics"
	"github.com/tollgate/tollgate/shared/apierror"
)

// Usage endpoints: filters post usage records to the data plane; the admin
// API answers analytics queries over their aggregates.
const (
	UsagePath     = "/v1/usage"
	AnalyticsPath = AdminPrefix + "/analytics/usage"
	// RecordsPath exports raw usage records when the keystore keeps them.
	RecordsPath = AdminPrefix + "/analytics/records"
	// CodeRawRecordsOff answers record exports when raw records are not kept.
	CodeRawRecordsOff = "raw_records_disabled"
	// CodeAnalyticsOff answers usage calls when the service runs without analytics.
	CodeAnalyticsOff = "analytics_disabled"
	// DefaultAnalyticsRange is the range a query without from covers.
	DefaultAnalyticsRange = 24 * time.Hour
)

func (s *Service) analyticsOff(w http.ResponseWriter) bool {
	if s.cfg.Analytics != nil {
		return false
	}
	writeError(w, apierror.New(http.StatusNotFound, CodeAnalyticsOff, "usage analytics are not enabled on this keystore"))
	return true
}

// handleUsage ingests a batch of usage records. Structural problems are a
// 400 for the whole batch; invalid, duplicate and too-old records are
// acknowledged one by one in the 200 answer, so a sender only retries on
// 5xx or no answer.
func (s *Service) handleUsage(w http.ResponseWriter, r *http.Request) {
	if s.analyticsOff(w) {
		return
	}
	body, e := readBody(w, r, analytics.MaxBatchBytes)
	if e != nil {
		writeError(w, e)
		return
	}
	batch, err := analytics.DecodeBatch(body)
	if err != nil {
		writeError(w, apierror.New(http.StatusBadRequest, CodeInvalidRequest, err.Error()))
		return
	}
	ack, err := s.cfg.Analytics.Ingest(r.Context(), batch.Records)
	if err != nil {
		s.log.LogAttrs(r.Context(), slogError, "usage ingest failed", attrErr(err))
		writeError(w, apierror.New(http.StatusServiceUnavailable, CodeUnavailable, "the keystore could not store the usage records; retry"))
		return
	}
	s.metrics.usage(ack)
	if ack.Invalid > 0 {
		s.log.LogAttrs(r.Context(), slogWarn, "usage records refused", attrInt("invalid", ack.Invalid), attrStr("first", ack.Errors[0].Error()))
	}
	writeJSON(w, http.StatusOK, ack)
}

// ParseAnalyticsQuery reads an analytics query from URL parameters: from and
// to (RFC 3339; default the 24 hours up to and including now's bucket), step (minute, hour, day),
// group_by (comma-separated dimensions) and the filters app, product,
// developer and model (repeated or comma-separated).
func ParseAnalyticsQuery(v url.Values, now time.Time) (analytics.Query, *apierror.Error) {
	bad := func(param, msg string) (analytics.Query, *apierror.Error) {
		e := apierror.New(http.StatusBadRequest, CodeInvalidRequest, msg)
		e.Param = param
		return analytics.Query{}, e
	}
	list := func(name string) []string {
		var out []string
		for _, item := range v[name] {
			for _, p := range strings.Split(item, ",") {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
		}
		return out
	}
	for name := range v {
		switch name {
		case "from", "to", "step", "group_by", "app", "product", "developer", "model", "format":
		default:
			return bad(name, "unknown query parameter "+name)
		}
	}
	// Without to, the range ends with the bucket holding now.
	q := analytics.Query{To: now.Truncate(time.Second).Add(time.Second), Step: analytics.Hour, GroupBy: list("group_by"),
		Apps: list("app"), Products: list("product"), Developers: list("developer"), Models: list("model")}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"to", &q.To}, {"from", &q.From}} {
		if raw := v.Get(p.name); raw != "" {
			t, err := time.Parse(time.RFC3339, raw)
			if err != nil {
				return bad(p.name, p.name+" must be an RFC 3339 time such as 2026-03-01T00:00:00Z")
			}
			*p.dst = t
		}
	}
	if q.From.IsZero() {
		q.From = q.To.Add(-DefaultAnalyticsRange)
	}
	if raw := v.Get("step"); raw != "" {
		res, err := analytics.ParseResolution(raw)
		if err != nil {
			return bad("step", err.Error())
		}
		q.Step = res
	}
	if err := q.Validate(); err != nil {
		param := "from"
		if strings.Contains(err.Error(), "group_by") {
			param = "group_by"
		}
		return bad(param, strings.TrimPrefix(err.Error(), analytics.ErrQuery.Error()+": "))
	}
	return q, nil
}

// wantsCSV picks CSV by ?format=csv or an Accept header preferring text/csv.
func wantsCSV(r *http.Request) (bool, *apierror.Error) {
	switch f := r.URL.Query().Get("format"); f {
	case "csv":
		return true, nil
	case "json":
		return false, nil
	case "":
		return strings.HasPrefix(r.Header.Get("Accept"), "text/csv"), nil
	}
	e := apierror.New(http.StatusBadRequest, CodeInvalidRequest, "format must be json or csv")
	e.Param = "format"
	return false, e
}

// ServeAnalytics answers an analytics query as JSON or CSV; scope, when
// non-nil, restricts it to those apps (the portal passes a developer's own).
func ServeAnalytics(w http.ResponseWriter, r *http.Request, st *analytics.Store, now time.Time, scope []string) error {
	q, e := ParseAnalyticsQuery(r.URL.Query(), now)
	if scope != nil {
		q.Scoped, q.ScopeApps = true, scope
	}
	return serveRead(w, r, q, e, st.Query, "usage.csv", analytics.WriteCSV)
}

// serveRead is the one shape of an analytics read: refuse a bad query or
// format, run it, and answer JSON or, when asked, a CSV download.
func serveRead[Q, R any](w http.ResponseWriter, r *http.Request, q Q, e *apierror.Error,
	run func(context.Context, Q) (R, error), csvName string, writeCSV func(io.Writer, R) error) error {
	if e == nil {
		_, e = wantsCSV(r)
	}
	if e != nil {
		writeError(w, e)
		return nil
	}
	res, err := run(r.Context(), q)
	if err != nil {
		if errors.Is(err, analytics.ErrQuery) {
			writeError(w, apierror.New(http.StatusBadRequest, CodeInvalidRequest, err.Error()))
			return nil
		}
		writeError(w, apierror.New(http.StatusServiceUnavailable, CodeUnavailable, "the keystore could not read its storage"))
		return err
	}
	if csv, _ := wantsCSV(r); csv {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+csvName+`"`)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		return writeCSV(w, res)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Service) handleAnalytics(w http.ResponseWriter, r *http.Request) {
	if s.analyticsOff(w) {
		return
	}
	if err := ServeAnalytics(w, r, s.cfg.Analytics, s.cfg.Now(), nil); err != nil {
		s.log.LogAttrs(r.Context(), slogError, "analytics query failed", attrErr(err))
	}
}

// ParseRecordsQuery reads a raw-record query from URL parameters: from and
// to (RFC 3339; default the 24 hours up to now), the filters app, product,
// developer and model (repeated or comma-separated), limit and format.
func ParseRecordsQuery(v url.Values, now time.Time) (analytics.RawQuery, *apierror.Error) {
	bad := func(param, msg string) (analytics.RawQuery, *apierror.Error) {
		e := apierror.New(http.StatusBadRequest, CodeInvalidRequest, msg)
		e.Param = param
		return analytics.RawQuery{}, e
	}
	for name := range v {
		switch name {
		case "from", "to", "app", "product", "developer", "model", "limit", "format":
		default:
			return bad(name, "unknown query parameter "+name)
		}
	}
	list := func(name string) []string {
		var out []string
		for _, item := range v[name] {
			for _, p := range strings.Split(item, ",") {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
		}
		return out
	}
	q := analytics.RawQuery{To: now.Add(time.Millisecond), Apps: list("app"), Products: list("product"),
		Developers: list("developer"), Models: list("model")}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"to", &q.To}, {"from", &q.From}} {
		if raw := v.Get(p.name); raw != "" {
			t, err := time.Parse(time.RFC3339, raw)
			if err != nil {
				return bad(p.name, p.name+" must be an RFC 3339 time such as 2026-03-01T00:00:00Z")
			}
			*p.dst = t
		}
	}
	if q.From.IsZero() {
		q.From = q.To.Add(-DefaultAnalyticsRange)
	}
	if !q.From.Before(q.To) {
		return bad("from", "from must be before to")
	}
	if raw := v.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > analytics.MaxRawLimit {
			return bad("limit", fmt.Sprintf("limit must be an integer from 1 to %d", analytics.MaxRawLimit))
		}
		q.Limit = n
	}
	return q, nil
}

// ServeRecords exports raw usage records as JSON or CSV (404 when the store
// keeps none); scope, when non-nil, restricts them to those apps.
func ServeRecords(w http.ResponseWriter, r *http.Request, st *analytics.Store, now time.Time, scope []string) error {
	if !st.RawEnabled() {
		writeError(w, apierror.New(http.StatusNotFound, CodeRawRecordsOff, analytics.ErrRawOff.Error()))
		return nil
	}
	q, e := ParseRecordsQuery(r.URL.Query(), now)
	if scope != nil {
		q.Scoped, q.ScopeApps = true, scope
	}
	return serveRead(w, r, q, e, st.Records, "usage-records.csv", analytics.WriteRecordsCSV)
}

func (s *Service) handleRecords(w http.ResponseWriter, r *http.Request) {
	if s.analyticsOff(w) {
		return
	}
	if err := ServeRecords(w, r, s.cfg.Analytics, s.cfg.Now(), nil); err != nil {
		s.log.LogAttrs(r.Context(), slogError, "usage records export failed", attrErr(err))
	}
}
