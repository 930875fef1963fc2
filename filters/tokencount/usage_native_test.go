//go:build !wasip1

package tokencount

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/keystore/analytics"
	"github.com/tollgate/tollgate/keystore/analytics/analyticstest"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

// TestNativeUsageRecords: with usage.enabled every metered request ends in
// one usage record (ok, refused) posted on the tick, and the tokens in
// analytics equal what the counter engine charged.
func TestNativeUsageRecords(t *testing.T) {
	ks := newKeystore(t)
	mux, st := analyticstest.Keystore(t, ks)
	h := hosttest.New(t, hosttest.Config{Plugin: New, AllowOnHeadersStopIteration: true, Clusters: []string{"keystore"},
		PluginConfig: []byte(staticConfig(10000, `, "usage": {"enabled": true, "flush_interval": "100ms"}`)),
		Upstream:     nativeBackend(t, 200), Callouts: hosttest.ServeCallouts(mux)})
	assert.Equal(t, 100*time.Millisecond, h.TickPeriod())

	who := [][2]string{blue, {"x-tollgate-app", "bookshop"}, {"x-tollgate-developer", "ada@example.com"}, {"x-tollgate-product", "chat"}}
	with := func(id string) [][2]string {
		return append(append([][2]string{}, who...), [2]string{"x-request-id", id})
	}
	res := h.Do(chat(chatJSON+`}`, with("r-json")...))
	require.Equal(t, 200, res.Status, string(res.Body))
	res = h.Do(chat(chatJSON+`,"stream":true}`, with("r-stream")...))
	require.Equal(t, 200, res.Status, string(res.Body))
	res = h.Do(chat(`{"model": 7}`, with("r-bad")...))
	require.Equal(t, 400, res.Status, string(res.Body))
	h.Tick()

	now := time.Now()
	out, err := st.Query(context.Background(), analytics.Query{From: now.Add(-time.Hour), To: now.Add(time.Minute), GroupBy: []string{analytics.DimApp, analytics.DimDeveloper}})
	require.NoError(t, err)
	assert.Equal(t, int64(3), out.Totals.Requests)
	assert.Equal(t, int64(2), out.Totals.OK)
	assert.Equal(t, int64(1), out.Totals.Refused)
	assert.Equal(t, int64(2), out.Totals.Status2xx)
	assert.Equal(t, int64(1), out.Totals.Status4xx)
	assert.Equal(t, ks.used(t, teamKey("blue"), hourly(10000)), out.Totals.TotalTokens, "analytics count what the counter charged")
	require.Len(t, out.Series, 1)
	assert.Equal(t, analytics.Dims{App: "bookshop", Developer: "ada@example.com"}, out.Series[0].Group)

	h.Tick()
	again, err := st.Query(context.Background(), analytics.Query{From: now.Add(-time.Hour), To: now.Add(time.Minute)})
	require.NoError(t, err)
	assert.Equal(t, out.Totals, again.Totals, "nothing is sent twice")
}
