// Package usage tests usage analytics end to end in real Envoy: quota and
// tokencount report usage records through shared/usagelog (a shared queue
// drained on the tick, posted in batches to the keystore's POST /v1/usage,
// retried until acknowledged) and the keystore's analytics API (`tollgate
// serve`, built by TestMain) shows what the clients and the model server
// saw, for a mixed run across a keystore restart in its middle.
package usage

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/internal/jsontest"
	"github.com/tollgate/tollgate/mockllm"
)

func TestMain(m *testing.M) { os.Exit(keystoretest.Main(m)) }

const dataToken = "e2e-usage-data-token-0123456789"

const keystoreBlock = `"keystore": {"cluster": "keystore", "timeout": "250ms", "token": "` + dataToken + `"}`

// quotaConfig allows each app 3 requests an hour (local mode: exact across
// workers) and reports its refusals every 100ms.
const quotaConfig = `{"mode": "local", "key_sources": [{"identity": true}], "identity_quota": false,
  "quotas": [{"limit": 3, "timeUnit": "hour"}], ` + keystoreBlock + `,
  "usage": {"enabled": true, "flush_interval": "100ms", "max_batch": 3}}`

// tokencountConfig gives each app a large token budget, except "tight"
// (20 tokens: any chat request is refused), and reports every metered request.
const tokencountConfig = `{"static_quota": {"header": "x-tollgate-app", "limit": 1000000, "time_unit": "hour",
    "overrides": {"tight": {"limit": 20, "time_unit": "hour"}}}, ` + keystoreBlock + `,
  "usage": {"enabled": true, "flush_interval": "100ms", "max_batch": 4}}`

const cutHeader = "x-test-cut"

// cutWriter lets the first event of a stream through, then holds the rest
// until the client has gone, so the gateway sees an aborted stream.
type cutWriter struct {
	http.ResponseWriter
	ctx    context.Context
	writes int
}

