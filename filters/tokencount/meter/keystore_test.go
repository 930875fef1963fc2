package meter

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/window"
)

func TestCallouts(t *testing.T) {
	p := mustParse(t, `{"keystore": {"authority": "ks.local", "reservation_ttl": "90s"}}`)
	q := &Quota{Key: Key{App: "demo", Product: "chat", Operation: "POST:/v1/embeddings", Kind: "tokens"},
		Spec: window.Spec{Limit: 1000, Interval: 5, Unit: window.Minute, Kind: window.Rolling}, Metric: usage.MetricTotal}
	tests := []struct {
		name string
		c    Callout
		path string
		want string
	}{
		{"reserve", p.Reserve(q, 321), PathReserve,
			`{"ttl_ms":90000,"items":[{"key":{"app":"demo","product":"chat","operation":"POST:/v1/embeddings","kind":"tokens"},"spec":{"limit":1000,"interval":5,"timeUnit":"minute","window":"rolling"},"n":321}]}`},
		{"reserve never negative", p.Reserve(q, -5), PathReserve,
			`{"ttl_ms":90000,"items":[{"key":{"app":"demo","product":"chat","operation":"POST:/v1/embeddings","kind":"tokens"},"spec":{"limit":1000,"interval":5,"timeUnit":"minute","window":"rolling"},"n":0}]}`},
		{"settle", Settle("abc", 77), PathSettle, `{"items":[{"id":"abc","actual":77}]}`},
		{"settle clamps", Settle("abc", -3), PathSettle, `{"items":[{"id":"abc","actual":0}]}`},
		{"release", Release("abc"), PathRelease, `{"items":[{"id":"abc"}]}`},
		{"record", Record(q, 12), PathConsume,
			`{"items":[{"key":{"app":"demo","product":"chat","operation":"POST:/v1/embeddings","kind":"tokens"},"spec":{"limit":1000,"interval":5,"timeUnit":"minute","window":"rolling"},"n":12,"force":true}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.path, tt.c.Path)
			assert.JSONEq(t, tt.want, string(tt.c.Body))
			h := p.CalloutHeaders(tt.c)
			assert.Contains(t, h, [2]string{":method", "POST"})
			assert.Contains(t, h, [2]string{":path", tt.path})
			assert.Contains(t, h, [2]string{":authority", "ks.local"})
			assert.Contains(t, h, [2]string{"content-type", "application/json"})
			assert.NotContains(t, fmt.Sprint(h), "authorization")
		})
	}
	withToken := mustParse(t, `{"keystore": {"token": "data-plane-token"}}`)
	assert.Contains(t, withToken.CalloutHeaders(Settle("abc", 1)), [2]string{"authorization", "Bearer data-plane-token"})
}

func TestCalloutEscapesKeys(t *testing.T) {
	p := mustParse(t, `{}`)
	q := &Quota{Key: Key{App: "a\"b\\c\x01é", Kind: "tokens"}, Spec: window.Spec{Limit: 1, Interval: 1, Unit: window.Hour, Kind: window.Calendar}}
	var v struct {
		Items []struct {
			Key Key `json:"key"`
		} `json:"items"`
	}
	require.NoError(t, json.Unmarshal(p.Reserve(q, 1).Body, &v))
	assert.Equal(t, q.Key, v.Items[0].Key)
}

func TestParseAnswer(t *testing.T) {
	tests := []struct {
		name    string
		failed  bool
		status  int
		body    string
		want    State
		err     error
		reserve bool
	}{
		{name: "no response", failed: true, err: ErrKeystore},
		{name: "503", status: 503, body: `{"error":{"message":"redis down","code":"backend_unavailable"}}`, err: ErrKeystore},
		{name: "400 without body", status: 400, err: ErrKeystore},
		{name: "not json", status: 200, body: `nope`, err: ErrKeystore},
		{name: "no results", status: 200, body: `{"allowed":true}`, err: ErrKeystore},
		{name: "results not objects", status: 200, body: `{"results":[1]}`, err: ErrKeystore},
		{name: "missing limit", status: 200, body: `{"results":[{"allowed":true}]}`, err: ErrKeystore},
		{name: "allowed not a bool", status: 200, body: `{"results":[{"allowed":1,"limit":5}]}`, err: ErrKeystore},
		{name: "not found", status: 200, body: `{"results":[{"error":{"message":"gone","code":"reservation_not_found"}}]}`, err: ErrNotFound},
		{name: "invalid id", status: 200, body: `{"results":[{"error":{"message":"bad","code":"invalid_reservation_id"}}]}`, err: ErrKeystore},
		{name: "reserve allowed", status: 200, reserve: true,
			body: `{"allowed":true,"results":[{"allowed":true,"limit":1000,"used":400,"remaining":600,"reset":1,"reset_after_ms":45000,"retry_after_ms":0,"id":"r1","expires":2}]}`,
			want: State{Allowed: true, Limit: 1000, Used: 400, Remaining: 600, ResetAfter: 45 * time.Second, ID: "r1"}},
		{name: "reserve allowed without id", status: 200, reserve: true,
			body: `{"allowed":true,"results":[{"allowed":true,"limit":1000,"used":400,"remaining":600}]}`, err: ErrKeystore},
		{name: "reserve denied", status: 200, reserve: true,
			body: `{"allowed":false,"results":[{"allowed":false,"limit":1000,"used":990,"remaining":10,"reset_after_ms":30000,"retry_after_ms":1500}]}`,
			want: State{Limit: 1000, Used: 990, Remaining: 10, ResetAfter: 30 * time.Second, RetryAfter: 1500 * time.Millisecond}},
		{name: "settle", status: 200,
			body: `{"results":[{"allowed":true,"limit":1000,"used":71,"remaining":929,"reset_after_ms":61000,"retry_after_ms":0}]}`,
			want: State{Allowed: true, Limit: 1000, Used: 71, Remaining: 929, ResetAfter: 61 * time.Second}},
		{name: "negative numbers read as 0", status: 200,
			body: `{"results":[{"allowed":true,"limit":-1,"used":-2,"remaining":-3,"reset_after_ms":-4,"retry_after_ms":-5}]}`,
			want: State{Allowed: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := ParseAnswer
			if tt.reserve {
				parse = ParseReserve
			}
			st, err := parse(tt.failed, tt.status, []byte(tt.body))
			if tt.err != nil {
				require.Error(t, err)
				assert.True(t, errors.Is(err, tt.err), "%v", err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, st)
		})
	}
}

func FuzzParseAnswer(f *testing.F) {
	f.Add(200, []byte(`{"allowed":true,"results":[{"allowed":true,"limit":1000,"used":400,"remaining":600,"reset_after_ms":45000,"id":"r1"}]}`))
	f.Add(200, []byte(`{"results":[{"error":{"code":"reservation_not_found"}}]}`))
	f.Add(503, []byte(`{"error":{"message":"x"}}`))
	f.Add(200, []byte(`{"results":[{"allowed":false,"limit":9007199254740993,"retry_after_ms":1e300}]}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		st, err := ParseReserve(false, status, body)
		if err != nil {
			require.Equal(t, State{}, st)
			return
		}
		require.GreaterOrEqual(t, st.Limit, int64(0))
		require.GreaterOrEqual(t, st.Used, int64(0))
		require.GreaterOrEqual(t, st.Remaining, int64(0))
		require.GreaterOrEqual(t, st.ResetAfter, time.Duration(0))
		require.GreaterOrEqual(t, st.RetryAfter, time.Duration(0))
		if st.Allowed {
			require.NotEmpty(t, st.ID)
		}
	})
}

