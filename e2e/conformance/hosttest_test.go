//go:build !wasip1

package conformance

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/proxywasm/conformance/plugin"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

// nativeGateway runs the conformance plugin natively on
// shared/proxywasm/hosttest, two workers of one Envoy, so the in-memory host
// that filters' glue tests use is held to the same table as real Envoy.
// Time does not pass in hosttest: before each request every worker whose
// plugin asked for ticks gets one, as a running Envoy would have given.
type nativeGateway struct {
	workers [2]*hosttest.Host
}

func startNative(t *testing.T) *nativeGateway {
	return startNativeAs(t, plugin.New, "conformance", pluginConfig)
}

// startNativeAs runs a conformance root context under a root_id with a configuration.
func startNativeAs(t *testing.T, f func(uint32) proxywasm.PluginContext, rootID, config string) *nativeGateway {
	t.Helper()
	echoHandler := envoytest.EchoHandler("echo")
	h := hosttest.New(t, hosttest.Config{
		Plugin: f, PluginName: "conformance", RootID: rootID, VMID: "conformance",
		PluginConfig: []byte(config), AllowOnHeadersStopIteration: true,
		Clusters: []string{"callout"}, Callouts: hosttest.ServeCallouts(echoHandler),
		Upstream: hosttest.ServeUpstream(echoHandler),
	})
	return &nativeGateway{workers: [2]*hosttest.Host{h, h.NewWorker(t)}}
}

func (g *nativeGateway) Do(t *testing.T, w int, r request) response {
	t.Helper()
	for _, h := range g.workers {
		if h.TickPeriod() > 0 {
			h.Tick()
		}
	}
	req := hosttest.Request{Method: r.Method, Path: r.Path}
	if r.Body != "" {
		req.Body = []byte(r.Body)
	}
	for k, v := range r.Header {
		req.Headers = append(req.Headers, [2]string{strings.ToLower(k), v})
	}
	res := g.workers[w].Do(req)
	if res.Paused {
		t.Fatalf("request %s %s left paused", r.Method, r.Path)
	}
	hdr := http.Header{}
	for _, kv := range res.Headers {
		if !strings.HasPrefix(kv[0], ":") {
			hdr.Add(kv[0], kv[1])
		}
	}
	return response{Status: res.Status, Header: hdr, Body: res.Body}
}

func (g *nativeGateway) Metric(t *testing.T, name string) (float64, bool) {
	t.Helper()
	h := g.workers[0]
	for _, m := range h.Metrics() {
		if m == name {
			return float64(h.Counter(name)), true
		}
	}
	return 0, false
}

func (g *nativeGateway) Logs(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for i, h := range g.workers {
		for _, l := range h.Logs() {
			b.WriteString(strconv.Itoa(i) + " " + l.Msg + "\n")
		}
	}
	return b.String()
}

func (g *nativeGateway) Routes() bool { return false }

// TestConformanceHosttest runs the table on the native in-memory host.
func TestConformanceHosttest(t *testing.T) {
	runCases(t, startNative(t))
}

// TestConformanceHosttestChained runs the table on the plugin as the only
// link of a chain.
func TestConformanceHosttestChained(t *testing.T) {
	runCases(t, startNativeAs(t, plugin.NewChained(), plugin.ChainRootID, plugin.ChainConfig(pluginConfig)))
}
