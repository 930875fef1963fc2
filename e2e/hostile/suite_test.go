// Package hostile is the hostile-input suite: real Envoy running the shipped
// chain (apikey → quota → modelroute → tokencount, as separate filters and
// as the suite's one fused filter) in front of the real keystore and a stub upstream that records
// what it receives and can answer like a broken or malicious model server.
//
// Every case states the status the client must get, whether the upstream may
// see the request (a refusal never reaches it), and gets an OpenAI-shaped
// JSON error body when refused; after every case a normal request must still
// be served, so a case that kills a Wasm VM or wedges a worker fails there.
// Classes: nesting, duplicate and case-folded keys, encodings, huge and slow
// inputs, spoofed identity, smuggling, path tricks and hostile upstream
// answers (whose counters must stay sane).
package hostile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/e2e/stacktest"
)

func TestMain(m *testing.M) { os.Exit(keystoretest.Main(m)) }

// Apps of the suite and their products (testdata/products.yaml).
const (
	appFull   = "full"   // every model
	appGemma  = "gemma"  // gemma-3-1b-it only
	appVictim = "victim" // faces the hostile upstream; a 10^6-token hourly quota
)

// suite is the running gateway.
type suite struct {
	*stacktest.Stack
	// violationsBefore is violations() before the running case was sent.
	violationsBefore float64
	// logBefore is the access log's length before the running case was sent.
	logBefore int
}

// start runs the shipped chain (stacktest: the shipped gateway rendered as
// `make run` does; fused: as the suite's one fused filter, the default) in
// front of the hostile upstream, with the suite's products and apps, and
// the slow-client timeouts shortened.
func start(t *testing.T, fused bool) *suite {
	t.Helper()
	st := stacktest.Start(t, stacktest.Options{
		Upstream:  upstream(),
		Products:  filepath.Join("testdata", "products.yaml"),
		Apps:      map[string][]string{appFull: {"hostile-full"}, appGemma: {"hostile-gemma"}, appVictim: {"hostile-victim"}},
		Developer: "hostile@tollgate.test",
		Edit:      shortenTimeouts,
		Fused:     fused,
	})
	return &suite{Stack: st}
}

// Timeouts of the slow-client cases. The shipped values (10 s for the
// headers, 60 s for the whole request) are checked to be set and bounded;
// the running copy uses these, so that the cases prove the mechanism without
// waiting a minute.
const (
	headersTimeout = 2 * time.Second
	requestTimeout = 3 * time.Second
	// slowBound is how long a slow client may hold the gateway before being cut.
	slowBound = 10 * time.Second
)

// shortenTimeouts checks that the rendered gateway bounds slow clients
// (request_headers_timeout ≤ 10 s, request_timeout ≤ 2 min) and sets those
// two timeouts to headersTimeout and requestTimeout.
func shortenTimeouts(t testing.TB, doc map[string]any) {
	t.Helper()
	hcm := stacktest.HCM(t, doc)
	for field, limit := range map[string]time.Duration{"request_headers_timeout": 10 * time.Second, "request_timeout": 2 * time.Minute} {
		raw, ok := hcm[field].(string)
		require.True(t, ok, "the shipped gateway sets no %s", field)
		d, err := time.ParseDuration(raw)
		require.NoError(t, err, field)
		require.Positive(t, d, field)
		require.LessOrEqual(t, d, limit, field)
	}
	hcm["request_headers_timeout"] = headersTimeout.String()
	hcm["request_timeout"] = requestTimeout.String()
}

// result is what the client got back.
type result struct {
	Status int
	Header http.Header
	Body   []byte
	Err    error // transport error, e.g. a stream cut mid-way
}

// client sends every request on its own connection: a hostile case must not
// leave state behind for the next one. h2 selects cleartext HTTP/2 (prior
// knowledge), which the shipped listener also speaks.
func client(h2 bool) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true, DisableCompression: true}
	if h2 {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
	}
	return &http.Client{Timeout: 20 * time.Second, Transport: tr}
}

// send issues one HTTP/1.1 request through the gateway.
func (s *suite) send(t *testing.T, method, path string, header map[string]string, body []byte) result {
	t.Helper()
	return s.sendProto(t, false, method, path, header, body)
}

