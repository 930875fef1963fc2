//go:build !wasip1

package tokencount

// Native tests of the glue on shared/proxywasm/hosttest: the filter runs in
// the test binary (covered, debuggable) in front of the real counter engine's
// handler; main_test.go checks the same behaviours in the built module.

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

// nativeBackend answers like newBackend: JSON, or the recorded stream with
// or without the usage chunk as the request asks, one frame per event.
func nativeBackend(t *testing.T, status int) func(*hosttest.Upstream) *hosttest.Response {
	b := newBackend(t)
	return func(up *hosttest.Upstream) *hosttest.Response {
		if status != 200 {
			return &hosttest.Response{Status: status, Headers: [][2]string{{"content-type", "application/json"}},
				Body: []byte(`{"error":{"message":"model overloaded","type":"server_error"}}`)}
		}
		var req struct {
			Stream        bool `json:"stream"`
			StreamOptions struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
		}
		_ = json.Unmarshal(up.Body, &req)
		if !req.Stream {
			return &hosttest.Response{Headers: [][2]string{{"content-type", "application/json"}}, Body: b.json}
		}
		s := b.noUsage
		if req.StreamOptions.IncludeUsage {
			s = b.usage
		}
		return &hosttest.Response{Headers: [][2]string{{"content-type", "text/event-stream"}}, Chunks: pieces(s, 0)}
	}
}

func nativeGateway(t *testing.T, config string, ks *keystore, status int) *hosttest.Host {
	t.Helper()
	cfg := hosttest.Config{Plugin: New, PluginConfig: []byte(config), AllowOnHeadersStopIteration: true,
		Clusters: []string{"keystore"}, Upstream: nativeBackend(t, status)}
	if ks != nil {
		cfg.Callouts = hosttest.ServeCallouts(ks)
	}
	return hosttest.New(t, cfg)
}

func chat(body string, headers ...[2]string) hosttest.Request {
	return hosttest.Request{Method: "POST", Path: "/v1/chat/completions", Body: []byte(body),
		Headers: append([][2]string{{"content-type", "application/json"}}, headers...)}
}

var blue = [2]string{"x-team", "blue"}

func errCode(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &e), string(body))
	return e.Error.Code
}

func TestNativeJSONSettlesBeforeHeaders(t *testing.T) {
	ks := newKeystore(t)
	h := nativeGateway(t, staticConfig(10000, ""), ks, 200)
	res := h.Do(chat(chatJSON+`}`, blue))
	require.Equal(t, 200, res.Status, string(res.Body))
	assert.Equal(t, "9929", res.Header("x-ratelimit-remaining-tokens"), "headers waited for the settlement")
	assert.Equal(t, int64(71), ks.used(t, teamKey("blue"), hourly(10000)))
	l := meter.Labels{Model: "gpt-4o-mini", App: "blue"}
	assert.EqualValues(t, 43, h.Counter(meter.TokenMetrics(l)[0]))
	assert.EqualValues(t, 1, h.Counter(meter.RequestsMetric(l, meter.OutcomeSettled)))
	require.Len(t, h.Histogram(meter.EstimateErrorMetric("gpt-4o-mini")), 1)
	res = h.Do(chat(chatJSON+`}`, blue))
	assert.Equal(t, "9858", res.Header("x-ratelimit-remaining-tokens"))
}

func TestNativeStreamSettlesFromOnDone(t *testing.T) {
	ks := newKeystore(t)
	h := nativeGateway(t, staticConfig(10000, ""), ks, 200)
	b := newBackend(t)
	res := h.Do(chat(chatJSON+`,"stream":true}`, blue))
	require.Equal(t, 200, res.Status)
	assert.Equal(t, string(withoutUsageChunk(t, b.usage)), string(res.Body), "the injected usage chunk is removed")
	assert.Contains(t, string(res.Upstream.Body), `"include_usage":true`)
	assert.Equal(t, int64(71), ks.used(t, teamKey("blue"), hourly(10000)))
	assert.Equal(t, 1, ks.count(meter.PathSettle))
}