// FuzzCalloutJSON checks the hand-written callout bodies against
// encoding/json: always valid, and decoding to the same key and id.
func FuzzCalloutJSON(f *testing.F) {
	f.Add("demo", "chat", "POST:/v1/x", "YXBw-._~", int64(5))
	f.Add("a\"b\\c\x01\x7f", "é\u2028", "", "\xff\xfe", int64(-1))
	f.Add("", "", "op", "", int64(1<<62))
	p, err := Parse(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, app, product, op, id string, n int64) {
		q := &Quota{Key: Key{App: app, Product: product, Operation: op, Kind: "tokens"},
			Spec: window.Spec{Limit: 10, Interval: 3, Unit: window.Day, Kind: window.Flexi}}
		type item struct {
			Key  Key `json:"key"`
			Spec struct {
				Limit    int64  `json:"limit"`
				Interval int    `json:"interval"`
				TimeUnit string `json:"timeUnit"`
				Window   string `json:"window"`
			} `json:"spec"`
			N      int64  `json:"n"`
			Force  bool   `json:"force"`
			ID     string `json:"id"`
			Actual *int64 `json:"actual"`
		}
		var v struct {
			TTLMs int64  `json:"ttl_ms"`
			Items []item `json:"items"`
		}
		// What encoding/json would make of the same strings.
		norm := func(s string) string {
			b, err := json.Marshal(s)
			require.NoError(t, err)
			var out string
			require.NoError(t, json.Unmarshal(b, &out))
			return out
		}
		wantKey := Key{App: norm(app), Product: norm(product), Operation: norm(op), Kind: "tokens"}
		for _, c := range []Callout{p.Reserve(q, n), Record(q, n)} {
			require.True(t, json.Valid(c.Body), "%s", c.Body)
			require.NoError(t, json.Unmarshal(c.Body, &v))
			require.Len(t, v.Items, 1)
			assert.Equal(t, wantKey, v.Items[0].Key)
			assert.Equal(t, int64(10), v.Items[0].Spec.Limit)
			assert.Equal(t, "day", v.Items[0].Spec.TimeUnit)
			assert.Equal(t, "flexi", v.Items[0].Spec.Window)
			assert.Equal(t, min(max(n, 0), window.MaxLimit), v.Items[0].N)
		}
		for _, c := range []Callout{Settle(id, n), Release(id)} {
			require.True(t, json.Valid(c.Body), "%s", c.Body)
			v.Items = nil
			require.NoError(t, json.Unmarshal(c.Body, &v))
			require.Len(t, v.Items, 1)
			assert.Equal(t, norm(id), v.Items[0].ID)
		}
	})
}