// sendProto issues one request through the gateway, over HTTP/2 when h2.
func (s *suite) sendProto(t *testing.T, h2 bool, method, path string, header map[string]string, body []byte) result {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL(path), rd)
	require.NoError(t, err)
	for k, v := range header {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header[k] = []string{v} // as given: no canonicalisation, so spellings reach Envoy
	}
	resp, err := client(h2).Do(req)
	if err != nil {
		return result{Err: err}
	}
	if h2 && resp.ProtoMajor != 2 {
		resp.Body.Close()
		return result{Err: fmt.Errorf("want HTTP/2, got %s", resp.Proto)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{Status: resp.StatusCode, Header: resp.Header, Body: b, Err: err}
}

// sendRaw writes raw bytes to the listener and reads one HTTP response (or
// the connection's end), bounded by timeout.
func (s *suite) sendRaw(t *testing.T, raw string, timeout time.Duration) result {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Envoy.ListenerAddr(), 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(timeout)))
	if _, err := io.WriteString(conn, raw); err != nil {
		return result{Err: err}
	}
	return readResponse(conn)
}

// readResponse reads one HTTP/1.1 response from conn.
func readResponse(conn net.Conn) result {
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return result{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{Status: resp.StatusCode, Header: resp.Header, Body: b, Err: err}
}

// requireOpenAIError checks an OpenAI-shaped JSON error body and, when code
// is not empty, its code.
func requireOpenAIError(t *testing.T, r result, code string) {
	t.Helper()
	require.Contains(t, r.Header.Get("content-type"), "application/json", "error body: %s", r.Body)
	var doc struct {
		Error *struct {
			Message *string `json:"message"`
			Type    *string `json:"type"`
			Code    any     `json:"code"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &doc), "error body is not JSON: %q", r.Body)
	require.NotNil(t, doc.Error, "no error object: %s", r.Body)
	require.NotNil(t, doc.Error.Message, "no error.message: %s", r.Body)
	require.NotEmpty(t, *doc.Error.Message, "empty error.message: %s", r.Body)
	require.NotNil(t, doc.Error.Type, "no error.type: %s", r.Body)
	require.NotEmpty(t, *doc.Error.Type, "empty error.type: %s", r.Body)
	if code != "" {
		require.Equal(t, code, doc.Error.Code, "error code: %s", r.Body)
	}
}

// chat is a chat-completion body for model with one user message.
func chat(model string) []byte {
	return []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Hello!"}],"max_tokens":8}`, model))
}

// keyHeader is the x-api-key header of app.
func (s *suite) keyHeader(app string) map[string]string {
	return map[string]string{"x-api-key": s.Keys[app], "content-type": "application/json"}
}

// requireServes proves the gateway still works: a normal chat completion
// with app's key is answered 200 by the upstream.
func (s *suite) requireServes(t *testing.T, app string) {
	t.Helper()
	before := s.Upstream.Count()
	r := s.send(t, "POST", "/v1/chat/completions", s.keyHeader(app), chat("gemma-3-1b-it"))
	require.NoError(t, r.Err, "normal request after the case")
	require.Equal(t, http.StatusOK, r.Status, "normal request after the case: %s", r.Body)
	var doc struct {
		Choices []json.RawMessage `json:"choices"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &doc), "normal answer: %s", r.Body)
	require.NotEmpty(t, doc.Choices)
	require.Equal(t, before+1, s.Upstream.Count(), "the normal request reaches the upstream once")
}

// violations sums tokencount's usage-violation counters, whatever their labels.
func (s *suite) violations(t *testing.T) float64 {
	t.Helper()
	samples, err := s.Envoy.PromMetrics()
	require.NoError(t, err)
	var sum float64
	for _, smp := range samples {
		if strings.HasPrefix(smp.Name, "tollgate_tokencount_usage_violations_total") {
			sum += smp.Value
		}
	}
	return sum
}

// tokenCounters sums the tokencount token counters of app.
func (s *suite) tokenCounters(t *testing.T, app string) float64 {
	t.Helper()
	samples, err := s.Envoy.PromMetrics()
	require.NoError(t, err)
	var sum float64
	for _, name := range []string{"tollgate_tokencount_prompt_tokens_total", "tollgate_tokencount_completion_tokens_total"} {
		for _, smp := range envoytest.FindSamples(samples, name, map[string]string{"app": app}) {
			sum += smp.Value
		}
	}
	return sum
}

// dial opens a raw connection to the gateway's listener.
func dial(s *suite) (net.Conn, error) {
	return net.DialTimeout("tcp", s.Envoy.ListenerAddr(), 5*time.Second)
}

// reader reads successive responses from one connection.
type reader struct{ br *bufio.Reader }

func newReader(conn net.Conn) *reader { return &reader{br: bufio.NewReader(conn)} }

// next reads the next response.
func (r *reader) next() result {
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil {
		return result{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{Status: resp.StatusCode, Header: resp.Header, Body: b, Err: err}
}
