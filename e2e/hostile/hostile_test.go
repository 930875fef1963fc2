package hostile

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/stacktest"
)

// hcase is one hostile input.
type hcase struct {
	name   string
	app    string            // whose key goes in x-api-key ("" none); the follow-up request uses it (default appFull)
	method string            // default POST
	path   string            // default /v1/chat/completions
	header map[string]string // more headers, names sent exactly as written
	body   []byte
	raw    string // a raw HTTP/1.1 request instead; "{KEY}" is replaced by app's key
	h2     bool   // send over cleartext HTTP/2
	// status lists the acceptable statuses: one, unless the shipped
	// configuration may answer before the filters do.
	status  []int
	code    string // expected OpenAI error code ("" any)
	reached bool   // whether the upstream may see the request
	check   func(t *testing.T, s *suite, r result, got []stacktest.Request)
}

const deep = 5000 // nesting of the nesting cases (the crash of issue 10 needed about 5,000)

func objects(depth int) string {
	return strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
}

func arrays(depth int) string { return strings.Repeat("[", depth) + strings.Repeat("]", depth) }

// body builds a chat body from raw JSON members.
func body(members ...string) []byte { return []byte("{" + strings.Join(members, ",") + "}") }

const (
	gemma = `"model":"gemma-3-1b-it"`
	hello = `"messages":[{"role":"user","content":"Hello!"}]`
)

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, err := w.Write(b)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// noSpoof fails when any header the upstream saw carries the value "spoof".
func noSpoof(t *testing.T, _ *suite, _ result, got []stacktest.Request) {
	t.Helper()
	require.Len(t, got, 1)
	for name, vs := range got[0].Header {
		for _, v := range vs {
			require.NotEqual(t, "spoof", v, "spoofed header %s reached the upstream", name)
		}
	}
}

// distrusted is sane plus: the usage was refused as a violation and
// counted in tollgate_tokencount_usage_violations_total.
func distrusted(t *testing.T, s *suite, r result, got []stacktest.Request) {
	t.Helper()
	sane(t, s, r, got)
	envoytest.Eventually(t, 5*time.Second, func() bool { return s.violations(t) > s.violationsBefore },
		"the usage violation was not counted")
}

// sane fails when the hostile upstream's usage moved the victim's token
// counters beyond any real request's size (or wrapped them below zero).
func sane(t *testing.T, s *suite, _ result, _ []stacktest.Request) {
	t.Helper()
	require.Less(t, s.tokenCounters(t, appVictim), 1e7, "token counters of the victim app")
}

