// Package conformance runs one table of proxy-wasm behaviours, driven by the
// conformance plugin, against two hosts: real Envoy and the wazero host.
// Where Envoy differs from the spec, the wazero host must follow Envoy, and
// these cases are where that is checked.
package conformance

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// request is one client request, host-neutral.
type request struct {
	Method string
	Path   string
	Header map[string]string
	Body   string
}

// response is what the client got back.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// gateway is a host running the conformance plugin in front of an echo upstream.
type gateway interface {
	// Do sends r through worker w (0 or 1): a distinct VM per worker.
	Do(t *testing.T, w int, r request) response
	// Metric reads a plugin metric by its name as the plugin defined it.
	Metric(t *testing.T, name string) (float64, bool)
	// Logs returns what the plugin logged so far.
	Logs(t *testing.T) string
	// Routes reports whether the host re-selects routes (Envoy does; the wazero host only counts clear_route_cache).
	Routes() bool
}

const pluginConfig = `{"callout_cluster":"callout","tick_ms":20}`

func get(path string) request { return request{Method: "GET", Path: path} }

// echo decodes the upstream's echo of the request it received.
func echo(t *testing.T, r response) envoytest.Echo {
	t.Helper()
	require.Equal(t, 200, r.Status, "body: %s", r.Body)
	var e envoytest.Echo
	require.NoError(t, json.Unmarshal(r.Body, &e), "body: %s", r.Body)
	return e
}

func local(t *testing.T, r response, status int) map[string]any {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Body)
	assert.Equal(t, "local", r.Header.Get("x-conformance"))
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &m), "body: %s", r.Body)
	return m
}

