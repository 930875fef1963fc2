package conformance

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/shared/wasmhost"
)

// wazeroGateway runs the conformance plugin in the Envoy-faithful wazero host
// with two VMs, standing for Envoy's two workers.
type wazeroGateway struct {
	host *wasmhost.Host
	vms  [2]*wasmhost.VM
}

func startWazero(t testing.TB) *wazeroGateway {
	t.Helper()
	ctx := context.Background()
	echoHandler := envoytest.EchoHandler("echo")
	host, err := wasmhost.NewHost(ctx, wasmhost.Config{
		ModulePath:                  envoytest.WasmPath(t, "conformance"),
		PluginName:                  "conformance",
		RootID:                      "conformance",
		VMID:                        "conformance",
		PluginConfig:                []byte(pluginConfig),
		AllowOnHeadersStopIteration: true,
		Clusters:                    map[string]http.Handler{"callout": echoHandler},
		Upstream:                    echoHandler,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = host.Close(ctx) })
	g := &wazeroGateway{host: host}
	for i := range g.vms {
		g.vms[i], err = host.NewVM(ctx)
		require.NoError(t, err)
	}
	return g
}

func (g *wazeroGateway) Do(t *testing.T, w int, r request) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://gateway.local"+r.Path, strings.NewReader(r.Body))
	require.NoError(t, err)
	if r.Body == "" {
		req.Body = http.NoBody
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	resp, err := g.vms[w].Do(ctx, req)
	require.NoError(t, err)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: resp.Body}
}

func (g *wazeroGateway) Metric(t *testing.T, name string) (float64, bool) {
	t.Helper()
	v, ok := g.host.Counter(name)
	return float64(v), ok
}

func (g *wazeroGateway) Logs(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, vm := range g.vms {
		for _, e := range vm.Logs() {
			b.WriteString(e.Message)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func (g *wazeroGateway) Routes() bool { return false }

func TestConformanceWazero(t *testing.T) {
	runCases(t, startWazero(t))
}
