package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter/countertest"
)

// leaseBody is one lease item on the tokens counter of the fixture's app.
func leaseBody(id string, used, want int64, extra string) string {
	return fmt.Sprintf(`{"items":[{"key":{"app":"app-7f3a","product":"gold","kind":"tokens"},`+
		`"spec":{"limit":10000,"interval":1,"timeUnit":"minute"},"id":%q,"used":%d,"want":%d%s}]}`, id, used, want, extra)
}

func TestLeaseLifecycle(t *testing.T) {
	f := newFixture(t) // clock at T0+15 s
	code, out := f.do(t, http.MethodPost, PathLease, readFixture(t, "lease.json"))
	require.Equal(t, http.StatusOK, code, out)
	tok, req := result(t, out, 0), result(t, out, 1)
	id, _ := tok["id"].(string)
	require.NotEmpty(t, id)
	assert.EqualValues(t, 500, tok["held"])
	assert.EqualValues(t, 500, tok["used"])
	assert.EqualValues(t, 9500, tok["remaining"])
	assert.EqualValues(t, 10000, tok["limit"])
	assert.EqualValues(t, countertest.T0.Add(time.Minute).UnixMilli(), tok["reset"])
	assert.EqualValues(t, 45000, tok["reset_after_ms"])
	assert.EqualValues(t, 30000, tok["valid_for_ms"])
	assert.Equal(t, false, tok["lost"])
	assert.EqualValues(t, 20, req["held"])
	assert.EqualValues(t, 30000, req["valid_for_ms"], "the 30 s TTL ends before the rolling sub-bucket [0 s, 60 s)")

	// Drawdown and renewal: 120 consumed, topped up to 500 again.
	f.clock.Advance(20 * time.Second)
	code, out = f.do(t, http.MethodPost, PathLease, leaseBody(id, 120, 500, `,"ttl_ms":60000`))
	require.Equal(t, http.StatusOK, code, out)
	r := result(t, out, 0)
	assert.Equal(t, id, r["id"])
	assert.EqualValues(t, 500, r["held"])
	assert.EqualValues(t, 620, r["used"])
	assert.EqualValues(t, 25000, r["valid_for_ms"], "the minute ends before the 60 s TTL")

	// Closing returns the rest: only the consumption stays.
	code, out = f.do(t, http.MethodPost, PathLease, leaseBody(id, 80, 0, ""))
	require.Equal(t, http.StatusOK, code, out)
	r = result(t, out, 0)
	assert.Equal(t, "", r["id"])
	assert.EqualValues(t, 0, r["held"])
	assert.EqualValues(t, 200, r["used"])
	assert.EqualValues(t, 0, r["valid_for_ms"])

	// A report on the closed lease is charged once and flagged lost.
	code, out = f.do(t, http.MethodPost, PathLease, leaseBody(id, 30, 100, ""))
	require.Equal(t, http.StatusOK, code, out)
	r = result(t, out, 0)
	assert.Equal(t, true, r["lost"])
	assert.NotEmpty(t, r["id"])
	assert.NotEqual(t, id, r["id"])
	assert.EqualValues(t, 330, r["used"])

	var b strings.Builder
	require.NoError(t, f.h.WriteMetrics(&b))
	assert.Contains(t, b.String(), `tollgate_quota_items_total{endpoint="lease",outcome="ok"} 4`+"\n")
	assert.Contains(t, b.String(), `tollgate_quota_items_total{endpoint="lease",outcome="lost"} 1`+"\n")
}