// cases is the shared table. Each runs on both hosts.
var cases = []struct {
	name string
	run  func(t *testing.T, g gateway)
}{
	{"request headers added, removed and replaced are seen upstream", func(t *testing.T, g gateway) {
		e := echo(t, g.Do(t, 0, request{Method: "GET", Path: "/headers", Header: map[string]string{"x-conf-remove": "gone", "x-conf-replace": "old"}}))
		assert.Equal(t, "yes", e.Headers["x-conf-added"])
		assert.Equal(t, "replaced", e.Headers["x-conf-replace"])
		assert.NotContains(t, e.Headers, "x-conf-remove")
	}},
	{"whole header map read and written back", func(t *testing.T, g gateway) {
		e := echo(t, g.Do(t, 0, request{Method: "GET", Path: "/headers/all", Header: map[string]string{"x-a": "1"}}))
		assert.Equal(t, "1", e.Headers["x-a"])
		assert.NotEmpty(t, e.Headers["x-conf-set-all"])
	}},
	{"response header added on the way back", func(t *testing.T, g gateway) {
		r := g.Do(t, 0, get("/headers"))
		assert.Equal(t, "seen", r.Header.Get("x-conf-response"))
	}},
	{"missing header is ErrNotFound, empty header is empty", func(t *testing.T, g gateway) {
		m := local(t, g.Do(t, 0, request{Method: "GET", Path: "/zero", Header: map[string]string{"x-conf-empty": ""}}), 200)
		assert.Equal(t, true, m["missing_not_found"])
		assert.Equal(t, "", m["empty_value"])
		assert.Equal(t, "ok", m["empty_err"])
	}},
	{"request body buffered and rewritten", func(t *testing.T, g gateway) {
		e := echo(t, g.Do(t, 0, request{Method: "POST", Path: "/body/rewrite", Body: "hello world"}))
		assert.Equal(t, "HELLO WORLD|size=11", e.Body)
	}},
	{"request body appended", func(t *testing.T, g gateway) {
		e := echo(t, g.Do(t, 0, request{Method: "POST", Path: "/body/append", Body: "abc"}))
		assert.Equal(t, "abc+appended", e.Body)
	}},
	{"request body prepended", func(t *testing.T, g gateway) {
		e := echo(t, g.Do(t, 0, request{Method: "POST", Path: "/body/prepend", Body: "abc"}))
		assert.Equal(t, "prepended+abc", e.Body)
	}},
	{"response body buffered and replaced", func(t *testing.T, g gateway) {
		r := g.Do(t, 0, get("/response/rewrite"))
		require.Equal(t, 200, r.Status)
		var m map[string]any
		require.NoError(t, json.Unmarshal(r.Body, &m), "body: %s", r.Body)
		assert.Equal(t, true, m["rewritten"])
		assert.Greater(t, m["original_bytes"], 0.0)
		assert.Equal(t, m["original_bytes"], m["callback_size"])
	}},
	{"local response with headers and JSON body", func(t *testing.T, g gateway) {
		r := g.Do(t, 0, get("/local"))
		m := local(t, r, 418)
		assert.Equal(t, "1", r.Header.Get("x-conf-local"))
		assert.Equal(t, "application/json", r.Header.Get("content-type"))
		assert.Equal(t, "yes", m["teapot"])
		// Envoy runs the filter's response callbacks on its own local reply.
		assert.Equal(t, "seen", r.Header.Get("x-conf-response"))
	}},
	{"callout to a cluster resumes the paused request", func(t *testing.T, g gateway) {
		e := echo(t, g.Do(t, 0, get("/callout")))
		assert.Equal(t, "200", e.Headers["x-callout-status"])
		assert.NotEqual(t, "0", e.Headers["x-callout-body-bytes"])
		assert.Equal(t, "/callout", e.Path)
	}},
	{"callout to an unknown cluster fails synchronously", func(t *testing.T, g gateway) {
		m := local(t, g.Do(t, 0, get("/callout/unknown-cluster")), 502)
		assert.Contains(t, m["err"], "bad argument")
	}},
	{"shared data set and get", func(t *testing.T, g gateway) {
		local(t, g.Do(t, 0, get("/shared/set?key=sg&value=v1")), 200)
		m := local(t, g.Do(t, 1, get("/shared/get?key=sg")), 200)
		assert.Equal(t, "v1", m["value"])
		local(t, g.Do(t, 0, get("/shared/get?key=never-set")), 404)
	}},
	{"shared-data CAS conflict between two workers", func(t *testing.T, g gateway) {
		local(t, g.Do(t, 0, get("/shared/set?key=cas&value=a")), 200)
		r0 := local(t, g.Do(t, 0, get("/cas/read?key=cas")), 200)
		r1 := local(t, g.Do(t, 1, get("/cas/read?key=cas")), 200)
		require.NotEqual(t, r0["vm"], r1["vm"], "the two requests must run in two VMs")
		// Worker 1 writes with a fresh cas and wins; worker 0's cas is now stale.
		w1 := local(t, g.Do(t, 1, get("/cas/write-stale?key=cas&value=b")), 200)
		assert.Equal(t, "ok", w1["err"])
		w0 := local(t, g.Do(t, 0, get("/cas/write-stale?key=cas&value=c")), 409)
		assert.Equal(t, "cas mismatch", w0["err"])
		m := local(t, g.Do(t, 0, get("/shared/get?key=cas")), 200)
		assert.Equal(t, "b", m["value"])
	}},
	{"counter increments and is readable", func(t *testing.T, g gateway) {
		g.Do(t, 0, get("/headers"))
		v, ok := g.Metric(t, "conformance_requests_total")
		require.True(t, ok, "metric conformance_requests_total not found")
		assert.GreaterOrEqual(t, v, 1.0)
		m := local(t, g.Do(t, 0, get("/metrics/value")), 200)
		assert.Greater(t, m["requests"], 0.0)
	}},
	{"tick fires", func(t *testing.T, g gateway) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			m := local(t, g.Do(t, 0, get("/ticks")), 200)
			if m["ticks"].(float64) > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("no tick within 10s")
			}
			time.Sleep(20 * time.Millisecond) // polling interval, bounded by the deadline
		}
	}},
	{"shared queue delivers to the registering VM", func(t *testing.T, g gateway) {
		m := local(t, g.Do(t, 1, get("/queue/put?vm_id=conformance&item=item-42")), 200)
		require.Equal(t, "ok", m["err"])
		deadline := time.Now().Add(5 * time.Second)
		for {
			m := local(t, g.Do(t, 0, get("/queue/last")), 200)
			if m["item"] == "item-42" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("queue item not delivered: %v", m)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}},
	{"properties readable", func(t *testing.T, g gateway) {
		m := local(t, g.Do(t, 0, get("/property")), 200)
		assert.Equal(t, "/property", m["request.path"])
		assert.Equal(t, "conformance", m["plugin_name"])
	}},
	{"unknown foreign function is not found", func(t *testing.T, g gateway) {
		m := local(t, g.Do(t, 0, get("/foreign/unknown")), 200)
		assert.Equal(t, "proxy-wasm: not found", m["err"])
	}},
	{"clear_route_cache after a header change", func(t *testing.T, g gateway) {
		e := echo(t, g.Do(t, 0, get("/route?target=b")))
		assert.Equal(t, "ok", e.Headers["x-conf-route-cleared"])
		assert.Equal(t, "b", e.Headers["x-conf-target"])
		if g.Routes() {
			assert.Equal(t, "b", e.Headers["x-routed-to"], "Envoy must re-select the route")
		}
	}},
	{"log line reaches the host", func(t *testing.T, g gateway) {
		local(t, g.Do(t, 0, get("/log?m=marker-7731")), 200)
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(g.Logs(t), "conformance-log-marker marker-7731") {
			if time.Now().After(deadline) {
				t.Fatal("log line not found")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}},
	{"panic in headers becomes a 500 and the VM keeps serving", func(t *testing.T, g gateway) {
		for w := 0; w < 2; w++ {
			r := g.Do(t, w, get("/panic"))
			require.Equal(t, 500, r.Status)
			assert.JSONEq(t, `{"error":{"message":"internal error in a gateway filter","type":"server_error","param":null,"code":"filter_panic"}}`, string(r.Body))
			assert.Equal(t, "application/json", r.Header.Get("content-type"))
			e := echo(t, g.Do(t, w, get("/headers")))
			assert.Equal(t, "yes", e.Headers["x-conf-added"])
		}
	}},
	{"panic in the body callback becomes a 500", func(t *testing.T, g gateway) {
		r := g.Do(t, 0, request{Method: "POST", Path: "/panic/body", Body: "x"})
		require.Equal(t, 500, r.Status)
		assert.Contains(t, string(r.Body), "filter_panic")
		echo(t, g.Do(t, 0, request{Method: "POST", Path: "/body/append", Body: "y"}))
	}},
}

func runCases(t *testing.T, g gateway) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, g) })
	}
}
