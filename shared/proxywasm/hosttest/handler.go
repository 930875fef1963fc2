//go:build !wasip1

package hosttest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
)

// ServeCallouts answers callouts with an http.Handler standing for the
// cluster (for Config.Callouts), so a filter's glue can talk to the real
// keystore handler in a native test.
func ServeCallouts(handler http.Handler) func(*Callout) *Response {
	return func(c *Callout) *Response {
		req := httptest.NewRequest(c.Header(":method"), c.Header(":path"), bytes.NewReader(c.Body))
		req.Host = c.Header(":authority")
		for _, kv := range c.Headers {
			if !strings.HasPrefix(kv[0], ":") {
				req.Header.Add(kv[0], kv[1])
			}
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		resp := &Response{Status: rec.Code, Body: rec.Body.Bytes()}
		for k, vs := range rec.Header() {
			for _, v := range vs {
				resp.Headers = append(resp.Headers, [2]string{strings.ToLower(k), v})
			}
		}
		return resp
	}
}

// ServeUpstream answers requests that reach the upstream with an
// http.Handler (for Config.Upstream), e.g. an echo server.
func ServeUpstream(handler http.Handler) func(*Upstream) *Response {
	return func(u *Upstream) *Response {
		return ServeCallouts(handler)(&Callout{Headers: u.Headers, Body: u.Body})
	}
}
