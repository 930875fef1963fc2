//go:build !wasip1

package quota

// Native tests of this file's glue on shared/proxywasm/hosttest: main.go runs
// in the test binary (covered, debuggable); keystore callouts reach the
// counter engine's real handler. main_test.go checks the built module.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/quota/policy"
	"github.com/tollgate/tollgate/keystore/analytics"
	"github.com/tollgate/tollgate/keystore/analytics/analyticstest"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

func nativeStart(t *testing.T, config string, ks *keystore) *hosttest.Host {
	t.Helper()
	cfg := hosttest.Config{Plugin: New, PluginConfig: []byte(config), RootID: "quota", VMID: "tollgate", Clusters: []string{"keystore"},
		Properties: map[string][]byte{"source.address": []byte("10.1.2.3:4567")}}
	if ks != nil {
		cfg.Callouts = hosttest.ServeCallouts(ks)
	}
	return hosttest.New(t, cfg)
}

func nativeDo(h *hosttest.Host, headers ...[2]string) *hosttest.Result {
	return h.Do(hosttest.Request{Method: "POST", Path: "/v1/chat/completions", Headers: headers})
}

func TestNativeModes(t *testing.T) {
	for _, mode := range []string{"strict", "local", "async"} {
		t.Run(mode, func(t *testing.T) {
			ks := newKeystore(t)
			h := nativeStart(t, config(mode, ""), ks)
			if mode == "async" {
				assert.NotZero(t, h.TickPeriod(), "async mode syncs on a tick")
			}
			allowed := 0
			for range 8 {
				res := nativeDo(h, [2]string{"x-user", "alice"})
				switch res.Status {
				case 200:
					allowed++
					require.NotNil(t, res.Upstream)
					assert.Equal(t, "5", res.Header("x-ratelimit-limit-requests"))
					assert.Equal(t, fmt.Sprint(5-allowed), res.Header("x-ratelimit-remaining-requests"))
					assert.NotEmpty(t, res.Header("x-ratelimit-reset-requests"))
				case 429:
					assert.True(t, res.LocalReply)
					assert.Nil(t, res.Upstream)
					e := decodeError(t, res.Body)
					assert.Equal(t, "rate_limit_exceeded", e.Error.Code)
					assert.Equal(t, "0", res.Header("x-ratelimit-remaining-requests"))
					assert.NotEmpty(t, res.Header("retry-after"))
				default:
					t.Fatalf("status %d: %s", res.Status, res.Body)
				}
			}
			assert.Equal(t, 5, allowed)
			m := map[string]policy.Mode{"strict": policy.Strict, "local": policy.Local, "async": policy.Async}[mode]
			assert.EqualValues(t, 5, h.Counter(policy.RequestsMetric(m, policy.Allowed)))
			assert.EqualValues(t, 3, h.Counter(policy.RequestsMetric(m, policy.Denied)))
			switch mode {
			case "strict":
				assert.EqualValues(t, 8, ks.calls.Load())
				assert.EqualValues(t, 5, ks.used(t, "hdr:x-user:alice", minute5))
			case "local":
				assert.Zero(t, ks.calls.Load())
			case "async":
				assert.Zero(t, ks.calls.Load(), "no request waits for the keystore")
				h.Tick()
				assert.EqualValues(t, 5, ks.used(t, "hdr:x-user:alice", minute5), "the tick pushed the local count")
				assert.Positive(t, h.Counter(policy.SyncsMetric("ok")))
			}
		})
	}
}

// TestNativeStrictWaits: a strict request waits for the keystore's answer and
// resumes (or is answered 429) from the callout callback.
func TestNativeStrictWaits(t *testing.T) {
	ks := newKeystore(t)
	// One request a minute: the configuration's quota with its limit lowered
	// (a second "quotas" key would be a duplicate, which is refused).
	h := nativeStart(t, strings.Replace(config("strict", ""), `"limit": 5`, `"limit": 1`, 1), nil)
	serve := hosttest.ServeCallouts(ks)
	for i, want := range []int{200, 429} {
		res := nativeDo(h, [2]string{"x-user", "bob"})
		require.True(t, res.Paused, "request %d waits for the keystore", i)
		c := h.Callouts()
		require.Len(t, c, 1)
		assert.Equal(t, "keystore", c[0].Cluster)
		h.Respond(c[0].Token, serve(c[0]))
		res = res.Stream.Finish()
		assert.Equal(t, want, res.Status, string(res.Body))
		assert.Equal(t, want == 200, res.Upstream != nil)
	}
}

func TestNativeKeySources(t *testing.T) {
	ks := newKeystore(t)
	h := nativeStart(t, config("strict", ""), ks)
	id := [][2]string{{"x-tollgate-app", "demo"}, {"x-tollgate-product", "gold"},
		{"x-tollgate-request-quota", "2/1minute/calendar;scope=gold"}, {"x-user", "ignored"}}
	for i := range 3 {
		res := nativeDo(h, id...)
		if i < 2 {
			require.Equal(t, 200, res.Status)
			assert.Equal(t, "2", res.Header("x-ratelimit-limit-requests"), "the tighter identity quota binds")
		} else {
			require.Equal(t, 429, res.Status)
		}
	}
	require.Equal(t, 200, nativeDo(h).Status)
	assert.EqualValues(t, 1, ks.used(t, "ip:10.1.2.3", minute5), "without identity or header: the client IP")
}

