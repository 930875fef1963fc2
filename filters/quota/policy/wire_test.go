package policy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/httpapi"
	"github.com/tollgate/tollgate/counter/memstore"
	"github.com/tollgate/tollgate/window"
)

// TestConsumeRoundTrip sends EncodeConsume's bodies to the real data-plane
// handler and decodes its answers with DecodeConsume.
func TestConsumeRoundTrip(t *testing.T) {
	ms, err := memstore.Open(memstore.Options{})
	require.NoError(t, err)
	eng := counter.New(ms)
	t.Cleanup(func() { _ = eng.Close() })
	h := httpapi.New(eng, httpapi.Options{})
	spec := window.Spec{Limit: 2, Interval: 1, Unit: window.Minute, Kind: window.Rolling}
	items := []Item{
		{Key: counter.Key{App: `we"ird\app`, Product: "p", Operation: "op", Kind: counter.Requests}, Spec: spec, N: 1},
		{Key: counter.Key{App: "b", Kind: counter.Requests}, Spec: window.Spec{Limit: 5, Interval: 3, Unit: window.Hour, Kind: window.Flexi}, N: 2, Force: true},
	}
	call := func(items []Item, atomic bool) []Result {
		t.Helper()
		body := EncodeConsume(items, atomic)
		require.True(t, json.Valid(body), string(body))
		rec := httptest.NewRecorder()
		req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/v1/quota/consume", strings.NewReader(string(body)))
		req.Header.Set("content-type", "application/json")
		h.ServeHTTP(rec, req)
		b, _ := io.ReadAll(rec.Body)
		rs, err := DecodeConsume(rec.Code, b, len(items))
		require.NoError(t, err, string(b))
		return rs
	}
	rs := call(items, true)
	assert.True(t, rs[0].Allowed)
	assert.EqualValues(t, 1, rs[0].Used)
	assert.EqualValues(t, 1, rs[0].Remaining)
	assert.EqualValues(t, 2, rs[0].Limit)
	assert.Greater(t, rs[0].ResetAfter, 59*time.Second)
	assert.EqualValues(t, 2, rs[1].Used)

	rs = call(items[:1], false)
	assert.True(t, rs[0].Allowed)
	rs = call(items[:1], false)
	assert.False(t, rs[0].Allowed)
	assert.EqualValues(t, 0, rs[0].Remaining)
	assert.Greater(t, rs[0].RetryAfter, time.Duration(0))
}

func TestDecodeConsumeErrors(t *testing.T) {
	ok := `{"allowed":true,"results":[{"allowed":true,"limit":1,"used":1,"remaining":0,"reset":1,"reset_after_ms":10,"retry_after_ms":0}]}`
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"unavailable", 503, `{"error":{"message":"x","type":"server_error","code":"backend_unavailable"}}`, "backend_unavailable"},
		{"bad request", 400, `{"error":{"code":"invalid_key"}}`, "status 400"},
		{"empty 502", 502, ``, "no error code"},
		{"not json", 200, `{"results":`, "not JSON"},
		{"no results", 200, `{"allowed":true}`, "no results"},
		{"count mismatch", 200, `{"results":[]}`, "0 results for 1"},
		{"allowed not bool", 200, `{"results":[{"allowed":"yes"}]}`, "not a boolean"},
		{"negative count", 200, `{"results":[{"allowed":true,"limit":-1}]}`, "limit is not a count"},
		{"missing field", 200, `{"results":[{"allowed":true,"limit":1,"used":1,"remaining":0}]}`, "reset_after_ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeConsume(tt.status, []byte(tt.body), 1)
			require.ErrorIs(t, err, ErrKeystore)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	rs, err := DecodeConsume(200, []byte(ok), 1)
	require.NoError(t, err)
	assert.Equal(t, Result{Allowed: true, Limit: 1, Used: 1, ResetAfter: 10 * time.Millisecond}, rs[0])
	now := time.Unix(100, 0)
	assert.Equal(t, State{Allowed: true, Limit: 1, Reset: now.Add(10 * time.Millisecond)}, rs[0].State(now))
}

func TestCalloutHeaders(t *testing.T) {
	p := mustParse(t, `{"key_sources": [{"client_ip": true}], "keystore": {"cluster": "ks", "authority": "ks.local", "headers": {"X-Token": "abc"}}}`)
	assert.Equal(t, [][2]string{{":method", "POST"}, {":path", "/v1/quota/consume"}, {":authority", "ks.local"},
		{"content-type", "application/json"}, {"x-token", "abc"}}, p.Keystore.CalloutHeaders())

	p = mustParse(t, `{"key_sources": [{"client_ip": true}], "keystore": {"token": "data-plane-token"}}`)
	h := p.Keystore.CalloutHeaders()
	assert.Equal(t, [2]string{"authorization", "Bearer data-plane-token"}, h[len(h)-1])
}
