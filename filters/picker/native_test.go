//go:build !wasip1

package picker

// Native tests of filter.go on shared/proxywasm/hosttest: picks, the EPP
// header contract, local replies and the leased /metrics poller, with the
// glue running in the test binary; e2e/picker runs the module in real Envoy.

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/picker/pick"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

const epA, epB = "10.0.0.1:8000", "10.0.0.2:8000"

const nativeConfig = `{"scrape_cluster":"sim","scrape_interval":"50ms","pools":[{"name":"pool","models":["m"],
	"endpoints":[{"address":"` + epA + `"},{"address":"` + epB + `"}]}]}`

func pickerHost(t *testing.T, metrics func(*hosttest.Callout) *hosttest.Response) *hosttest.Host {
	t.Helper()
	return hosttest.New(t, hosttest.Config{Plugin: New, PluginConfig: []byte(nativeConfig), AllowOnHeadersStopIteration: true,
		Clusters: []string{"sim"}, Callouts: metrics})
}

func chat(model string, headers ...[2]string) hosttest.Request {
	return hosttest.Request{Method: "POST", Path: "/v1/chat/completions",
		Headers: append([][2]string{{"content-type", "application/json"}}, headers...),
		Body:    []byte(`{"model":"` + model + `","messages":[{"role":"user","content":"hello there"}]}`)}
}

func TestNativePick(t *testing.T) {
	vllm, err := os.ReadFile("scrape/testdata/vllm.txt")
	require.NoError(t, err)
	scraped := map[string]int{}
	h := pickerHost(t, func(c *hosttest.Callout) *hosttest.Response {
		scraped[c.Header(":authority")]++
		if c.Header(":authority") == epB {
			return &hosttest.Response{Status: 500}
		}
		return &hosttest.Response{Headers: [][2]string{{"content-type", "text/plain"}}, Body: vllm}
	})
	require.NotZero(t, h.TickPeriod(), "the poller runs on the tick")

	t.Run("a pick sets the EPP header, never the client's", func(t *testing.T) {
		res := h.Do(chat("m", [2]string{pick.DefaultDestinationHeader, "6.6.6.6:1"}))
		require.Equal(t, 200, res.Status, string(res.Body))
		dest := res.Upstream.Header(pick.DefaultDestinationHeader)
		primary, _, _ := strings.Cut(dest, ",")
		assert.Contains(t, []string{epA, epB}, primary)
		assert.NotContains(t, dest, "6.6.6.6")
		assert.NotEmpty(t, res.Upstream.Header(pick.DefaultReasonHeader))
		assert.EqualValues(t, 1, h.Counter(metricName("picks", epA))+h.Counter(metricName("picks", epB)))
	})

	t.Run("the tick scrapes every endpoint through the scrape cluster", func(t *testing.T) {
		h.Tick()
		assert.Equal(t, 1, scraped[epA])
		assert.Equal(t, 1, scraped[epB])
		assert.EqualValues(t, 7, h.Gauge(metricName("waiting", epA)))
		assert.EqualValues(t, 437, h.Gauge(metricName("kv_cache_permille", epA)))
		assert.EqualValues(t, 1, h.Counter(metricName("scrape_errors", epB)))
		assert.True(t, h.Logged("picker: scrape "+epB+" failed"))
	})

	t.Run("a subset hint matching nothing is a JSON 503", func(t *testing.T) {
		res := h.Do(chat("m", [2]string{pick.DefaultSubsetHeader, "9.9.9.9"}))
		assert.Equal(t, 503, res.Status, string(res.Body))
		assert.Nil(t, res.Upstream)
		assert.EqualValues(t, 1, h.Counter("tollgate_picker.decisions."+pick.ReasonNoEligible))
	})

	t.Run("malformed JSON is a 400", func(t *testing.T) {
		res := h.Do(hosttest.Request{Method: "POST", Path: "/v1/chat/completions",
			Headers: [][2]string{{"content-type", "application/json"}}, Body: []byte(`{"model":`)})
		assert.Equal(t, 400, res.Status, string(res.Body))
		assert.Nil(t, res.Upstream)
	})

	t.Run("a request without a JSON body is picked from headers", func(t *testing.T) {
		res := h.Do(hosttest.Request{Path: "/v1/models", Headers: [][2]string{{pick.DefaultPoolHeader, "pool"}}})
		assert.Equal(t, 200, res.Status, string(res.Body))
		assert.NotEmpty(t, res.Upstream.Header(pick.DefaultDestinationHeader))
	})

	t.Run("bad configuration is refused", func(t *testing.T) {
		_, err := hosttest.Start(t, hosttest.Config{Plugin: New, PluginConfig: []byte(`{"pools":[]}`)})
		assert.Error(t, err)
	})
}
