//go:build !wasip1

package hello

// Native tests of filter.go: the plugin runs in the test binary on
// shared/proxywasm/hosttest (Envoy's behaviours, in memory), so the glue is
// covered and debuggable. e2e/hello runs the built module in real Envoy.

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/examples/filter/hello/greet"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

func TestHello(t *testing.T) {
	h := hosttest.New(t, hosttest.Config{Plugin: New, PluginConfig: []byte(`{"greeting":"hi","deny_prefixes":["/private"]}`)})

	tests := []struct {
		name       string
		req        hosttest.Request
		status     int
		toUpstream string // x-hello the upstream sees; "" when it is never reached
	}{
		{"identified caller", hosttest.Request{Path: "/v1/models", Headers: [][2]string{{greet.AppHeader, "demo"}}}, 200, "hi, demo"},
		{"stranger", hosttest.Request{Path: "/"}, 200, "hi, stranger"},
		{"client's own x-hello is replaced", hosttest.Request{Headers: [][2]string{{"x-hello", "spoof"}}}, 200, "hi, stranger"},
		{"denied path", hosttest.Request{Path: "/private/data"}, 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := h.Do(tt.req)
			require.Equal(t, tt.status, res.Status, string(res.Body))
			if tt.toUpstream == "" {
				assert.Nil(t, res.Upstream)
				assert.True(t, res.LocalReply)
				assert.JSONEq(t, `{"error":{"message":"this path is not open to callers","type":"permission_error","param":null,"code":"path_denied"}}`, string(res.Body))
				assert.Empty(t, res.Header("x-hello"))
				return
			}
			assert.Equal(t, tt.toUpstream, res.Upstream.Header("x-hello"))
			assert.Equal(t, "hi", res.Header("x-hello"))
		})
	}
	assert.EqualValues(t, 3, h.Counter(greet.MetricGreeted))
	assert.EqualValues(t, 1, h.Counter(greet.MetricDenied))
}

func TestBadConfigIsRefused(t *testing.T) {
	_, err := hosttest.Start(t, hosttest.Config{Plugin: New, PluginConfig: []byte(`{"greting":"typo"}`)})
	assert.ErrorContains(t, err, "unknown field")
}