func TestNativeRefusals(t *testing.T) {
	t.Run("over the limit alone: no callout", func(t *testing.T) {
		ks := newKeystore(t)
		h := nativeGateway(t, staticConfig(200, ""), ks, 200)
		res := h.Do(chat(chatJSON+`}`, blue))
		assert.Equal(t, 429, res.Status)
		assert.Equal(t, meter.CodeRequestOverLimit, errCode(t, res.Body))
		assert.Nil(t, res.Upstream)
		assert.Zero(t, ks.count(meter.PathReserve))
	})
	t.Run("budget used up", func(t *testing.T) {
		ks := newKeystore(t)
		_, err := ks.eng.Consume(context.Background(), teamKey("blue"), hourly(1000), 900)
		require.NoError(t, err)
		h := nativeGateway(t, staticConfig(1000, ""), ks, 200)
		res := h.Do(chat(chatJSON+`}`, blue))
		assert.Equal(t, 429, res.Status)
		assert.Equal(t, meter.CodeQuotaExceeded, errCode(t, res.Body))
		assert.Equal(t, "100", res.Header("x-ratelimit-remaining-tokens"))
		assert.NotEmpty(t, res.Header("retry-after"))
		assert.Nil(t, res.Upstream)
	})
	t.Run("bad requests", func(t *testing.T) {
		ks := newKeystore(t)
		h := nativeGateway(t, staticConfig(10000, `, "max_request_bytes": 64`), ks, 200)
		for _, tt := range []struct {
			body   string
			status int
			code   string
		}{
			{`{"model":`, 400, "invalid_json"},
			{``, 400, meter.CodeBodyRequired},
			{chatJSON + `}`, 413, meter.CodeTooLarge},
		} {
			res := h.Do(chat(tt.body, blue))
			assert.Equal(t, tt.status, res.Status, tt.body)
			assert.Equal(t, tt.code, errCode(t, res.Body))
			assert.Nil(t, res.Upstream)
		}
		assert.Zero(t, ks.count(meter.PathReserve))
	})
}

func TestNativeReleases(t *testing.T) {
	t.Run("upstream error releases", func(t *testing.T) {
		ks := newKeystore(t)
		h := nativeGateway(t, staticConfig(10000, ""), ks, 503)
		res := h.Do(chat(chatJSON+`}`, blue))
		assert.Equal(t, 503, res.Status)
		assert.Equal(t, "10000", res.Header("x-ratelimit-remaining-tokens"))
		assert.Zero(t, ks.used(t, teamKey("blue"), hourly(10000)))
		assert.EqualValues(t, 1, h.Counter(meter.RequestsMetric(meter.Labels{Model: "gpt-4o-mini", App: "blue"}, meter.OutcomeReleased)))
	})
	t.Run("client gone while reserving", func(t *testing.T) {
		ks := newKeystore(t)
		h := nativeGateway(t, staticConfig(10000, ""), nil, 200)
		res := h.Do(chat(chatJSON+`}`, blue))
		require.True(t, res.Paused)
		res.Stream.End()
		c := h.Callouts()
		require.Len(t, c, 1)
		h.Respond(c[0].Token, hosttest.ServeCallouts(ks)(c[0]))
		c = h.Callouts()
		require.Len(t, c, 1, "the late reservation is released")
		assert.Equal(t, meter.PathRelease, c[0].Header(":path"))
		h.Respond(c[0].Token, hosttest.ServeCallouts(ks)(c[0]))
		assert.Zero(t, ks.used(t, teamKey("blue"), hourly(10000)))
	})
	t.Run("client gone mid-stream settles what was streamed", func(t *testing.T) {
		ks := newKeystore(t)
		h := nativeGateway(t, staticConfig(10000, ""), ks, 200)
		s := h.NewStream()
		s.SendRequest(chat(chatJSON+`,"stream":true}`, blue))
		require.NotNil(t, s.Upstream(), "reserved and sent upstream")
		s.ResponseHeaders([][2]string{{":status", "200"}, {"content-type", "text/event-stream"}}, false)
		for _, ev := range pieces(newBackend(t).usage, 0)[:10] {
			s.ResponseBody(ev, false)
		}
		assert.Greater(t, ks.used(t, teamKey("blue"), hourly(10000)), int64(256), "the whole reservation counts while streaming")
		s.End()
		used := ks.used(t, teamKey("blue"), hourly(10000))
		assert.Positive(t, used)
		assert.Less(t, used, int64(71), "less than the whole answer")
		assert.EqualValues(t, 1, h.Counter(meter.RequestsMetric(meter.Labels{Model: "gpt-4o-mini", App: "blue"}, meter.OutcomeAborted)))
	})
}