func cases(t *testing.T, s *suite) map[string][]hcase {
	bad := []int{http.StatusBadRequest}
	ok := []int{http.StatusOK}
	victim := map[string]string{"x-api-key": s.Keys[appVictim], "content-type": "application/json"}
	withMode := func(mode string) map[string]string {
		h := map[string]string{headerMode: mode}
		for k, v := range victim {
			h[k] = v
		}
		return h
	}
	big := func(n int) []byte {
		return body(gemma, `"messages":[{"role":"user","content":"`+strings.Repeat("a", n)+`"}]`)
	}
	return map[string][]hcase{
		"nesting": {
			{name: "messages[0].content objects", body: body(gemma, `"messages":[{"role":"user","content":`+objects(deep)+`}]`), status: bad},
			{name: "messages[0].content arrays", body: body(gemma, `"messages":[{"role":"user","content":`+arrays(deep)+`}]`), status: bad},
			{name: "messages array", body: body(gemma, `"messages":`+arrays(deep)), status: bad},
			{name: "tools", body: body(gemma, hello, `"tools":[{"type":"function","function":{"name":"f","parameters":`+objects(deep)+`}}]`), status: bad},
			{name: "stream_options", body: body(gemma, hello, `"stream":true,"stream_options":`+objects(deep)), status: bad},
			{name: "top-level member", body: body(gemma, hello, `"metadata":`+objects(deep)), status: bad},
			{name: "model value", body: body(`"model":`+objects(deep), hello), status: bad},
			{name: "embeddings input", path: "/v1/embeddings", body: body(`"model":"text-embedding-3-small"`, `"input":`+arrays(deep)), status: bad},
			{name: "over the depth limit", body: body(gemma, `"messages":[{"role":"user","content":`+arrays(100)+`}]`), status: bad},
			{name: "brackets inside a string pass", body: body(gemma, `"messages":[{"role":"user","content":"`+strings.Repeat("[{", 15000)+`"}]`), status: ok, reached: true},
			{name: "a 16-level tool schema passes", body: body(gemma, hello, `"tools":[{"type":"function","function":{"name":"f","parameters":`+objects(16)+`}}]`), status: ok, reached: true},
		},
		"duplicates and case variants": {
			{name: "Model beside model", app: appGemma, body: body(gemma, `"Model":"llama-3.1-8b"`, hello), status: bad},
			{name: "model twice", app: appGemma, body: body(gemma, hello, `"model":"llama-3.1-8b"`), status: bad},
			{name: "Max_tokens beside max_tokens", body: body(gemma, hello, `"max_tokens":1`, `"Max_tokens":40`), status: bad},
			{name: "escaped key mod\\u0065l", app: appGemma, body: body(`"mod\u0065l":"llama-3.1-8b"`, hello), status: bad},
			{name: "Kelvin sign in max_tokens (escaped)", body: body(gemma, hello, `"max_tokens":1`, `"max_to\u212aens":4000`), status: bad},
			{name: "Kelvin sign in max_tokens (UTF-8)", body: body(gemma, hello, `"max_tokens":1`, "\"max_to\u212aens\":4000"), status: bad},
			{name: "long s in stream", body: body(gemma, hello, `"\u017ftream":true`), status: bad},
			{name: "MESSAGES beside messages", body: body(gemma, hello, `"MESSAGES":[{"role":"user","content":"`+strings.Repeat("a", 4000)+`"}]`), status: bad},
			{name: "content twice in a message", body: body(gemma, `"messages":[{"role":"user","content":"a","content":"`+strings.Repeat("b", 4000)+`"}]`), status: bad},
			{name: "Include_usage in stream_options", body: body(gemma, hello, `"stream":true`, `"stream_options":{"include_usage":true,"Include_usage":false}`), status: bad},
			{name: "N beside n", body: body(gemma, hello, `"n":1`, `"N":8`), status: bad},
			{name: "Stream beside stream", body: body(gemma, hello, `"stream":false`, `"Stream":true`), status: bad},
		},
		"encodings": {
			{name: "invalid UTF-8", body: body(gemma, "\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]"), status: bad},
			{name: "lone surrogate", body: body(gemma, `"messages":[{"role":"user","content":"\ud800"}]`), status: bad},
			{name: "byte order mark", body: append([]byte("\xef\xbb\xbf"), chat("gemma-3-1b-it")...), status: bad},
			{name: "trailing object", body: append(chat("gemma-3-1b-it"), `{"model":"llama-3.1-8b"}`...), status: bad},
			{name: "trailing garbage", body: append(chat("gemma-3-1b-it"), "x"...), status: bad},
			{name: "gzip content-encoding", header: map[string]string{"content-encoding": "gzip"}, body: gzipped(t, chat("gemma-3-1b-it")), status: bad},
			{name: "text/plain body", header: map[string]string{"content-type": "text/plain"}, app: appGemma, body: chat("llama-3.1-8b"), status: bad},
			{name: "form-encoded body", header: map[string]string{"content-type": "application/x-www-form-urlencoded"}, body: []byte("model=gemma-3-1b-it&messages=hi"), status: bad},
			{name: "UTF-16 body", body: utf16(string(chat("gemma-3-1b-it"))), status: bad},
			{name: "empty body", body: []byte{}, status: bad},
			{name: "top-level array", body: []byte(`[` + string(chat("gemma-3-1b-it")) + `]`), status: bad},
			{name: "escaped NUL in content passes", body: body(gemma, `"messages":[{"role":"user","content":"a\u0000b"}]`), status: ok, reached: true},
		},
		"huge and slow": {
			{name: "9 MiB body", body: big(9 << 20), status: []int{http.StatusRequestEntityTooLarge}},
			{name: "11 MiB body, over the listener buffer", body: big(11 << 20), status: []int{http.StatusRequestEntityTooLarge}},
			{name: "200 headers", header: manyHeaders(200), body: chat("gemma-3-1b-it"), status: []int{http.StatusRequestHeaderFieldsTooLarge}},
			{name: "100 KiB header", header: map[string]string{"x-big": strings.Repeat("h", 100<<10)}, body: chat("gemma-3-1b-it"),
				status: []int{http.StatusRequestHeaderFieldsTooLarge}},
			{name: "slow headers are cut", check: slowHeaders},
			{name: "slow body is cut", check: slowBody},
		},
		"spoofed identity": {
			{name: "x-tollgate-* spoofs", header: map[string]string{"x-tollgate-app": "spoof", "x-tollgate-token-quota": "spoof", "x-tollgate-request-quota": "spoof",
				"x-tollgate-public-model": "spoof", "x-tollgate-model": "spoof", "x-tollgate-anything": "spoof"},
				body: chat("gemma-3-1b-it"), status: ok, reached: true, check: noSpoof},
			{name: "upper-case spellings", header: map[string]string{"X-TOLLGATE-APP": "spoof", "X-Tollgate-Token-Quota": "spoof"},
				body: chat("gemma-3-1b-it"), status: ok, reached: true, check: noSpoof},
			// Envoy refuses header names with '_' (headers_with_underscores_action),
			// so x_tollgate_app never meets an upstream that folds '_' into '-'.
			{name: "underscore spellings", header: map[string]string{"x_tollgate_app": "spoof", "x_api_key": "spoof"},
				body: chat("gemma-3-1b-it"), status: bad},
			{name: "identity stays inside the gateway", body: chat("gemma-3-1b-it"), status: ok, reached: true,
				check: func(t *testing.T, s *suite, _ result, got []stacktest.Request) {
					require.Len(t, got, 1)
					for name := range got[0].Header {
						require.False(t, strings.HasPrefix(strings.ToLower(name), "x-tollgate-"), "identity header %s reached the upstream", name)
					}
				}},
			{name: "allowed-models spoof does not widen a key", app: appGemma, header: map[string]string{"x-tollgate-allowed-models": "*"},
				body: chat("llama-3.1-8b"), status: []int{http.StatusForbidden}},
		},
		"smuggling": {
			{name: "content-length and chunked", raw: "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nx-api-key: {KEY}\r\ncontent-type: application/json\r\n" +
				"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: bad},
			{name: "two content-lengths", raw: "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nx-api-key: {KEY}\r\ncontent-type: application/json\r\n" +
				"Content-Length: 2\r\nContent-Length: 90\r\n\r\n{}", status: bad},
			{name: "malformed chunk size", raw: "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nx-api-key: {KEY}\r\ncontent-type: application/json\r\n" +
				"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", status: bad},
			{name: "pipelined request needs its own key", check: pipelined},
			{name: "query key beside a header key", method: "GET", path: "/v1/models?x=1&key={OTHER}&api_key={OTHER}", status: ok, reached: true,
				check: func(t *testing.T, s *suite, _ result, got []stacktest.Request) {
					require.Len(t, got, 1)
					require.Equal(t, "/v1/models?x=1", got[0].Path)
				}},
			{name: "header key beside a bearer key", header: map[string]string{"authorization": "Bearer {OTHER}"}, body: chat("gemma-3-1b-it"), status: ok, reached: true,
				check: func(t *testing.T, s *suite, _ result, got []stacktest.Request) {
					require.Len(t, got, 1)
					require.Empty(t, got[0].Header.Values("x-api-key"))
					require.Empty(t, got[0].Header.Values("authorization"))
				}},
		},
		"http2": {
			{name: "nesting", h2: true, body: body(gemma, `"messages":[{"role":"user","content":`+objects(deep)+`}]`), status: bad},
			{name: "Model beside model", h2: true, app: appGemma, body: body(gemma, `"Model":"llama-3.1-8b"`, hello), status: bad},
			{name: "x-tollgate-* spoofs", h2: true, header: map[string]string{"x-tollgate-app": "spoof", "x-tollgate-token-quota": "spoof", "x-tollgate-model": "spoof"},
				body: chat("gemma-3-1b-it"), status: ok, reached: true, check: noSpoof},
			{name: "query key beside a header key", h2: true, method: "GET", path: "/v1/models?key={OTHER}&x=1", status: ok, reached: true,
				check: func(t *testing.T, s *suite, _ result, got []stacktest.Request) {
					require.Len(t, got, 1)
					require.Equal(t, "/v1/models?x=1", got[0].Path)
				}},
			{name: "double-encoded dots", h2: true, method: "GET", path: "/v1/models/%252e%252e/admin", status: bad, code: "invalid_path"},
			{name: "9 MiB body", h2: true, body: big(9 << 20), status: []int{http.StatusRequestEntityTooLarge}},
		},
		"path tricks": {
			{name: "encoded slashes", method: "GET", path: "/v1/models/..%2f..%2fadmin", status: bad},
			// Envoy normalises these three to /admin (normalize_path), which the key may not call;
			// without normalisation apikey refuses them with 400 (e2e/apikey).
			{name: "encoded dots", method: "GET", path: "/v1/models/%2e%2e/%2e%2e/admin", status: []int{http.StatusForbidden}, code: "operation_not_allowed"},
			{name: "dot-dot-semicolon", method: "GET", path: "/v1/models/..;/..;/admin", status: []int{http.StatusForbidden}, code: "operation_not_allowed"},
			{name: "encoded backslashes", method: "GET", path: "/v1/models/x%5c..%5c..%5cadmin", status: bad},
			{name: "double-encoded dots (apikey's own check)", method: "GET", path: "/v1/models/%252e%252e/%252e%252e/admin", status: bad, code: "invalid_path"},
			{name: "encoded NUL", method: "GET", path: "/v1/models/gemma%00", status: bad},
			{name: "unmetered endpoint under a token quota", path: "/v1/responses", body: body(gemma, `"input":"hi"`),
				status: []int{http.StatusForbidden}, code: "unmetered_endpoint"},
			{name: "unmetered endpoint, escaped", path: "/v1/respons%65s", body: body(gemma, `"input":"hi"`),
				status: []int{http.StatusForbidden}, code: "unmetered_endpoint"},
			{name: "unmetered multipart upload", path: "/v1/audio/transcriptions", header: map[string]string{"content-type": "multipart/form-data; boundary=x"},
				body:   []byte("--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--x--\r\n"),
				status: bad},
			{name: "raw dot segments", method: "GET", path: "/v1/models/../../admin", status: []int{http.StatusForbidden}, code: "operation_not_allowed"},
			{name: "refused query key stays out of the access log", app: "-", method: "GET", path: "/v1/models?key={FULL}",
				status: []int{http.StatusUnauthorized}, check: notLogged},
		},
		"hostile upstream": {
			{name: "usage of 10^18 tokens", app: appVictim, header: withMode(modeUsageAbsurd), body: chat("gemma-3-1b-it"), status: ok, reached: true, check: distrusted},
			{name: "negative usage", app: appVictim, header: withMode(modeUsageNegative), body: chat("gemma-3-1b-it"), status: ok, reached: true, check: distrusted},
			{name: "missing usage", app: appVictim, header: withMode(modeUsageMissing), body: chat("gemma-3-1b-it"), status: ok, reached: true, check: sane},
			{name: "usage that is not integers", app: appVictim, header: withMode(modeUsageGarbage), body: chat("gemma-3-1b-it"), status: ok, reached: true, check: distrusted},
			{name: "body that is not JSON", app: appVictim, header: withMode(modeNotJSON), body: chat("gemma-3-1b-it"), status: ok, reached: true, check: sane},
			{name: "stream usage of 10^18 tokens", app: appVictim, header: withMode(modeStreamAbsurd),
				body: body(gemma, hello, `"max_tokens":8`, `"stream":true`, `"stream_options":{"include_usage":true}`), status: ok, reached: true, check: distrusted},
			{name: "stream reset mid-way", app: appVictim, header: withMode(modeStreamReset),
				body: body(gemma, hello, `"max_tokens":8`, `"stream":true`), status: ok, reached: true,
				check: func(t *testing.T, s *suite, r result, got []stacktest.Request) {
					t.Helper()
					require.NotContains(t, string(r.Body), "[DONE]", "the cut stream reached its end")
					sane(t, s, r, got)
				}},
			{name: "invalid SSE", app: appVictim, header: withMode(modeStreamInvalid),
				body: body(gemma, hello, `"max_tokens":8`, `"stream":true`), status: ok, reached: true, check: sane},
		},
	}
}

// manyHeaders returns n distinct small headers.
func manyHeaders(n int) map[string]string {
	h := map[string]string{}
	for i := range n {
		h[fmt.Sprintf("x-h%d", i)] = "v"
	}
	return h
}

// utf16 encodes ASCII s as UTF-16LE with a byte order mark.
func utf16(s string) []byte {
	out := []byte{0xff, 0xfe}
	for i := 0; i < len(s); i++ {
		out = append(out, s[i], 0)
	}
	return out
}

// TestHostileInput runs every case against one gateway, in class order:
// the chain as separate filters sharing one VM.
func TestHostileInput(t *testing.T) { testHostileInput(t, false) }

// TestHostileInputFused runs every case against the chain as the suite's
// one fused filter, what gateway.yaml and `make run` ship.
func TestHostileInputFused(t *testing.T) { testHostileInput(t, true) }

func testHostileInput(t *testing.T, fused bool) {
	s := start(t, fused)
	s.requireServes(t, appFull)
	all := cases(t, s)
	classes := []string{"nesting", "duplicates and case variants", "encodings", "huge and slow", "spoofed identity", "smuggling", "http2", "path tricks", "hostile upstream"}
	n := 0
	for _, class := range classes {
		for _, c := range all[class] {
			n++
			t.Run(class+"/"+c.name, func(t *testing.T) { s.run(t, c) })
		}
	}
	require.Len(t, all, len(classes))
	require.GreaterOrEqual(t, n, 40)
	s.Envoy.RequireNoCrash(t)
	for _, app := range []string{appFull, appGemma, appVictim} {
		require.Less(t, s.tokenCounters(t, app), 1e7, "token counters of %s after the suite", app)
	}
}

func (s *suite) run(t *testing.T, c hcase) {
	app := c.app
	switch app {
	case "":
		app = appFull
	case "-":
		app = ""
	}
	other := appVictim
	if app == appVictim {
		other = appFull
	}
	fill := func(v string) string {
		v = strings.ReplaceAll(v, "{KEY}", s.Keys[app])
		v = strings.ReplaceAll(v, "{FULL}", s.Keys[appFull])
		return strings.ReplaceAll(v, "{OTHER}", s.Keys[other])
	}
	before := s.Upstream.Count()
	if app == appVictim {
		s.violationsBefore = s.violations(t)
	}
	if logged, err := os.ReadFile(s.Envoy.AccessLogPath); err == nil {
		s.logBefore = len(logged)
	}
	var r result
	switch {
	case c.raw != "":
		r = s.sendRaw(t, fill(c.raw), 10*time.Second)
	case c.status == nil:
		// A case that sends by itself (slow inputs, pipelining).
	default:
		h := map[string]string{"content-type": "application/json"}
		if app != "" {
			h["x-api-key"] = s.Keys[app]
		}
		for k, v := range c.header {
			h[k] = fill(v)
		}
		method, path := c.method, c.path
		if method == "" {
			method = "POST"
		}
		if path == "" {
			path = "/v1/chat/completions"
		}
		var b []byte
		if method == "POST" {
			b = c.body
		}
		r = s.sendProto(t, c.h2, method, fill(path), h, b)
	}
	if c.status != nil {
		t.Logf("status %d, %d bytes", r.Status, len(r.Body))
		if !c.reached || r.Status >= 300 {
			require.NoError(t, r.Err)
		}
		require.True(t, slices.Contains(c.status, r.Status), "status %d, want one of %v: %.400s", r.Status, c.status, r.Body)
		if r.Status >= 400 {
			requireOpenAIError(t, r, c.code)
		}
	}
	if c.check != nil {
		c.check(t, s, r, s.Upstream.Since(before))
	}
	if c.status != nil {
		got := s.Upstream.Since(before)
		if c.reached {
			require.NotEmpty(t, got, "the upstream never saw the request")
		} else {
			require.Empty(t, got, "a refused request reached the upstream")
		}
	}
	if app == "" {
		app = appFull
	}
	s.requireServes(t, app)
}

// slowHeaders sends a request line and one header, then nothing: the
// gateway must close the connection (or answer 408) within its header
// timeout instead of holding it.
func slowHeaders(t *testing.T, s *suite, _ result, _ []stacktest.Request) {
	t.Helper()
	conn, err := dial(s)
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nx-api-key: %s\r\n", s.Keys[appFull])
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, conn.SetDeadline(start.Add(slowBound)))
	r := readResponse(conn)
	elapsed := time.Since(start)
	require.Less(t, elapsed, slowBound, "the gateway held a half-sent request: %v", r.Err)
	require.GreaterOrEqual(t, elapsed, headersTimeout/2, "cut before the header timeout, so by something else: %v", r.Err)
	if r.Err == nil {
		require.Equal(t, http.StatusRequestTimeout, r.Status)
		requireOpenAIError(t, r, "")
	}
}

