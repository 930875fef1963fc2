// Package apikey tests the apikey filter (build/apikey.wasm) in real Envoy
// with two workers, in front of the real keystore (`tollgate serve`, driven
// by the CLI) and a loopback upstream: missing, bad, good, revoked and
// spoofed keys, path authorisation, bearer and query keys, keystore outages
// with fail-closed and fail-open, keystore restarts, identity stripping,
// coalescing of concurrent misses, metrics, and the added-latency benchmark.
//
// One Envoy serves every case through several listeners whose filter
// configurations differ; they share one Wasm VM per worker (one vm_id), so
// the module is compiled once.
package apikey

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/filters/apikey/policy"
)

// listener is an extra listener: its name and the apikey configurations of
// its filter chain, in order (more than one: e.g. a strip instance last).
type listener struct {
	name    string
	configs []string
}

// apikeyFilter is the Wasm filter entry for a plugin configuration.
func apikeyFilter(t testing.TB, name, config string) envoytest.WasmFilter {
	t.Helper()
	return envoytest.WasmFilter{
		Name:          name,
		RootID:        name,
		VMID:          "apikey",
		WasmPath:      envoytest.WasmPath(t, "apikey"),
		Configuration: config,
	}
}

func statsTags() []envoytest.StatsTag {
	var out []envoytest.StatsTag
	for _, st := range policy.StatsTags() {
		out = append(out, envoytest.StatsTag{Name: st.Name, Regex: st.Regex})
	}
	return out
}

// gateway is Envoy with the apikey filter and its listeners by name ("main"
// is the generated one).
type gateway struct {
	*envoytest.Envoy
	addrs map[string]string
}

// url returns the URL of path on a listener.
func (g *gateway) url(listener, path string) string { return "http://" + g.addrs[listener] + path }

// startGateway starts one Envoy: the main listener runs mainConfig, each
// extra listener its own chain; clusters "upstream" and every given cluster
// are defined.
func startGateway(t testing.TB, up *envoytest.Upstream, clusters []envoytest.Cluster, mainConfig string, extra ...listener) *gateway {
	t.Helper()
	filters := []envoytest.WasmFilter{apikeyFilter(t, "apikey", mainConfig)}
	env := envoytest.Start(t, envoytest.Config{
		Filters:   filters,
		Clusters:  append([]envoytest.Cluster{up.Cluster("upstream")}, clusters...),
		Routes:    []envoytest.Route{{Prefix: "/", Cluster: "upstream"}},
		StatsTags: statsTags(),
		Customize: func(b map[string]any) {
			sr := b["static_resources"].(map[string]any)
			listeners := sr["listeners"].([]any)
			main := listeners[0]
			generated := httpFilters(main)[0]
			for _, l := range extra {
				var chain []any
				for i, c := range l.configs {
					chain = append(chain, variant(t, generated, "apikey-"+l.name+"-"+strconv.Itoa(i), c))
				}
				listeners = append(listeners, cloneListener(t, main, l.name, chain))
			}
			sr["listeners"] = listeners
		},
	})
	g := &gateway{Envoy: env, addrs: map[string]string{"main": env.ListenerAddr()}}
	body, err := env.AdminGet("/listeners?format=json")
	require.NoError(t, err)
	var doc struct {
		ListenerStatuses []struct {
			Name         string `json:"name"`
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &doc))
	for _, l := range doc.ListenerStatuses {
		sa := l.LocalAddress.SocketAddress
		if l.Name != "main" && sa.PortValue != 0 {
			g.addrs[l.Name] = net.JoinHostPort(sa.Address, strconv.Itoa(sa.PortValue))
		}
	}
	for _, l := range extra {
		require.NotEmpty(t, g.addrs[l.name], "listener %s not bound", l.name)
	}
	return g
}

// variant copies the generated apikey filter entry with another name and
// plugin configuration (same vm_id and module, so the same VMs).
func variant(t testing.TB, filter any, name, config string) any {
	t.Helper()
	f := deepCopy(t, filter).(map[string]any)
	f["name"] = name
	plugin := f["typed_config"].(map[string]any)["config"].(map[string]any)
	plugin["name"] = name
	plugin["root_id"] = name
	plugin["configuration"] = map[string]any{"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config}
	return f
}

// httpFilters returns the HTTP filter list of a generated listener.
func httpFilters(listener any) []any {
	l := listener.(map[string]any)
	chain := l["filter_chains"].([]any)[0].(map[string]any)
	hcm := chain["filters"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)
	return hcm["http_filters"].([]any)
}

// cloneListener copies the main listener under a new name on a free port,
// with the given Wasm filters before the router.
func cloneListener(t testing.TB, main any, name string, filters []any) any {
	t.Helper()
	l := deepCopy(t, main).(map[string]any)
	l["name"] = name
	l["stat_prefix"] = "tollgate_" + name
	l["address"] = map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": 0}}
	chain := l["filter_chains"].([]any)[0].(map[string]any)
	hcm := chain["filters"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)
	old := hcm["http_filters"].([]any)
	router := old[len(old)-1]
	hcm["http_filters"] = append(filters, router)
	return l
}

func deepCopy(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var out any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

// newClients returns n clients, each with its own connection, so that
// Envoy's exact connection balancing spreads them over both workers.
func newClients(t testing.TB, n int) []*http.Client {
	t.Helper()
	out := make([]*http.Client, n)
	for i := range out {
		tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
		t.Cleanup(tr.CloseIdleConnections)
		out[i] = &http.Client{Timeout: 20 * time.Second, Transport: tr}
	}
	return out
}

// response is a read-back HTTP answer.
type response struct {
	StatusCode int
	Header     http.Header
	Body       string
}

// errorCode returns the OpenAI error code of a JSON error body.
func (r response) errorCode() string {
	var b struct {
		Error struct {
			Code string `json:"code"`
			Type string `json:"type"`
		} `json:"error"`
	}
	_ = json.Unmarshal([]byte(r.Body), &b)
	return b.Error.Code
}

// send issues a request and reads the whole answer; transport errors are returned.
func send(c *http.Client, method, url string, headers map[string]string) (response, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return response{}, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{StatusCode: resp.StatusCode, Header: resp.Header, Body: string(body)}, nil
}

// do is send that fails the test on a transport error.
func do(t testing.TB, c *http.Client, method, url string, headers map[string]string) response {
	t.Helper()
	r, err := send(c, method, url, headers)
	require.NoError(t, err)
	return r
}
