package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/countertest"
	"github.com/tollgate/tollgate/counter/memstore"
)

type fixture struct {
	clock *countertest.Clock
	h     *Handler
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	clock := countertest.NewClock(countertest.T0.Add(15 * time.Second))
	s, err := memstore.Open(memstore.Options{Clock: clock.Now})
	require.NoError(t, err)
	eng := counter.New(s, counter.WithClock(clock.Now))
	t.Cleanup(func() { _ = eng.Close() })
	return &fixture{clock: clock, h: New(eng, Options{Now: clock.Now, MaxBodyBytes: 4096})}
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return string(b)
}

func (f *fixture) do(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var out map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), rec.Body.String())
	return rec.Code, out
}

func result(t *testing.T, out map[string]any, i int) map[string]any {
	t.Helper()
	list, ok := out["results"].([]any)
	require.True(t, ok, "results in %v", out)
	require.Greater(t, len(list), i)
	return list[i].(map[string]any)
}

func TestConsumeToLimit(t *testing.T) {
	f := newFixture(t)
	body := readFixture(t, "consume.json")
	for i := 0; i < 3; i++ {
		code, out := f.do(t, http.MethodPost, PathConsume, body)
		require.Equal(t, http.StatusOK, code)
		assert.Equal(t, true, out["allowed"])
		r := result(t, out, 0)
		assert.Equal(t, true, r["allowed"])
		assert.EqualValues(t, 3, r["limit"])
		assert.EqualValues(t, 2-i, r["remaining"])
		assert.EqualValues(t, countertest.T0.Add(time.Minute).UnixMilli(), r["reset"])
		assert.EqualValues(t, 45000, r["reset_after_ms"])
		assert.EqualValues(t, 0, r["retry_after_ms"])
	}
	code, out := f.do(t, http.MethodPost, PathConsume, body)
	require.Equal(t, http.StatusOK, code, "a denial is a decision, not an error")
	assert.Equal(t, false, out["allowed"])
	r := result(t, out, 0)
	assert.Equal(t, false, r["allowed"])
	assert.EqualValues(t, 0, r["remaining"])
	assert.EqualValues(t, 45000, r["retry_after_ms"])
}

func TestReserveSettleRelease(t *testing.T) {
	f := newFixture(t)
	code, out := f.do(t, http.MethodPost, PathReserve, readFixture(t, "reserve.json"))
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, true, out["allowed"])
	perMin, perDay := result(t, out, 0), result(t, out, 1)
	assert.EqualValues(t, 10000-4096, perMin["remaining"])
	assert.EqualValues(t, countertest.T0.Add(15*time.Second+2*time.Minute).UnixMilli(), perMin["expires"])
	id1, id2 := perMin["id"].(string), perDay["id"].(string)
	require.NotEmpty(t, id1)
	require.NotEmpty(t, id2)

	code, out = f.do(t, http.MethodPost, PathSettle, fmt.Sprintf(`{"items":[{"id":%q,"actual":1200},{"id":"bm90IGFuIGlk","actual":1}]}`, id1))
	require.Equal(t, http.StatusOK, code, out)
	r := result(t, out, 0)
	assert.EqualValues(t, 1200, r["used"])
	assert.EqualValues(t, 8800, r["remaining"])
	bad := result(t, out, 1)["error"].(map[string]any)
	assert.Equal(t, "invalid_reservation_id", bad["code"])
	assert.Equal(t, "items[1].id", bad["param"])

	code, out = f.do(t, http.MethodPost, PathRelease, fmt.Sprintf(`{"items":[{"id":%q},{"id":%q}]}`, id2, id1))
	require.Equal(t, http.StatusOK, code, out)
	assert.EqualValues(t, 0, result(t, out, 0)["used"])
	gone := result(t, out, 1)["error"].(map[string]any)
	assert.Equal(t, "reservation_not_found", gone["code"])
	assert.NotContains(t, result(t, out, 1), "used")
}

func TestReserveDenied(t *testing.T) {
	f := newFixture(t)
	body := `{"items":[{"key":{"app":"a","kind":"tokens"},"spec":{"limit":100,"interval":1,"timeUnit":"minute"},"n":101}]}`
	code, out := f.do(t, http.MethodPost, PathReserve, body)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, false, out["allowed"])
	r := result(t, out, 0)
	assert.NotContains(t, r, "id")
	assert.NotContains(t, r, "expires")
}