func (w *cutWriter) Write(p []byte) (int, error) {
	w.writes++
	if w.writes > 1 {
		<-w.ctx.Done()
		return 0, w.ctx.Err()
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the real writer's Flush.
func (w *cutWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type run struct {
	t      *testing.T
	gw     *envoytest.Envoy
	n      int
	tokens map[string]int64 // per app: total tokens the model server reported
	status map[string][]int // per app: statuses the clients got
}

func (r *run) request(app, body string, headers ...string) *http.Response {
	r.t.Helper()
	r.n++
	req, err := http.NewRequest(http.MethodPost, r.gw.URL("/v1/chat/completions"), strings.NewReader(body))
	require.NoError(r.t, err)
	req.Header.Set("content-type", "application/json")
	req.Header.Set("x-tollgate-app", app)
	req.Header.Set("x-tollgate-developer", app+"@example.com")
	req.Header.Set("x-tollgate-product", "chat")
	req.Header.Set("x-request-id", fmt.Sprintf("%s-%d", app, r.n))
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := r.gw.Client().Do(req)
	require.NoError(r.t, err)
	r.status[app] = append(r.status[app], resp.StatusCode)
	return resp
}

// json sends a chat request and adds the usage the model server reported.
func (r *run) json(app string) {
	r.t.Helper()
	resp := r.request(app, `{"model": "gemma-3-1b-it", "max_tokens": 40, "messages": [{"role": "user", "content": "Say something short."}]}`)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(r.t, err)
	if resp.StatusCode == http.StatusOK {
		total := jsontest.Get(body, "usage.total_tokens").Int()
		require.Positive(r.t, total, "%s", body)
		r.tokens[app] += total
	}
}

// stream sends a streamed chat request with usage and adds the usage the
// model server reported in its last chunk.
func (r *run) stream(app string) {
	r.t.Helper()
	resp := r.request(app, `{"model": "gemma-3-1b-it", "max_tokens": 40, "stream": true, "stream_options": {"include_usage": true},
	  "messages": [{"role": "user", "content": "Count to five."}]}`)
	defer resp.Body.Close()
	require.Equal(r.t, http.StatusOK, resp.StatusCode)
	var total int64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && data != "[DONE]" {
			if u := jsontest.Get([]byte(data), "usage.total_tokens").Int(); u > 0 {
				total = u
			}
		}
	}
	require.NoError(r.t, sc.Err())
	require.Positive(r.t, total, "the stream carried the usage chunk")
	r.tokens[app] += total
}

// cut starts a streamed request and leaves after its first event.
func (r *run) cut(app string) {
	r.t.Helper()
	resp := r.request(app, `{"model": "gemma-3-1b-it", "max_tokens": 40, "stream": true, "messages": [{"role": "user", "content": "Tell a long story."}]}`, cutHeader, "1")
	require.Equal(r.t, http.StatusOK, resp.StatusCode)
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(r.t, err)
	require.True(r.t, strings.HasPrefix(line, "data: "), line)
	resp.Body.Close() // the client goes away mid-stream
}

// analytics reads the admin analytics API.
func analytics(t *testing.T, ks *keystoretest.Server, query string) ([]byte, bool) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, ks.AdminURL()+"/admin/v1/analytics/usage?"+query, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+ks.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return body, err == nil && resp.StatusCode == http.StatusOK
}

// TestMixedRunAcrossKeystoreRestart: JSON, streamed, aborted and refused
// requests (refused by quota, by tokencount's budget, and 503 while the
// keystore is down) all reach analytics once, with the model server's own
// token counts, by app and developer, including the records made while the
// keystore was down (queued in the VMs and retried after its restart).
func TestMixedRunAcrossKeystoreRestart(t *testing.T) {
	ks := keystoretest.Start(t, keystoretest.Options{DataToken: dataToken, Args: []string{"--log-level", "warn"}})
	mock := mockllm.New(mockllm.Options{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get(cutHeader) != "" {
			w = &cutWriter{ResponseWriter: w, ctx: req.Context()}
		}
		mock.ServeHTTP(w, req)
	}))
	t.Cleanup(up.Close)
	gw := envoytest.Start(t, envoytest.Config{
		Filters: []envoytest.WasmFilter{
			{Name: "quota", RootID: "quota", VMID: "usage-quota", WasmPath: envoytest.WasmPath(t, "quota"), Configuration: quotaConfig},
			{Name: "tokencount", RootID: "tokencount", VMID: "usage-tokencount", WasmPath: envoytest.WasmPath(t, "tokencount"), Configuration: tokencountConfig,
				AllowOnHeadersStopIteration: true},
		},
		Clusters: []envoytest.Cluster{{Name: "upstream", Addr: strings.TrimPrefix(up.URL, "http://")}, {Name: "keystore", Addr: ks.DataAddr()}},
		Routes:   []envoytest.Route{{Prefix: "/", Cluster: "upstream"}},
	})

	r := &run{t: t, gw: gw, tokens: map[string]int64{}, status: map[string][]int{}}
	for range 3 {
		r.json("json")
	}
	r.stream("stream")
	r.stream("stream")
	for range 5 {
		r.json("capped") // the 4th and 5th: 429 at quota
	}

	ks.Stop() // tokencount cannot reserve (503); records wait in the VMs
	r.json("down")
	r.json("down")
	ks.Restart(t)

	r.cut("cut")
	r.cut("cut")
	r.json("tight") // 429 at tokencount: the reservation exceeds the budget
	require.Equal(t, map[string][]int{"json": {200, 200, 200}, "stream": {200, 200}, "capped": {200, 200, 200, 429, 429},
		"down": {503, 503}, "cut": {200, 200}, "tight": {429}}, r.status)

	const want = 15
	var body []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, ok := analytics(t, ks, "step=minute&from="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)+"&group_by=app,developer")
		if ok && jsontest.Get(b, "totals.requests").Int() >= want {
			body = b
			break
		}
		require.True(t, time.Now().Before(deadline), "analytics did not reach %d requests: %s", want, b)
		time.Sleep(100 * time.Millisecond) // polling the API, with a deadline
	}
	type row struct{ requests, ok, refused, aborted, tokens, s4xx, s5xx int64 }
	got := map[string]row{}
	for i := 0; ; i++ {
		s := jsontest.Get(body, fmt.Sprintf("series.%d", i))
		if !s.Exists() {
			break
		}
		raw := []byte(s.Raw())
		app := jsontest.Get(raw, "group.app").Str()
		assert.Equal(t, app+"@example.com", jsontest.Get(raw, "group.developer").Str())
		tot := func(f string) int64 { return jsontest.Get(raw, "totals."+f).Int() }
		got[app] = row{tot("requests"), tot("ok"), tot("refused"), tot("aborted"), tot("total_tokens"), tot("status_4xx"), tot("status_5xx")}
	}
	cut := got["cut"]
	assert.Equal(t, int64(2), cut.aborted, "%s", body)
	assert.Equal(t, map[string]row{
		"json":   {requests: 3, ok: 3, tokens: r.tokens["json"]},
		"stream": {requests: 2, ok: 2, tokens: r.tokens["stream"]},
		"capped": {requests: 5, ok: 3, refused: 2, tokens: r.tokens["capped"], s4xx: 2},
		"down":   {requests: 2, refused: 2, s5xx: 2},
		"cut":    {requests: 2, aborted: 2, tokens: cut.tokens},
		"tight":  {requests: 1, refused: 1, s4xx: 1},
	}, got, "each request counted once, with the model server's token counts: %s", body)
	assert.Equal(t, int64(want), jsontest.Get(body, "totals.requests").Int(), "nothing counted twice")
	gw.RequireNoCrash(t)
}
