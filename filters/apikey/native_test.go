//go:build !wasip1

package apikey

// Native tests of this file's glue: the plugin runs in the test binary on
// shared/proxywasm/hosttest, so main.go is covered and debuggable; the Wasm
// tests in main_test.go check the same behaviour in the built module.

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/apikey/policy"
	"github.com/tollgate/tollgate/shared/identity"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

// nativeHost loads the filter with config; ks answers keystore callouts
// (nil leaves them pending for Respond).
func nativeHost(t *testing.T, config string, ks *keystore) *hosttest.Host {
	t.Helper()
	cfg := hosttest.Config{Plugin: New, PluginConfig: []byte(config), RootID: "apikey", VMID: "apikey", Clusters: []string{"keystore"}}
	if ks != nil {
		cfg.Callouts = hosttest.ServeCallouts(ks)
	}
	return hosttest.New(t, cfg)
}

func nativeGet(h *hosttest.Host, path string, headers ...[2]string) *hosttest.Result {
	return h.Do(hosttest.Request{Path: path, Headers: headers})
}

func TestNativeVerify(t *testing.T) {
	ks := newKeystore()
	h := nativeHost(t, remoteConfig, ks)
	good := newKey(t)
	ks.grant(good)

	t.Run("missing key is a local 401", func(t *testing.T) {
		res := nativeGet(h, "/v1/models")
		assert.Equal(t, 401, res.Status)
		assert.True(t, res.LocalReply)
		assert.Nil(t, res.Upstream)
		assert.Equal(t, "missing_api_key", errorCode(t, res.Body))
		assert.Equal(t, `ApiKey realm="tollgate", header="x-api-key"`, res.Header("www-authenticate"))
		assert.Equal(t, "application/json", res.Header("content-type"))
	})

	t.Run("good key: stripped, identity set, spoof removed, then cached", func(t *testing.T) {
		res := nativeGet(h, "/v1/models", [2]string{"x-api-key", good}, [2]string{identity.HeaderApp, "spoof"})
		require.Equal(t, 200, res.Status, string(res.Body))
		up := res.Upstream
		require.NotNil(t, up)
		assert.Empty(t, up.Header("x-api-key"))
		assert.Equal(t, "demo", up.Header(identity.HeaderApp))
		n := 0
		for _, kv := range up.Headers {
			if kv[0] == identity.HeaderApp {
				n++
			}
		}
		assert.Equal(t, 1, n, "the client's identity header is gone")
		assert.Equal(t, "60/1minute/calendar;scope=chat", up.Header(identity.HeaderRequestQuota))
		assert.Equal(t, 1, ks.callsFor(good))

		res = nativeGet(h, "/v1/chat/completions", [2]string{"authorization", "Bearer " + good})
		require.Equal(t, 200, res.Status)
		assert.Empty(t, res.Upstream.Header("authorization"))
		assert.Equal(t, 1, ks.callsFor(good), "the second request is a cache hit")
		assert.Equal(t, uint64(1), h.Counter(policy.CacheMetric("hit")))
		assert.Equal(t, uint64(1), h.Counter(policy.CacheMetric("miss")))
	})

	t.Run("query key is cut from the path", func(t *testing.T) {
		res := nativeGet(h, "/v1/models?a=1&key="+good+"&b=2")
		require.Equal(t, 200, res.Status)
		assert.Equal(t, "/v1/models?a=1&b=2", res.Upstream.Header(":path"))
	})

	t.Run("path outside the product is 403", func(t *testing.T) {
		res := nativeGet(h, "/admin", [2]string{"x-api-key", good})
		assert.Equal(t, 403, res.Status)
		assert.Equal(t, "operation_not_allowed", errorCode(t, res.Body))
	})

	t.Run("unknown key is cached negatively", func(t *testing.T) {
		bad := newKey(t)
		for range 3 {
			res := nativeGet(h, "/v1/models", [2]string{"x-api-key", bad})
			assert.Equal(t, 401, res.Status)
			assert.Equal(t, "invalid_api_key", errorCode(t, res.Body))
		}
		assert.Equal(t, 1, ks.callsFor(bad))
	})

	t.Run("metrics by outcome", func(t *testing.T) {
		for o, want := range map[policy.Outcome]uint64{policy.Allowed: 3, policy.Missing: 1, policy.Invalid: 3, policy.Forbidden: 1} {
			assert.Equal(t, want, h.Counter(policy.RequestsMetric(o)), o.String())
		}
	})
}