// slowBody sends complete headers and part of the body, then nothing: the
// gateway must answer 408 (JSON) within its request timeout.
func slowBody(t *testing.T, s *suite, _ result, _ []stacktest.Request) {
	t.Helper()
	before := s.Upstream.Count()
	conn, err := dial(s)
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nx-api-key: %s\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"model\":", s.Keys[appFull])
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, conn.SetDeadline(start.Add(slowBound)))
	r := readResponse(conn)
	require.NoError(t, r.Err, "no answer within %s", slowBound)
	require.GreaterOrEqual(t, time.Since(start), requestTimeout/2, "answered before the request timeout: %s", r.Body)
	require.Equal(t, http.StatusRequestTimeout, r.Status, "%s", r.Body)
	requireOpenAIError(t, r, "")
	require.Equal(t, before, s.Upstream.Count(), "a half-sent body reached the upstream")
}

// pipelined sends a keyed request and, in the same bytes, a second request
// without a key: each is judged on its own.
func pipelined(t *testing.T, s *suite, _ result, _ []stacktest.Request) {
	t.Helper()
	before := s.Upstream.Count()
	conn, err := dial(s)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	b := chat("gemma-3-1b-it")
	_, err = fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nx-api-key: %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"+
		"GET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n", s.Keys[appFull], len(b), b)
	require.NoError(t, err)
	rd := newReader(conn)
	first := rd.next()
	require.NoError(t, first.Err)
	require.Equal(t, http.StatusOK, first.Status, "%s", first.Body)
	second := rd.next()
	require.NoError(t, second.Err)
	require.Equal(t, http.StatusUnauthorized, second.Status, "%s", second.Body)
	requireOpenAIError(t, second, "missing_api_key")
	require.Equal(t, before+1, s.Upstream.Count(), "only the keyed request reaches the upstream")
}

// notLogged checks that the access log never holds the full key, though the
// refused request carried it in the query.
func notLogged(t *testing.T, s *suite, _ result, _ []stacktest.Request) {
	t.Helper()
	var raw []byte
	require.Eventually(t, func() bool {
		var err error
		raw, err = os.ReadFile(s.Envoy.AccessLogPath)
		return err == nil && len(raw) > s.logBefore && bytes.Contains(raw[s.logBefore:], []byte(`"status":401`))
	}, 5*time.Second, 20*time.Millisecond, "the refusal was never logged")
	require.NotContains(t, string(raw), s.Keys[appFull], "a key reached the access log")
}