func TestBadRequests(t *testing.T) {
	item := func(mod string) string {
		return `{"items":[{"key":{"app":"a","kind":"requests"},"spec":{"limit":5,"interval":1,"timeUnit":"minute"},"n":1` + mod + `}]}`
	}
	cases := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		code   string
		param  string
		msg    string
	}{
		{"wrong method", http.MethodGet, PathConsume, "", 405, "method_not_allowed", "", "needs POST"},
		{"unknown path", http.MethodPost, "/v1/quota/nope", "{}", 404, "not_found", "", "/v1/quota/nope"},
		{"empty body", http.MethodPost, PathConsume, "", 400, "invalid_json", "", "empty"},
		{"syntax", http.MethodPost, PathConsume, `{"items":[}`, 400, "invalid_json", "", "byte"},
		{"truncated", http.MethodPost, PathConsume, `{"items":[`, 400, "invalid_json", "", "truncated"},
		{"trailing data", http.MethodPost, PathConsume, item("") + `{}`, 400, "invalid_json", "", "after the JSON object"},
		{"not an object", http.MethodPost, PathConsume, `[1]`, 400, "invalid_type", "body", "must be"},
		{"unknown top field", http.MethodPost, PathConsume, `{"itemz":[]}`, 400, "unknown_field", "itemz", "itemz"},
		{"unknown nested field", http.MethodPost, PathConsume, item(`,"weight":2`), 400, "unknown_field", "weight", "weight"},
		{"wrong type", http.MethodPost, PathConsume, `{"items":[{"n":"one"}]}`, 400, "invalid_type", "items.n", "int64"},
		{"fractional n", http.MethodPost, PathConsume, `{"items":[{"n":1.5}]}`, 400, "invalid_type", "items.n", "int64"},
		{"no items", http.MethodPost, PathConsume, `{"items":[]}`, 400, "invalid_request", "items", "1 to 128"},
		{"null body", http.MethodPost, PathConsume, `null`, 400, "invalid_request", "items", "1 to 128"},
		{"missing spec", http.MethodPost, PathConsume, `{"items":[{"key":{"app":"a","kind":"requests"},"n":1}]}`, 400, "missing_field", "items[0].spec", "required"},
		{"missing limit", http.MethodPost, PathConsume, `{"items":[{"key":{"app":"a","kind":"requests"},"spec":{"interval":1,"timeUnit":"minute"},"n":1}]}`, 400, "missing_field", "items[0].spec.limit", "required"},
		{"missing n", http.MethodPost, PathConsume, `{"items":[{"key":{"app":"a","kind":"requests"},"spec":{"limit":5,"interval":1,"timeUnit":"minute"}}]}`, 400, "missing_field", "items[0].n", "required"},
		{"bad unit", http.MethodPost, PathConsume, `{"items":[{"key":{"app":"a","kind":"requests"},"spec":{"limit":5,"interval":1,"timeUnit":"fortnight"},"n":1}]}`, 400, "invalid_spec", "", "fortnight"},
		{"missing unit", http.MethodPost, PathConsume, `{"items":[{"key":{"app":"a","kind":"requests"},"spec":{"limit":5,"interval":1},"n":1}]}`, 400, "invalid_spec", "items[0].spec", "time unit"},
		{"zero interval", http.MethodPost, PathConsume, `{"items":[{"key":{"app":"a","kind":"requests"},"spec":{"limit":5,"interval":0,"timeUnit":"minute"},"n":1}]}`, 400, "invalid_spec", "items[0].spec", "interval 0"},
		{"missing app", http.MethodPost, PathConsume, `{"items":[{"key":{"kind":"requests"},"spec":{"limit":5,"interval":1,"timeUnit":"minute"},"n":1}]}`, 400, "invalid_key", "items[0].key", "app is required"},
		{"negative n", http.MethodPost, PathConsume, `{"items":[{"key":{"app":"a","kind":"requests"},"spec":{"limit":5,"interval":1,"timeUnit":"minute"},"n":-1}]}`, 400, "invalid_request", "items[0].n", "n -1"},
		{"force on reserve", http.MethodPost, PathReserve, item(`,"force":true`), 400, "invalid_request", "items[0].force", "force"},
		{"negative ttl", http.MethodPost, PathReserve, `{"ttl_ms":-5,` + item("")[1:], 400, "invalid_request", "ttl_ms", "ttl_ms"},
		{"settle without actual", http.MethodPost, PathSettle, `{"items":[{"id":"x"}]}`, 400, "missing_field", "items[0].actual", "required"},
		{"settle without id", http.MethodPost, PathSettle, `{"items":[{"actual":3}]}`, 400, "missing_field", "items[0].id", "required"},
		{"settle negative", http.MethodPost, PathSettle, `{"items":[{"id":"x","actual":-3}]}`, 400, "invalid_request", "items[0].actual", "out of range"},
		{"release without id", http.MethodPost, PathRelease, `{"items":[{}]}`, 400, "missing_field", "items[0].id", "required"},
		{"release unknown field", http.MethodPost, PathRelease, `{"items":[{"id":"x","actual":1}]}`, 400, "unknown_field", "actual", "actual"},
		{"too large", http.MethodPost, PathConsume, `{"items":[` + strings.Repeat(" ", 5000) + `]}`, 413, "request_too_large", "", "4096"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			code, out := f.do(t, tc.method, tc.path, tc.body)
			assert.Equal(t, tc.status, code)
			e, ok := out["error"].(map[string]any)
			require.True(t, ok, "error object in %v", out)
			assert.Equal(t, tc.code, e["code"])
			if tc.status < 500 {
				assert.Equal(t, "invalid_request_error", e["type"])
			}
			if tc.param != "" {
				assert.Equal(t, tc.param, e["param"])
			}
			assert.Contains(t, e["message"], tc.msg)
		})
	}
}

