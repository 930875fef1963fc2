package keystore

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/internal/jsontest"
	"github.com/tollgate/tollgate/keystore/analytics"
	"github.com/tollgate/tollgate/keystore/store"
)

// usageBatch is three records of two apps around the harness clock (12:00 UTC).
const usageBatch = `{"records":[
 {"request_id":"r1","time":"2026-03-01T11:58:10Z","app":"alpha","product":"chat","developer":"ada@example.com","key_id":"key_a","model":"gemma","prompt_tokens":10,"completion_tokens":20,"cost":0.5,"status":200,"outcome":"ok","latency_ms":40},
 {"request_id":"r2","time":"2026-03-01T11:59:10Z","app":"alpha","product":"chat","developer":"ada@example.com","key_id":"key_a","model":"llama","prompt_tokens":1,"completion_tokens":2,"status":200,"outcome":"aborted","latency_ms":10},
 {"request_id":"r3","time":"2026-03-01T11:59:30Z","app":"beta","product":"chat","developer":"bob@example.com","key_id":"key_b","model":"gemma","status":429,"outcome":"refused"}
]}`

func TestUsageIngestAndQuery(t *testing.T) {
	h := newHarness(t)
	data := h.svc.DataHandler()

	rec := do(t, data, http.MethodPost, UsagePath, usageBatch, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.JSONEq(t, `{"accepted":3,"duplicates":0,"expired":0,"invalid":0}`, rec.Body.String())
	rec = do(t, data, http.MethodPost, UsagePath, usageBatch, "")
	assert.JSONEq(t, `{"accepted":0,"duplicates":3,"expired":0,"invalid":0}`, rec.Body.String(), "a resent batch is not counted twice")

	rec = h.admin(t, http.MethodGet, AnalyticsPath+"?step=minute&group_by=app,model&from=2026-03-01T11:00:00Z", nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	body := rec.Body.String()
	assert.Equal(t, int64(3), jsontest.Get([]byte(body), "totals.requests").Int())
	assert.Equal(t, int64(33), jsontest.Get([]byte(body), "totals.total_tokens").Int())
	assert.Equal(t, "0.5", jsontest.Get([]byte(body), "totals.cost").Raw())
	assert.Equal(t, "2026-03-01T11:00:00Z", jsontest.Get([]byte(body), "from").Str())
	assert.Equal(t, "2026-03-01T12:01:00Z", jsontest.Get([]byte(body), "to").Str(), "to (now) rounds up to the next minute")
	require.True(t, jsontest.Get([]byte(body), "series.2").Exists())
	assert.False(t, jsontest.Get([]byte(body), "series.3").Exists(), "three series")
	assert.Equal(t, `{"app":"alpha","model":"gemma"}`, jsontest.Get([]byte(body), "series.0.group").Raw())
	assert.Equal(t, "2026-03-01T11:58:00Z", jsontest.Get([]byte(body), "series.0.points.0.start").Str())
	assert.Equal(t, int64(30), jsontest.Get([]byte(body), "series.0.points.0.total_tokens").Int())

	rec = h.admin(t, http.MethodGet, AnalyticsPath+"?developer=bob@example.com&step=day", nil)
	assert.Equal(t, int64(1), jsontest.Get(rec.Body.Bytes(), "totals.refused").Int(), rec.Body.String())
	assert.Equal(t, int64(1), jsontest.Get(rec.Body.Bytes(), "totals.requests").Int())

	rec = h.admin(t, http.MethodGet, AnalyticsPath+"?group_by=model&format=csv", nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, "text/csv; charset=utf-8", rec.Header().Get("Content-Type"))
	lines := strings.Split(strings.TrimSpace(rec.Body.String()), "\n")
	require.Len(t, lines, 3, rec.Body.String())
	assert.True(t, strings.HasPrefix(lines[0], "start,model,requests,"))
	assert.True(t, strings.HasPrefix(lines[1], "2026-03-01T11:00:00Z,gemma,2,1,1,0,10,20,30,0.500000,"), lines[1])

	rec = do(t, h.svc.AdminHandler(), http.MethodGet, AnalyticsPath, nil, "")
	assert.Equal(t, http.StatusUnauthorized, rec.Code, "analytics need the admin token")

	rec = do(t, data, http.MethodGet, "/metrics", nil, "")
	assert.Contains(t, rec.Body.String(), `tollgate_keystore_usage_records_total{result="accepted"} 3`)
	assert.Contains(t, rec.Body.String(), `tollgate_keystore_usage_records_total{result="duplicate"} 3`)
}

func TestUsageBadInput(t *testing.T) {
	h := newHarness(t)
	data := h.svc.DataHandler()
	tests := []struct {
		name, body string
		code       int
		want       string
	}{
		{name: "not json", body: "{", code: 400, want: "invalid usage batch"},
		{name: "unknown field", body: `{"records":[],"extra":1}`, code: 400, want: "unknown field"},
		{name: "too large", body: `{"records":["` + strings.Repeat("x", 1<<20) + `"]}`, code: 413, want: "exceeds"},
		{name: "invalid record acknowledged", body: `{"records":[{"request_id":"x","time":"2026-03-01T11:00:00Z","outcome":"nope"},{"request_id":"y","time":"2026-03-01T11:00:00Z","outcome":"ok"}]}`,
			code: 200, want: `"invalid":1`},
		{name: "too old acknowledged", body: `{"records":[{"request_id":"z","time":"2026-03-01T09:00:00Z","outcome":"ok"}]}`, code: 200, want: `"expired":1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(t, data, http.MethodPost, UsagePath, tt.body, "")
			assert.Equal(t, tt.code, rec.Code, rec.Body.String())
			assert.Contains(t, rec.Body.String(), tt.want)
		})
	}
	queries := []struct{ query, param string }{
		{"?step=week", "step"},
		{"?from=yesterday", "from"},
		{"?group_by=key", "group_by"},
		{"?from=2026-03-01T12:00:00Z&to=2026-02-01T12:00:00Z", "from"},
		{"?step=minute&from=2025-01-01T00:00:00Z", "from"},
		{"?format=xml", "format"},
		{"?apps=alpha", "apps"},
	}
	for _, q := range queries {
		rec := h.admin(t, http.MethodGet, AnalyticsPath+q.query, nil)
		assert.Equal(t, http.StatusBadRequest, rec.Code, "%s: %s", q.query, rec.Body.String())
		assert.Equal(t, q.param, jsontest.Get(rec.Body.Bytes(), "error.param").Str(), q.query)
	}
}

func TestUsageDisabled(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Analytics = nil })
	rec := do(t, h.svc.DataHandler(), http.MethodPost, UsagePath, `{"records":[]}`, "")
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.Equal(t, CodeAnalyticsOff, jsontest.Get(rec.Body.Bytes(), "error.code").Str())
}

func TestUsageNeedsDataToken(t *testing.T) {
	const token = "data-token-0123456789"
	h := newHarness(t, func(c *Config) { c.DataToken = token })
	data := h.svc.DataHandler()
	rec := do(t, data, http.MethodPost, UsagePath, usageBatch, "")
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	rec = do(t, data, http.MethodPost, UsagePath, usageBatch, "Bearer wrong-token-0123456789")
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	rec = do(t, data, http.MethodPost, UsagePath, usageBatch, "Bearer "+token)
	assert.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, int64(3), jsontest.Get(rec.Body.Bytes(), "accepted").Int())
}

func TestUsageRecordsExport(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }
	h := newHarness(t, func(c *Config) {
		b, err := store.OpenBackend(context.Background(), store.BackendOptions{DataDir: t.TempDir()})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		c.Analytics, err = analytics.Open(b, analytics.Config{Now: now, RawRetention: 24 * time.Hour})
		require.NoError(t, err)
	})
	rec := do(t, h.svc.DataHandler(), http.MethodPost, UsagePath, usageBatch, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())

	rec = h.admin(t, http.MethodGet, RecordsPath, nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	body := rec.Body.Bytes()
	assert.Equal(t, "r1", jsontest.Get(body, "records.0.request_id").Str())
	assert.Equal(t, int64(30), jsontest.Get(body, "records.0.total_tokens").Int())
	assert.Equal(t, "key_a", jsontest.Get(body, "records.0.key_id").Str())
	assert.Equal(t, "r3", jsontest.Get(body, "records.2.request_id").Str())
	assert.False(t, jsontest.Get(body, "records.3").Exists())
	assert.False(t, jsontest.Get(body, "truncated").Bool())

	rec = h.admin(t, http.MethodGet, RecordsPath+"?app=alpha&model=llama", nil)
	assert.Equal(t, "r2", jsontest.Get(rec.Body.Bytes(), "records.0.request_id").Str(), rec.Body.String())
	assert.False(t, jsontest.Get(rec.Body.Bytes(), "records.1").Exists())
	rec = h.admin(t, http.MethodGet, RecordsPath+"?limit=1", nil)
	assert.True(t, jsontest.Get(rec.Body.Bytes(), "truncated").Bool(), rec.Body.String())

	rec = h.admin(t, http.MethodGet, RecordsPath+"?format=csv&developer=bob@example.com", nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, "text/csv; charset=utf-8", rec.Header().Get("Content-Type"))
	lines := strings.Split(strings.TrimSpace(rec.Body.String()), "\n")
	require.Len(t, lines, 2, rec.Body.String())
	assert.Equal(t, "r3,2026-03-01T11:59:30Z,beta,chat,bob@example.com,key_b,gemma,0,0,0,0.000000,429,refused,0", lines[1])

	for _, q := range []struct{ query, param string }{
		{"?limit=0", "limit"}, {"?limit=10001", "limit"}, {"?from=2026-03-02T00:00:00Z", "from"}, {"?step=day", "step"}, {"?format=xml", "format"},
	} {
		rec := h.admin(t, http.MethodGet, RecordsPath+q.query, nil)
		assert.Equal(t, http.StatusBadRequest, rec.Code, "%s: %s", q.query, rec.Body.String())
		assert.Equal(t, q.param, jsontest.Get(rec.Body.Bytes(), "error.param").Str(), q.query)
	}
	rec = do(t, h.svc.AdminHandler(), http.MethodGet, RecordsPath, nil, "")
	assert.Equal(t, http.StatusUnauthorized, rec.Code, "records need the admin token")

	off := newHarness(t) // raw records are off by default
	rec = off.admin(t, http.MethodGet, RecordsPath, nil)
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.Equal(t, CodeRawRecordsOff, jsontest.Get(rec.Body.Bytes(), "error.code").Str())
}