// TestNativePausedStream holds the keystore's answer: the stream waits, the
// request map is gone once it resumes, and a stream that ends while waiting
// is forgotten by the gate.
func TestNativePausedStream(t *testing.T) {
	ks := newKeystore()
	good := newKey(t)
	ks.grant(good)
	h := nativeHost(t, remoteConfig, nil)

	res := nativeGet(h, "/v1/models", [2]string{"x-api-key", good})
	require.True(t, res.Paused, "the stream waits for the keystore")
	assert.Nil(t, res.Upstream)
	calls := h.Callouts()
	require.Len(t, calls, 1)
	c := calls[0]
	assert.Equal(t, "keystore", c.Cluster)
	assert.Equal(t, "POST", c.Header(":method"))
	assert.NotContains(t, string(c.Body), good, "the key never leaves in plain text")

	h.Respond(c.Token, hosttest.ServeCallouts(ks)(c))
	res = res.Stream.Finish()
	require.Equal(t, 200, res.Status)
	assert.Equal(t, "demo", res.Upstream.Header(identity.HeaderApp))

	// A second key: the client goes away before the answer.
	other := newKey(t)
	s := h.NewStream()
	s.SendRequest(hosttest.Request{Path: "/v1/models", Headers: [][2]string{{"x-api-key", other}}})
	require.Len(t, h.Callouts(), 1)
	s.End()
	c = h.Callouts()[0]
	h.Respond(c.Token, &hosttest.Response{Failed: true})
	assert.Equal(t, uint64(1), h.Counter(policy.CalloutsMetric("error")))

	// Two streams with one unknown key share one callout.
	bad := newKey(t)
	s1, s2 := h.NewStream(), h.NewStream()
	for _, s := range []*hosttest.Stream{s1, s2} {
		s.SendRequest(hosttest.Request{Path: "/v1/models", Headers: [][2]string{{"x-api-key", bad}}})
	}
	require.Len(t, h.Callouts(), 1, "concurrent misses coalesce")
	c = h.Callouts()[0]
	h.Respond(c.Token, hosttest.ServeCallouts(ks)(c))
	for _, s := range []*hosttest.Stream{s1, s2} {
		res := s.Finish()
		assert.Equal(t, 401, res.Status)
		assert.Nil(t, res.Upstream)
	}
}

func TestNativeKeystoreFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config string
		status int
	}{
		{"fail closed", `{"keystore":{"cluster":"keystore"}}`, 503},
		{"fail open", `{"keystore":{"cluster":"keystore"},"failure_mode":"open"}`, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks := newKeystore()
			ks.status = 500
			h := nativeHost(t, tc.config, ks)
			key := newKey(t)
			res := nativeGet(h, "/v1/models", [2]string{"x-api-key", key}, [2]string{identity.HeaderApp, "spoof"})
			assert.Equal(t, tc.status, res.Status, string(res.Body))
			if tc.status == 503 {
				assert.Equal(t, "keystore_unavailable", errorCode(t, res.Body))
				assert.Equal(t, "1", res.Header("retry-after"))
			} else {
				assert.Empty(t, res.Upstream.Header(identity.HeaderApp), "no identity when failing open")
				assert.Empty(t, res.Upstream.Header("x-api-key"))
			}
			nativeGet(h, "/v1/models", [2]string{"x-api-key", key})
			assert.Equal(t, 1, ks.callsFor(key), "the failure is shared for error_ttl")
			assert.Equal(t, uint64(2), h.Counter(policy.RequestsMetric(policy.KeystoreError)))
		})
	}

	t.Run("unknown cluster", func(t *testing.T) {
		h := nativeHost(t, `{"keystore":{"cluster":"missing"}}`, newKeystore())
		res := nativeGet(h, "/v1/models", [2]string{"x-api-key", newKey(t)})
		assert.Equal(t, 503, res.Status)
		assert.True(t, h.Logged("keystore callout"))
	})
}

func TestNativeModesAndConfig(t *testing.T) {
	key := "local-secret-key"
	cfg := `{"local":{"keys":[{"hash":"` + policy.HashKey(key) + `","app":"demo","products":["p"]}],
		"products":[{"name":"p","operations":[{"path":"/v1/**"}],"requestQuota":{"limit":5,"timeUnit":"minute"}}]}}`
	h := nativeHost(t, cfg, nil)
	res := nativeGet(h, "/v1/models", [2]string{"x-api-key", key})
	require.Equal(t, 200, res.Status, string(res.Body))
	assert.Equal(t, "5/1minute/calendar;scope=p", res.Upstream.Header(identity.HeaderRequestQuota))
	assert.Equal(t, 401, nativeGet(h, "/v1/models", [2]string{"x-api-key", "other"}).Status)
	assert.Equal(t, 403, nativeGet(h, "/v2/x", [2]string{"x-api-key", key}).Status)
	assert.Empty(t, h.Callouts())

	strip := nativeHost(t, `{"mode":"strip"}`, nil)
	res = nativeGet(strip, "/anything", [2]string{identity.HeaderApp, "x"}, [2]string{"x-other", "kept"})
	require.Equal(t, 200, res.Status)
	assert.Empty(t, res.Upstream.Header(identity.HeaderApp))
	assert.Equal(t, "kept", res.Upstream.Header("x-other"))

	for _, bad := range []string{`{"mode":"nope"}`, `{"cache":{"ttl":5}}`, `not json`} {
		_, err := hosttest.Start(t, hosttest.Config{Plugin: New, PluginConfig: []byte(bad)})
		assert.Error(t, err, bad)
	}
}