// TestLeaseItemErrors: a bad item answers an error for itself alone; the
// other items of the batch are applied.
func TestLeaseItemErrors(t *testing.T) {
	f := newFixture(t)
	good := `{"key":{"app":"a","kind":"tokens"},"spec":{"limit":100,"interval":1,"timeUnit":"minute"},"used":0,"want":10}`
	items := []struct {
		item, code, param, msg string
	}{
		{`{"key":{"kind":"tokens"},"spec":{"limit":100,"interval":1,"timeUnit":"minute"},"used":0,"want":10}`, "invalid_key", "items[1].key", "app is required"},
		{`{"key":{"app":"a","kind":"tokens"},"spec":{"limit":100,"interval":0,"timeUnit":"minute"},"used":0,"want":10}`, "invalid_spec", "items[2].spec", "interval 0"},
		{`{"key":{"app":"a","kind":"tokens"},"spec":{"limit":100,"interval":1,"timeUnit":"minute"},"used":-1,"want":10}`, "invalid_request", "items[3].used", "out of range"},
		{`{"key":{"app":"a","kind":"tokens"},"spec":{"limit":100,"interval":1,"timeUnit":"minute"},"used":0,"want":10,"min":11}`, "invalid_request", "items[4].min", "above want"},
		{`{"key":{"app":"a","kind":"tokens"},"spec":{"limit":100,"interval":1,"timeUnit":"minute"},"used":0,"want":10,"ttl_ms":600001}`, "invalid_request", "items[5].ttl_ms", "ttl_ms"},
		{`{"key":{"app":"a","kind":"tokens"},"spec":{"limit":100,"interval":1,"timeUnit":"minute"},"used":0,"want":10,"id":"bm90IGFuIGlk"}`, "invalid_lease_id", "items[6].id", "malformed lease id"},
	}
	parts := []string{good}
	for _, it := range items {
		parts = append(parts, it.item)
	}
	parts = append(parts, good)
	code, out := f.do(t, http.MethodPost, PathLease, `{"items":[`+strings.Join(parts, ",")+`]}`)
	require.Equal(t, http.StatusOK, code, out)
	assert.EqualValues(t, 10, result(t, out, 0)["held"])
	for i, it := range items {
		r := result(t, out, i+1)
		assert.NotContains(t, r, "held")
		e, ok := r["error"].(map[string]any)
		require.True(t, ok, "item %d: %v", i+1, r)
		assert.Equal(t, it.code, e["code"], it.param)
		assert.Equal(t, it.param, e["param"])
		assert.Equal(t, "invalid_request_error", e["type"])
		assert.Contains(t, e["message"], it.msg)
	}
	last := result(t, out, len(items)+1)
	assert.EqualValues(t, 10, last["held"])
	assert.EqualValues(t, 20, last["used"], "both good items were applied")
}

func TestLeaseBadRequests(t *testing.T) {
	spec := `"spec":{"limit":100,"interval":1,"timeUnit":"minute"}`
	key := `"key":{"app":"a","kind":"tokens"}`
	cases := []struct {
		name, body, code, param string
	}{
		{"no items", `{"items":[]}`, "invalid_request", "items"},
		{"too many items", `{"items":[` + strings.TrimSuffix(strings.Repeat(`{`+key+`,`+spec+`,"used":0,"want":1},`, 129), ",") + `]}`, "invalid_request", "items"},
		{"missing used", `{"items":[{` + key + `,` + spec + `,"want":1}]}`, "missing_field", "items[0].used"},
		{"missing want", `{"items":[{` + key + `,` + spec + `,"used":0}]}`, "missing_field", "items[0].want"},
		{"missing spec", `{"items":[{` + key + `,"used":0,"want":1}]}`, "missing_field", "items[0].spec"},
		{"unknown field", `{"items":[{` + key + `,` + spec + `,"used":0,"want":1,"n":1}]}`, "unknown_field", "n"},
		{"wrong type", `{"items":[{` + key + `,` + spec + `,"used":"0","want":1}]}`, "invalid_type", "items.used"},
		{"trailing data", `{"items":[{` + key + `,` + spec + `,"used":0,"want":1}]} x`, "invalid_json", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.h.opts.MaxBodyBytes = 64 << 10
			code, out := f.do(t, http.MethodPost, PathLease, tc.body)
			require.Equal(t, http.StatusBadRequest, code, out)
			e, ok := out["error"].(map[string]any)
			require.True(t, ok, "error object in %v", out)
			assert.Equal(t, tc.code, e["code"])
			if tc.param != "" {
				assert.Equal(t, tc.param, e["param"])
			}
		})
	}
}

// TestLeaseResend: a report re-sent with the same seq after a lost answer
// is not counted twice.
func TestLeaseResend(t *testing.T) {
	f := newFixture(t)
	code, out := f.do(t, http.MethodPost, PathLease, leaseBody("", 0, 100, `,"seq":1`))
	require.Equal(t, http.StatusOK, code, out)
	id := result(t, out, 0)["id"].(string)
	for range 2 {
		code, out = f.do(t, http.MethodPost, PathLease, leaseBody(id, 40, 100, `,"seq":2`))
		require.Equal(t, http.StatusOK, code, out)
		r := result(t, out, 0)
		assert.Equal(t, id, r["id"])
		assert.EqualValues(t, 140, r["used"], "40 drawn once, 100 held")
	}
	code, out = f.do(t, http.MethodPost, PathLease, leaseBody(id, 0, 100, `,"seq":-1`))
	require.Equal(t, http.StatusOK, code, out)
	e := result(t, out, 0)["error"].(map[string]any)
	assert.Equal(t, "items[0].seq", e["param"])
}