func TestContentType(t *testing.T) {
	f := newFixture(t)
	req := httptest.NewRequest(http.MethodPost, PathConsume, strings.NewReader(readFixture(t, "consume.json")))
	req.Header.Set("Content-Type", "text/plain")
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusUnsupportedMediaType, rec.Code)
	// No content type at all is accepted, as is a charset parameter.
	for _, ct := range []string{"", "application/json; charset=utf-8"} {
		req = httptest.NewRequest(http.MethodPost, PathConsume, strings.NewReader(readFixture(t, "consume.json")))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec = httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusOK, rec.Code, ct)
	}
}

// failing is a limiter whose backend is down or hangs.
type failing struct{ hang bool }

func (f failing) wait(ctx context.Context) error {
	if f.hang {
		<-ctx.Done()
		return fmt.Errorf("counter backend: %w", ctx.Err())
	}
	return fmt.Errorf("counter backend: %w", errors.New("dial tcp 127.0.0.1:6379: connection refused"))
}

func (f failing) ConsumeBatch(ctx context.Context, _ []counter.Request, _ bool) ([]counter.Decision, error) {
	return nil, f.wait(ctx)
}

func (f failing) ReserveBatch(ctx context.Context, _ []counter.Request, _ time.Duration) ([]counter.Reservation, error) {
	return nil, f.wait(ctx)
}

func (f failing) Settle(ctx context.Context, _ string, _ int64) (counter.Decision, error) {
	return counter.Decision{}, f.wait(ctx)
}

func (f failing) Release(ctx context.Context, _ string) (counter.Decision, error) {
	return counter.Decision{}, f.wait(ctx)
}

func (f failing) Lease(ctx context.Context, _ []counter.LeaseRequest) ([]counter.Lease, error) {
	return nil, f.wait(ctx)
}

func TestBackendFailure(t *testing.T) {
	for _, hang := range []bool{false, true} {
		t.Run(fmt.Sprintf("hang=%v", hang), func(t *testing.T) {
			var logs bytes.Buffer
			h := New(failing{hang: hang}, Options{BackendTimeout: 20 * time.Millisecond, Logger: slogTo(&logs)})
			for path, body := range map[string]string{
				PathConsume: readFixture(t, "consume.json"),
				PathReserve: readFixture(t, "reserve.json"),
				PathSettle:  `{"items":[{"id":"x","actual":1}]}`,
				PathRelease: `{"items":[{"id":"x"}]}`,
				PathLease:   readFixture(t, "lease.json"),
			} {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
				assert.Equal(t, http.StatusServiceUnavailable, rec.Code, path)
				assert.JSONEq(t, `{"error":{"message":"quota backend unavailable","type":"server_error","code":"backend_unavailable"}}`, rec.Body.String())
			}
			assert.Contains(t, logs.String(), "quota backend failed")
		})
	}
}

// TestOverLoopback drives the handler through a real HTTP server on 127.0.0.1.
func TestOverLoopback(t *testing.T) {
	f := newFixture(t)
	mux := http.NewServeMux()
	f.h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	require.True(t, strings.HasPrefix(srv.URL, "http://127.0.0.1:"))
	resp, err := srv.Client().Post(srv.URL+PathConsume, "application/json", strings.NewReader(readFixture(t, "consume.json")))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, fmt.Sprintf(`{"allowed":true,"results":[{"allowed":true,"limit":3,"used":1,"remaining":2,"reset":%d,"reset_after_ms":45000,"retry_after_ms":0}]}`,
		countertest.T0.Add(time.Minute).UnixMilli()), string(b))
}

func TestMetrics(t *testing.T) {
	f := newFixture(t)
	body := readFixture(t, "consume.json")
	for i := 0; i < 4; i++ {
		f.do(t, http.MethodPost, PathConsume, body)
	}
	f.do(t, http.MethodPost, PathConsume, `{}`)
	f.do(t, http.MethodPost, PathRelease, `{"items":[{"id":"bm9wZQ"}]}`)
	var b strings.Builder
	require.NoError(t, f.h.WriteMetrics(&b))
	out := b.String()
	assert.Contains(t, out, "# TYPE tollgate_quota_items_total counter\n")
	for _, line := range []string{
		`tollgate_quota_items_total{endpoint="consume",outcome="allowed"} 3`,
		`tollgate_quota_items_total{endpoint="consume",outcome="denied"} 1`,
		`tollgate_quota_items_total{endpoint="consume",outcome="bad_request"} 1`,
		`tollgate_quota_items_total{endpoint="release",outcome="bad_request"} 1`,
		`tollgate_quota_items_total{endpoint="settle",outcome="ok"} 0`,
	} {
		assert.Contains(t, out, line+"\n")
	}
}