func TestNativeKeystoreDown(t *testing.T) {
	down := func(*hosttest.Callout) *hosttest.Response {
		return &hosttest.Response{Status: 503, Body: []byte(`{"error":{"message":"backend down"}}`)}
	}
	t.Run("fail closed", func(t *testing.T) {
		h := hosttest.New(t, hosttest.Config{Plugin: New, PluginConfig: []byte(staticConfig(10000, "")), AllowOnHeadersStopIteration: true,
			Callouts: down, Upstream: nativeBackend(t, 200)})
		res := h.Do(chat(chatJSON+`}`, blue))
		assert.Equal(t, 503, res.Status)
		assert.Equal(t, meter.CodeKeystoreError, errCode(t, res.Body))
		assert.Nil(t, res.Upstream)
		assert.EqualValues(t, 1, h.Counter(meter.KeystoreErrorsMetric(meter.OpReserve)))
	})
	t.Run("fail open records afterwards", func(t *testing.T) {
		ks := newKeystore(t)
		serve := hosttest.ServeCallouts(ks)
		h := hosttest.New(t, hosttest.Config{Plugin: New, PluginConfig: []byte(staticConfig(10000, `, "failure_mode": "open"`)), AllowOnHeadersStopIteration: true,
			Upstream: nativeBackend(t, 200), Callouts: func(c *hosttest.Callout) *hosttest.Response {
				if c.Header(":path") == meter.PathReserve {
					return down(c)
				}
				return serve(c)
			}})
		res := h.Do(chat(chatJSON+`}`, blue))
		require.Equal(t, 200, res.Status)
		assert.Empty(t, res.Header("x-ratelimit-limit-tokens"))
		assert.Equal(t, int64(71), ks.used(t, teamKey("blue"), hourly(10000)))
		assert.EqualValues(t, 1, h.Counter(meter.RequestsMetric(meter.Labels{Model: "gpt-4o-mini", App: "blue"}, meter.OutcomeFailOpen)))
	})
	t.Run("a failed settle is queued and retried on the tick", func(t *testing.T) {
		ks := newKeystore(t)
		serve := hosttest.ServeCallouts(ks)
		settleDown := true
		h := hosttest.New(t, hosttest.Config{Plugin: New, PluginConfig: []byte(staticConfig(10000, "")), AllowOnHeadersStopIteration: true,
			Upstream: nativeBackend(t, 200), Callouts: func(c *hosttest.Callout) *hosttest.Response {
				if c.Header(":path") == meter.PathSettle && settleDown {
					return down(c)
				}
				return serve(c)
			}})
		res := h.Do(chat(chatJSON+`,"stream":true}`, blue))
		require.Equal(t, 200, res.Status)
		assert.EqualValues(t, 1, h.Counter(meter.SettleQueueMetric(meter.QueueQueued)))
		assert.NotZero(t, h.TickPeriod())
		settleDown = false
		for range 20 {
			h.Tick()
			if h.Counter(meter.SettleQueueMetric(meter.QueueDelivered)) > 0 {
				break
			}
		}
		assert.EqualValues(t, 1, h.Counter(meter.SettleQueueMetric(meter.QueueDelivered)))
		assert.Equal(t, int64(71), ks.used(t, teamKey("blue"), hourly(10000)))
	})
}

func TestNativeUnmetered(t *testing.T) {
	ks := newKeystore(t)
	h := nativeGateway(t, `{}`, ks, 200)
	res := h.Do(chat(chatJSON + `,"stream":true}`))
	require.Equal(t, 200, res.Status)
	assert.Empty(t, res.Header("x-ratelimit-limit-tokens"))
	l := meter.Labels{Model: "gpt-4o-mini", App: "_"}
	assert.EqualValues(t, 1, h.Counter(meter.RequestsMetric(l, meter.OutcomeUnmetered)))
	for _, r := range []hosttest.Request{{Method: "GET", Path: "/v1/models"}, {Method: "POST", Path: "/v1/other", Body: []byte("x")}} {
		assert.Equal(t, 200, h.Do(r).Status, r.Path)
	}
	assert.Zero(t, ks.count(meter.PathReserve))
	_, err := hosttest.Start(t, hosttest.Config{Plugin: New, PluginConfig: []byte(`{"nope":1}`)})
	assert.Error(t, err)
}