func TestNativeFailureModes(t *testing.T) {
	for _, tt := range []struct {
		name   string
		extra  string
		answer *hosttest.Response
		status int
	}{
		{"503 fail open", ``, &hosttest.Response{Status: 503}, 200},
		{"503 fail closed", `, "failure_mode": "closed"`, &hosttest.Response{Status: 503}, 503},
		{"reset fail closed", `, "failure_mode": "closed"`, &hosttest.Response{Failed: true}, 503},
		{"timeout fail open", ``, &hosttest.Response{Status: 504, Body: []byte("upstream request timeout")}, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := hosttest.New(t, hosttest.Config{Plugin: New, PluginConfig: []byte(config("strict", tt.extra)), Clusters: []string{"keystore"},
				Callouts: func(*hosttest.Callout) *hosttest.Response { return tt.answer }})
			res := nativeDo(h, [2]string{"x-user", "a"})
			require.Equal(t, tt.status, res.Status, string(res.Body))
			if tt.status == 503 {
				assert.Equal(t, "quota_unavailable", decodeError(t, res.Body).Error.Code)
				assert.Equal(t, "1", res.Header("retry-after"))
			} else {
				assert.Empty(t, res.Header("x-ratelimit-remaining-requests"))
			}
			assert.EqualValues(t, 1, h.Counter(policy.KeystoreErrorsMetric("consume")))
			assert.True(t, h.Logged("quota: keystore consume failed"))
		})
	}

	t.Run("unknown cluster fails open", func(t *testing.T) {
		h := nativeStart(t, config("strict", `, "keystore": {"cluster": "nowhere"}`), nil)
		assert.Equal(t, 200, nativeDo(h, [2]string{"x-user", "a"}).Status)
		assert.EqualValues(t, 1, h.Counter(policy.RequestsMetric(policy.Strict, policy.FailedOpen)))
	})
}

func TestNativeSpikeArrestAndConfig(t *testing.T) {
	h := nativeStart(t, `{"mode": "local", "key_sources": [{"header": "x-user"}], "spike_arrest": {"rate": "1ps"}}`, nil)
	require.Equal(t, 200, nativeDo(h, [2]string{"x-user", "a"}).Status)
	res := nativeDo(h, [2]string{"x-user", "a"})
	require.Equal(t, 429, res.Status)
	assert.Equal(t, "spike_arrest_violation", decodeError(t, res.Body).Error.Code)

	_, err := hosttest.Start(t, hosttest.Config{Plugin: New, PluginConfig: []byte(`{"quotas": [{"limit": 1, "timeUnit": "minute"}]}`)})
	assert.Error(t, err, "a configuration without key_sources is refused")
}

// TestNativeUsageRecordsForRefusals: with usage.enabled, every request quota
// refuses is queued as a usage record and posted to the keystore's
// analytics on a tick, with the caller's identity and the request id; the
// requests it lets through are left to tokencount.
func TestNativeUsageRecordsForRefusals(t *testing.T) {
	ks := newKeystore(t)
	mux, usage := analyticstest.Keystore(t, ks)
	cfg := hosttest.Config{Plugin: New, RootID: "quota", VMID: "tollgate", Clusters: []string{"keystore"},
		PluginConfig: []byte(config("local", `, "usage": {"enabled": true, "flush_interval": "100ms"}, "keystore": {"cluster": "keystore"}`)),
		Callouts:     hosttest.ServeCallouts(mux)}
	h := hosttest.New(t, cfg)
	assert.Equal(t, 100*time.Millisecond, h.TickPeriod())
	refused := 0
	for i := range 8 {
		res := nativeDo(h, [2]string{"x-tollgate-app", "chatbot"}, [2]string{"x-tollgate-developer", "ada@example.com"},
			[2]string{"x-tollgate-product", "chat"}, [2]string{"x-tollgate-key-id", "key_1"}, [2]string{"x-request-id", fmt.Sprintf("req-%d", i)})
		if res.Status == 429 {
			refused++
		}
	}
	require.Equal(t, 3, refused)
	h.Tick()
	now := time.Now()
	res, err := usage.Query(context.Background(), analytics.Query{From: now.Add(-time.Hour), To: now.Add(time.Minute), GroupBy: []string{analytics.DimApp, analytics.DimDeveloper}})
	require.NoError(t, err)
	assert.Equal(t, int64(3), res.Totals.Requests)
	assert.Equal(t, int64(3), res.Totals.Refused)
	assert.Equal(t, int64(3), res.Totals.Status4xx)
	require.Len(t, res.Series, 1)
	assert.Equal(t, analytics.Dims{App: "chatbot", Developer: "ada@example.com"}, res.Series[0].Group)

	h.Tick() // nothing new: nothing posted twice
	res, err = usage.Query(context.Background(), analytics.Query{From: now.Add(-time.Hour), To: now.Add(time.Minute)})
	require.NoError(t, err)
	assert.Equal(t, int64(3), res.Totals.Requests)
}
