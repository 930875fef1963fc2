// Package modelroute tests the modelroute filter (build/modelroute.wasm) in
// real Envoy: routing by body model, alias rewrites, weighted and sticky
// splits, per-product access, client errors, body limits, HTTP/2 trailers,
// response mapping and metrics. The benchmark compares it with bare Envoy.
package modelroute

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/filters/modelroute/route"
)

// routingHeader is the header the filter sets and the routes match.
const routingHeader = "x-tollgate-model"

// filterConfig is the plugin configuration of the functional tests: two
// pools behind two clusters, the seed deployment's gemma with an alias and a
// backend name, a 90/10 split and a 6 MiB body limit.
const filterConfig = `{
  "sticky_header": "x-session-id",
  "max_body_bytes": 6291456,
  "default_priority": "standard",
  "models": [
    {"name": "gemma-3-1b-it", "aliases": ["gemma"], "backend_model": "/gcs/google/gemma-3-1b-it",
     "route": "pool-a", "map_response_model": true},
    {"name": "qwen-2.5-7b", "route": "pool-b"},
    {"name": "llama-3.1-8b", "targets": [{"route": "pool-a", "weight": 90}, {"route": "pool-b", "weight": 10}]}
  ],
  "products": {"gold": {"priority": "critical"}}
}`

// modelrouteFilter is the Wasm filter entry for cfg.
func modelrouteFilter(t testing.TB, cfg string) envoytest.WasmFilter {
	t.Helper()
	return envoytest.WasmFilter{
		Name:                        "modelroute",
		RootID:                      "modelroute",
		VMID:                        "modelroute",
		WasmPath:                    envoytest.WasmPath(t, "modelroute"),
		Configuration:               cfg,
		AllowOnHeadersStopIteration: true,
	}
}

// statsTags converts the filter's stats tags for the harness.
func statsTags() []envoytest.StatsTag {
	var out []envoytest.StatsTag
	for _, st := range route.StatsTags() {
		out = append(out, envoytest.StatsTag{Name: st.Name, Regex: st.Regex})
	}
	return out
}

// poolRoutes sends pool-a and pool-b to their clusters and anything else
// (requests without a body) to cluster a.
func poolRoutes() []envoytest.Route {
	return []envoytest.Route{
		{Prefix: "/", Headers: []envoytest.HeaderMatch{{Name: routingHeader, Exact: "pool-a"}}, Cluster: "a"},
		{Prefix: "/", Headers: []envoytest.HeaderMatch{{Name: routingHeader, Exact: "pool-b"}}, Cluster: "b"},
		{Prefix: "/", Cluster: "a"},
	}
}

// fakeLLM answers like an OpenAI-compatible server: a chat completion (or an
// SSE stream when the body asks for one) naming the model it received.
func fakeLLM() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model       string `json:"model"`
			Stream      bool   `json:"stream"`
			ResponsePad int    `json:"response_pad"` // test knob: pad the answer to about this size
		}
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &req)
		model, _ := json.Marshal(req.Model)
		if req.Stream {
			w.Header().Set("content-type", "text/event-stream")
			for _, piece := range []string{"Hel", "lo"} {
				fmt.Fprintf(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":%s,\"choices\":[{\"delta\":{\"content\":%q}}]}\n\n", model, piece)
				if f, ok := w.(http.Flusher); ok {
					f.Flush()
				}
			}
			fmt.Fprint(w, "data: [DONE]\n\n")
			return
		}
		w.Header().Set("content-type", "application/json")
		fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","model":%s,"choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],"received_bytes":%d,"pad":"%s"}`,
			model, len(body), strings.Repeat("p", min(req.ResponsePad, 8<<20)))
	})
}

// result is one response as a test sees it.
type result struct {
	status   int
	proto    string // protocol of the downstream response
	upstream string // x-upstream: which cluster answered ("" for a local reply)
	header   http.Header
	body     []byte
}

// post sends a JSON POST with extra headers and reads the whole answer.
func post(t testing.TB, c *http.Client, url string, body []byte, hdr map[string]string) result {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("content-type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return do(t, c, req)
}

func do(t testing.TB, c *http.Client, req *http.Request) result {
	t.Helper()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return result{status: resp.StatusCode, proto: resp.Proto, upstream: resp.Header.Get("x-upstream"), header: resp.Header, body: b}
}

// chat builds a chat completion body for model.
func chat(model string) []byte {
	b, _ := json.Marshal(map[string]any{
		"model":    model,
		"messages": []any{map[string]any{"role": "user", "content": "hello"}},
	})
	return b
}

// apiError decodes an OpenAI-style error body.
func apiError(t testing.TB, body []byte) (code, typ, msg string) {
	t.Helper()
	var e struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    string `json:"code"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &e), "error body %q", body)
	return e.Error.Code, e.Error.Type, e.Error.Message
}
