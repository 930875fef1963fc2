package shipped

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// raw sends one request exactly as written (Go's client would tidy paths and
// headers) and returns the response.
func raw(t *testing.T, addr, req string) (int, http.Header, []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	_, err = io.WriteString(c, req)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err, "request %.200q", req)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, body
}

// get is an HTTP/1.1 request with the key and extra header lines.
func (g *gateway) get(path string, extra ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + g.key + "\r\n" +
		strings.Join(append(extra, ""), "\r\n") + "Connection: close\r\n\r\n"
}

func TestShippedGateway(t *testing.T) {
	g := startGateway(t)
	addr := g.envoy.ListenerAddr()

	// A client that never finishes its headers is cut off after
	// request_headers_timeout (10 s); measured in the background while the
	// other cases run.
	type slowResult struct {
		after time.Duration
		got   string
		err   error
	}
	slow := make(chan slowResult, 1)
	go func() {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			slow <- slowResult{err: err}
			return
		}
		defer c.Close()
		start := time.Now()
		_ = c.SetDeadline(start.Add(40 * time.Second))
		if _, err := io.WriteString(c, "GET /v1/models HTTP/1.1\r\nHost: g\r\nX-Slow: "); err != nil {
			slow <- slowResult{err: err}
			return
		}
		got, err := io.ReadAll(c) // until Envoy closes the connection
		slow <- slowResult{after: time.Since(start), got: string(got), err: err}
	}()

	// A normal request works: the baseline every refusal is measured against.
	status, _, body := raw(t, addr, g.get("/v1/models"))
	require.Equal(t, 200, status, "%s", body)

	t.Run("Envoy's own refusals are OpenAI JSON and never reach the upstream", func(t *testing.T) {
		many := make([]string, 120)
		for i := range many {
			many[i] = fmt.Sprintf("X-Filler-%d: x", i)
		}
		tests := []struct {
			name, req string
			status    int
			code      string
		}{
			{"encoded slash", g.get("/v1/models/..%2f..%2fadmin"), 400, "invalid_path"},
			{"encoded slash, upper case", g.get("/v1/models/x%2Fy"), 400, "invalid_path"},
			{"encoded backslash", g.get("/v1/models/..%5c..%5cadmin"), 400, "invalid_path"},
			{"header over 32 KiB", g.get("/v1/models", "X-Big: "+strings.Repeat("a", 40<<10)), 431, "http1.headers_too_large"},
			{"more than 100 headers", g.get("/v1/models", many...), 431, "http1.too_many_headers"},
			{"underscore in a header name", g.get("/v1/models", "X_Tollgate_App: spoofed"), 400, "http1.unexpected_underscore"},
			{"HTTP/1.0", "GET /v1/models HTTP/1.0\r\nAuthorization: Bearer " + g.key + "\r\n\r\n", 426, "low_version"},
			{"unknown transfer-encoding", "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n", 501, "http1.invalid_transfer_encoding"},
			{"malformed request line", "GET /v1/models HTTP/1.1 extra\r\nHost: g\r\n\r\n", 400, "http1.codec_error"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := g.up.count()
				status, hdr, body := raw(t, addr, tt.req)
				e := requireOpenAIError(t, status, hdr, body, tt.status)
				t.Logf("%d %s", status, body)
				assert.Nil(t, e.Error.Param, "param is null, as in OpenAI's errors")
				assert.Equal(t, tt.code, e.Error.Code, "code names Envoy's reason")
				assert.NotEmpty(t, *e.Error.Message)
				assert.Empty(t, g.up.since(before), "the upstream must not see a refused request")
			})
		}
	})

	t.Run("the filters' own JSON refusals are not wrapped again", func(t *testing.T) {
		status, hdr, body := raw(t, addr, "GET /v1/models HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n")
		e := requireOpenAIError(t, status, hdr, body, 401)
		assert.Equal(t, "missing_api_key", e.Error.Code, "%s", body)
		status, hdr, body = raw(t, addr, g.get("/v1/models/x/../../../admin"))
		requireOpenAIError(t, status, hdr, body, 403)
	})

	t.Run("paths are normalised before the filters and the upstream", func(t *testing.T) {
		before := g.up.count()
		status, _, body := raw(t, addr, g.get("//v1///models/./gemma-3-1b-it/../gemma-3-1b-it"))
		require.Equal(t, 200, status, "%s", body)
		got := g.up.since(before)
		require.Len(t, got, 1)
		assert.Equal(t, "/v1/models/gemma-3-1b-it", got[0].Path)
	})

	t.Run("identity headers and the key stay in the gateway", func(t *testing.T) {
		before := g.up.count()
		req := `{"model":"gemma-3-1b-it","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`
		status, _, body := raw(t, addr, "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer "+g.key+
			"\r\nContent-Type: application/json\r\nX-Tollgate-Developer: spoofed@example.com\r\nContent-Length: "+fmt.Sprint(len(req))+"\r\nConnection: close\r\n\r\n"+req)
		require.Equal(t, 200, status, "%s", body)
		got := g.up.since(before)
		require.Len(t, got, 1)
		for name, v := range got[0].Header {
			assert.False(t, strings.HasPrefix(strings.ToLower(name), "x-tollgate-"), "%s: %v reached the upstream", name, v)
			assert.NotContains(t, strings.Join(v, ","), g.key, "%s carries the key", name)
			assert.NotContains(t, strings.Join(v, ","), "ada@example.com", "%s carries the developer's e-mail", name)
		}
		assert.Empty(t, got[0].Header.Get("Authorization"))
		// The access log still names the caller (from metadata, not headers).
		require.Eventually(t, func() bool {
			return strings.Contains(accessLog(t, g), `"app":"shipped"`)
		}, 10*time.Second, 50*time.Millisecond, "access log: %s", accessLog(t, g))
		assert.NotContains(t, accessLog(t, g), g.key)
	})

	t.Run("the keystore's data plane needs the token", func(t *testing.T) {
		verify := func(auth string) (int, string) {
			req, err := http.NewRequest(http.MethodPost, g.keystore.DataURL()+"/v1/verify", strings.NewReader(`{"key":"tg_nope"}`))
			require.NoError(t, err)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		status, body := verify("")
		assert.Equal(t, 401, status)
		assert.Contains(t, body, "missing_data_token")
		status, body = verify("Bearer not-" + dataToken)
		assert.Equal(t, 401, status)
		assert.Contains(t, body, "invalid_data_token")
		_, body = verify("Bearer " + dataToken)
		assert.Contains(t, body, `"valid":false`, "with the token the keystore answers")
		// The filters sent it on every callout above; no log holds it.
		for name, log := range map[string]string{"envoy": g.envoy.Log(), "access": accessLog(t, g), "keystore": g.keystore.Log()} {
			assert.NotContains(t, log, dataToken, "the %s log holds the data-plane token", name)
		}
	})

	t.Run("a VM that traps is replaced and the next request is served", func(t *testing.T) {
		reloaded := func() uint64 {
			v, _ := g.envoy.StatsValue("wasm.conformance.vm_reload_success")
			return v
		}
		require.Zero(t, reloaded())
		// One connection, so the requests after the trap meet the same
		// worker, whose VM just died.
		c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1, DisableCompression: true}}
		do := func(path string) (int, string) {
			req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+g.key)
			resp, err := c.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		status, body := do("/trap/stack")
		assert.Equal(t, 503, status, "the trapped request fails closed: %s", body)
		assert.Contains(t, body, `"code":"wasm_fail_stream"`)
		require.Eventually(t, func() bool { return strings.Contains(g.envoy.Log(), "Maximum call stack size exceeded") },
			10*time.Second, 20*time.Millisecond, "a genuine trap (V8 RangeError), not a recovered panic")
		// Within the reload backoff (reload_config, 50 ms) the dead VM's
		// requests fail closed with the JSON 503; the first request after it
		// gets a fresh VM and is served.
		deadline := time.Now().Add(10 * time.Second)
		for n := 0; ; n++ {
			require.True(t, time.Now().Before(deadline), "no request was served after the trap")
			status, body := do("/v1/models")
			if status == 200 {
				break
			}
			require.Equal(t, 503, status, "request %d after the trap: %s", n, body)
			assert.Contains(t, body, `"type":"server_error"`)
		}
		assert.Equal(t, uint64(1), reloaded(), "one fresh VM")
		for range 3 {
			status, body = do("/v1/models")
			assert.Equal(t, 200, status, "after the reload: %s", body)
		}
		failed, _ := g.envoy.StatsValue("wasm.conformance.vm_reload_failure")
		assert.Zero(t, failed)
	})

	t.Run("a client that dribbles its headers is cut off", func(t *testing.T) {
		before := g.up.count()
		r := <-slow
		require.NoError(t, r.err, "Envoy must close the connection, not leave it open")
		assert.GreaterOrEqual(t, r.after, 9*time.Second, "not before request_headers_timeout")
		assert.Less(t, r.after, 30*time.Second)
		t.Logf("closed after %v with %q", r.after.Round(time.Millisecond), r.got)
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(r.got)), nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		e := requireOpenAIError(t, resp.StatusCode, resp.Header, body, http.StatusRequestTimeout)
		assert.Equal(t, "request_header_timeout", e.Error.Code)
		assert.Empty(t, g.up.since(before))
	})

	t.Run("HTTP/2 connections allow 100 concurrent streams", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		// Prior-knowledge h2c: the preface and an empty SETTINGS frame.
		_, err = c.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0))
		require.NoError(t, err)
		settings := h2ServerSettings(t, bufio.NewReader(c))
		assert.Equal(t, uint32(100), settings[0x3], "SETTINGS_MAX_CONCURRENT_STREAMS: %v", settings)
	})

	t.Run("free memory goes back to the system", func(t *testing.T) {
		// V8's compile leaves tens of MiB free in tcmalloc (25-60 MiB for
		// the suite); the shipped memory_allocator_manager releases them
		// in the background (docs/benchmarks.md, "Memory").
		assert.Contains(t, g.envoy.Log(), "Configured tcmalloc with background release rate")
		var m envoytest.Memory
		envoytest.Eventually(t, 30*time.Second, func() bool {
			var err error
			m, err = g.envoy.Memory()
			require.NoError(t, err)
			return m.PageheapFree < 8<<20
		}, "tcmalloc still holds free pages: %+v", &m)
		t.Logf("RSS %d MiB, tcmalloc allocated %d MiB, free %d MiB, released %d MiB",
			m.RSS>>20, m.Allocated>>20, m.PageheapFree>>20, m.PageheapUnmapped>>20)
	})

	// Last: it takes the model server away.
	t.Run("an unreachable model server is a JSON 503", func(t *testing.T) {
		g.up.srv.Close()
		status, hdr, body := raw(t, addr, g.get("/v1/models"))
		e := requireOpenAIError(t, status, hdr, body, 503)
		assert.Equal(t, "server_error", *e.Error.Type)
		assert.Contains(t, e.Error.Code, "upstream_reset_before_response_started", "%s", body)
		assert.NotEmpty(t, *e.Error.Message)
	})
}

// h2ServerSettings reads frames until the server's first non-ACK SETTINGS
// frame and returns its parameters by identifier.
func h2ServerSettings(t *testing.T, r *bufio.Reader) map[uint16]uint32 {
	t.Helper()
	for range 10 {
		var hdr [9]byte
		_, err := io.ReadFull(r, hdr[:])
		require.NoError(t, err)
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		require.LessOrEqual(t, n, 1<<14)
		payload := make([]byte, n)
		_, err = io.ReadFull(r, payload)
		require.NoError(t, err)
		if hdr[3] != 0x4 || hdr[4]&0x1 != 0 { // not SETTINGS, or an ACK
			continue
		}
		out := map[uint16]uint32{}
		for i := 0; i+6 <= len(payload); i += 6 {
			out[binary.BigEndian.Uint16(payload[i:])] = binary.BigEndian.Uint32(payload[i+2:])
		}
		return out
	}
	t.Fatal("no SETTINGS frame from the server")
	return nil
}

// accessLog is the access log so far.
func accessLog(t *testing.T, g *gateway) string {
	t.Helper()
	b, err := os.ReadFile(g.envoy.AccessLogPath)
	if err != nil {
		return ""
	}
	return string(b)
}

var _ = json.Marshal
