//go:build !wasip1

package hosttest_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
	"github.com/tollgate/tollgate/shared/reqview"
)

// trace records, in order, what every link of a chain saw.
type trace struct{ events []string }

func (t *trace) add(format string, args ...any) {
	t.events = append(t.events, fmt.Sprintf(format, args...))
}

// behaviour says what a test link does; nil callbacks continue.
type behaviour struct {
	period  time.Duration // tick period asked at start
	reqHdr  func(s *linkStream) proxywasm.Action
	reqBody func(s *linkStream, body []byte, eos bool) proxywasm.Action
	rspHdr  func(s *linkStream) proxywasm.Action
	rspBody func(s *linkStream, body []byte, eos bool) proxywasm.Action
}

// testLink is a chain link that traces each callback with the body it sees.
type testLink struct {
	proxywasm.DefaultPluginContext
	name  string
	tr    *trace
	b     behaviour
	cfg   string
	ticks int
}

func (l *testLink) OnPluginStart(cfg []byte) error {
	l.cfg = string(cfg)
	if strings.Contains(l.cfg, "refuse") {
		return fmt.Errorf("refused by %s", l.name)
	}
	if l.b.period > 0 {
		return proxywasm.SetTickPeriod(l.b.period)
	}
	return nil
}

func (l *testLink) OnTick() { l.ticks++ }

func (l *testLink) NewHttpContext(id uint32) proxywasm.HttpContext {
	return &linkStream{l: l, id: id}
}

type linkStream struct {
	proxywasm.DefaultHttpContext
	l  *testLink
	id uint32
}

func (s *linkStream) OnRequestHeaders(int, bool) proxywasm.Action {
	s.l.tr.add("%s:reqh", s.l.name)
	if s.l.b.reqHdr != nil {
		return s.l.b.reqHdr(s)
	}
	return proxywasm.ActionContinue
}

func (s *linkStream) OnRequestBody(size int, eos bool) proxywasm.Action {
	body, _ := proxywasm.RequestBody.Get(0, size)
	s.l.tr.add("%s:reqb %q %v", s.l.name, body, eos)
	if s.l.b.reqBody != nil {
		return s.l.b.reqBody(s, body, eos)
	}
	return proxywasm.ActionContinue
}

func (s *linkStream) OnResponseHeaders(int, bool) proxywasm.Action {
	s.l.tr.add("%s:rsph", s.l.name)
	if s.l.b.rspHdr != nil {
		return s.l.b.rspHdr(s)
	}
	return proxywasm.ActionContinue
}

func (s *linkStream) OnResponseBody(size int, eos bool) proxywasm.Action {
	body, _ := proxywasm.ResponseBody.Get(0, size)
	s.l.tr.add("%s:rspb %q %v", s.l.name, body, eos)
	if s.l.b.rspBody != nil {
		return s.l.b.rspBody(s, body, eos)
	}
	return proxywasm.ActionContinue
}

func (s *linkStream) OnDone() { s.l.tr.add("%s:done", s.l.name) }

// linkSpec is one link of a test chain.
type linkSpec struct {
	name  string
	allow bool // AllowOnHeadersStopIteration
	b     behaviour
}

// startChain loads a chain of test links into a host; config nil gives
// every link an empty section.
func startChain(t *testing.T, specs []linkSpec, config string, cfg hosttest.Config) (*hosttest.Host, *trace, map[string]*testLink, error) {
	t.Helper()
	tr := &trace{}
	made := map[string]*testLink{}
	links := make([]proxywasm.Link, len(specs))
	var sections []string
	for i, sp := range specs {
		links[i] = proxywasm.Link{Name: sp.name, AllowOnHeadersStopIteration: sp.allow, New: func(uint32) proxywasm.PluginContext {
			l := &testLink{name: sp.name, tr: tr, b: sp.b}
			made[sp.name] = l
			return l
		}}
		sections = append(sections, fmt.Sprintf("%q: {}", sp.name))
	}
	if config == "" {
		config = "{" + strings.Join(sections, ", ") + "}"
	}
	cfg.Plugin = proxywasm.NewChain(links)
	cfg.PluginConfig = []byte(config)
	cfg.AllowOnHeadersStopIteration = true
	h, err := hosttest.Start(t, cfg)
	return h, tr, made, err
}

// callout dispatches a keystore call whose answer runs then.
func callout(t *testing.T, then func(r *proxywasm.CallResponse)) {
	t.Helper()
	_, err := proxywasm.DispatchHttpCall("ks", [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "ks"}}, nil, nil, time.Second, then)
	require.NoError(t, err)
}

func TestChainRunsLinksInOrderAndResponsesInReverse(t *testing.T) {
	h, tr, _, err := startChain(t, []linkSpec{{name: "a"}, {name: "b", allow: true}, {name: "c"}}, "", hosttest.Config{
		Upstream: func(*hosttest.Upstream) *hosttest.Response {
			return &hosttest.Response{Status: 200, Body: []byte("ok")}
		},
	})
	require.NoError(t, err)
	res := h.Do(hosttest.Request{Path: "/v1/x", Body: []byte("hi")})
	require.False(t, res.Paused)
	assert.Equal(t, 200, res.Status)
	assert.Equal(t, "ok", string(res.Body))
	require.NotNil(t, res.Upstream)
	assert.Equal(t, "hi", string(res.Upstream.Body))
	assert.Equal(t, []string{
		"a:reqh", "b:reqh", "c:reqh",
		`a:reqb "hi" false`, `b:reqb "hi" false`, `c:reqb "hi" false`,
		`a:reqb "" true`, `b:reqb "" true`, `c:reqb "" true`,
		"c:rsph", "b:rsph", "a:rsph",
		`c:rspb "ok" false`, `b:rspb "ok" false`, `a:rspb "ok" false`,
		`c:rspb "" true`, `b:rspb "" true`, `a:rspb "" true`,
		"a:done", "b:done", "c:done",
	}, tr.events)
}

// gather buffers the body to its end, then replaces it with upper case.
func gather(upper bool) func(s *linkStream, body []byte, eos bool) proxywasm.Action {
	return func(s *linkStream, body []byte, eos bool) proxywasm.Action {
		if !eos {
			return proxywasm.ActionPause
		}
		if upper {
			if err := proxywasm.ReplaceRequestBody(bytes.ToUpper(body)); err != nil {
				panic(err)
			}
		}
		return proxywasm.ActionContinue
	}
}

func TestChainResumesAtTheNextLink(t *testing.T) {
	var resumed []string
	specs := []linkSpec{
		// a holds the headers (and so the body: no allow option) until a callout answers.
		{name: "a", b: behaviour{reqHdr: func(s *linkStream) proxywasm.Action {
			callout(t, func(*proxywasm.CallResponse) {
				resumed = append(resumed, "a")
				require.NoError(t, proxywasm.Resume(s.id, func() bool { return false }))
			})
			return proxywasm.ActionPause
		}}},
		// b gathers the body, replaces it, and holds until its own callout answers.
		{name: "b", allow: true, b: behaviour{
			reqHdr: func(*linkStream) proxywasm.Action { return proxywasm.ActionPause },
			reqBody: func(s *linkStream, body []byte, eos bool) proxywasm.Action {
				if gather(true)(s, body, eos) == proxywasm.ActionPause {
					return proxywasm.ActionPause
				}
				callout(t, func(*proxywasm.CallResponse) {
					resumed = append(resumed, "b")
					require.NoError(t, proxywasm.ContinueRequest())
				})
				return proxywasm.ActionPause
			}}},
		{name: "c"},
	}
	h, tr, _, err := startChain(t, specs, "", hosttest.Config{})
	require.NoError(t, err)
	s := h.NewStream()
	s.SendRequest(hosttest.Request{Path: "/", Chunks: [][]byte{[]byte("hel"), []byte("lo")}})
	res := s.Finish()
	require.True(t, res.Paused)
	assert.Equal(t, []string{"a:reqh"}, tr.events, "a holds headers and body")
	require.Len(t, h.Callouts(), 1)
	h.Respond(h.Callouts()[0].Token, &hosttest.Response{Status: 200})
	require.Nil(t, s.Upstream(), "b still holds the request")
	assert.Equal(t, []string{"a:reqh",
		`a:reqb "hello" true`, // the body held for a reaches it first, as Envoy delivers it
		"b:reqh", `b:reqb "hello" true`,
	}, tr.events)
	require.Len(t, h.Callouts(), 1)
	h.Respond(h.Callouts()[0].Token, &hosttest.Response{Status: 200})
	res = s.Finish()
	require.False(t, res.Paused)
	assert.Equal(t, []string{"a", "b"}, resumed)
	assert.Equal(t, []string{"a:reqh", `a:reqb "hello" true`, "b:reqh", `b:reqb "hello" true`,
		"c:reqh", `c:reqb "HELLO" true`, // c sees the body b replaced
		"c:rsph", "b:rsph", "a:rsph", "a:done", "b:done", "c:done",
	}, tr.events)
	require.NotNil(t, res.Upstream)
	assert.Equal(t, "HELLO", string(res.Upstream.Body))
	assert.Equal(t, 200, res.Status)
}

func TestChainLocalReplyEndsTheChain(t *testing.T) {
	deny := func(*linkStream) proxywasm.Action {
		require.NoError(t, proxywasm.SendLocalResponse(403, [][2]string{{"content-type", "application/json"}}, []byte(`{"error":"no"}`), "denied"))
		return proxywasm.ActionPause
	}
	for _, tc := range []struct {
		name  string
		specs []linkSpec
		want  []string
	}{
		{"in headers", []linkSpec{{name: "a"}, {name: "b", b: behaviour{reqHdr: deny}}, {name: "c"}},
			[]string{"a:reqh", "b:reqh"}},
		{"after a callout", []linkSpec{{name: "a"}, {name: "b", b: behaviour{reqHdr: func(s *linkStream) proxywasm.Action {
			callout(t, func(*proxywasm.CallResponse) {
				require.NoError(t, proxywasm.Resume(s.id, func() bool { deny(s); return true }))
			})
			return proxywasm.ActionPause
		}}}, {name: "c"}},
			[]string{"a:reqh", "b:reqh"}},
		{"in the body", []linkSpec{{name: "a"}, {name: "b", allow: true, b: behaviour{
			reqHdr: func(*linkStream) proxywasm.Action { return proxywasm.ActionPause },
			reqBody: func(s *linkStream, _ []byte, eos bool) proxywasm.Action {
				if !eos {
					return proxywasm.ActionPause
				}
				return deny(s)
			}}}, {name: "c"}},
			[]string{"a:reqh", "b:reqh", `a:reqb "x" false`, `b:reqb "x" false`, `a:reqb "" true`, `b:reqb "x" true`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, tr, _, err := startChain(t, tc.specs, "", hosttest.Config{
				Callouts: func(*hosttest.Callout) *hosttest.Response { return &hosttest.Response{Status: 200} },
			})
			require.NoError(t, err)
			res := h.Do(hosttest.Request{Body: []byte("x")})
			assert.Equal(t, 403, res.Status)
			assert.True(t, res.LocalReply)
			assert.Nil(t, res.Upstream)
			var req []string
			for _, e := range tr.events {
				if strings.Contains(e, ":req") {
					req = append(req, e)
				}
			}
			assert.Equal(t, tc.want, req, "no link after the one that replied sees the request")
		})
	}
}

func TestChainShowsEachLinkTheBodyEnvoyWould(t *testing.T) {
	// In response order c runs first: it rewrites each chunk as it passes;
	// b buffers the whole answer before letting it go; a reads chunks.
	specs := []linkSpec{
		{name: "a"},
		{name: "b", b: behaviour{rspBody: func(_ *linkStream, _ []byte, eos bool) proxywasm.Action {
			if !eos {
				return proxywasm.ActionPause
			}
			return proxywasm.ActionContinue
		}}},
		{name: "c", b: behaviour{rspBody: func(_ *linkStream, body []byte, _ bool) proxywasm.Action {
			if len(body) > 0 {
				require.NoError(t, proxywasm.ResponseBody.Replace(bytes.ToUpper(body)))
			}
			return proxywasm.ActionContinue
		}}},
	}
	h, tr, _, err := startChain(t, specs, "", hosttest.Config{
		Upstream: func(*hosttest.Upstream) *hosttest.Response {
			return &hosttest.Response{Status: 200, Chunks: [][]byte{[]byte("ab"), []byte("cd"), []byte("ef")}}
		},
	})
	require.NoError(t, err)
	res := h.Do(hosttest.Request{})
	require.False(t, res.Paused)
	assert.Equal(t, "ABCDEF", string(res.Body))
	var resp []string
	for _, e := range tr.events {
		if strings.Contains(e, ":rspb") {
			resp = append(resp, e)
		}
	}
	assert.Equal(t, []string{
		`c:rspb "ab" false`, `b:rspb "AB" false`,
		`c:rspb "cd" false`, `b:rspb "ABCD" false`, // c sees only the new chunk, b its whole buffer
		`c:rspb "ef" false`, `b:rspb "ABCDEF" false`,
		`c:rspb "" true`, `b:rspb "ABCDEF" true`, `a:rspb "ABCDEF" true`,
	}, resp)
}

func TestChainResponsePauseResumesTowardsTheClient(t *testing.T) {
	specs := []linkSpec{
		{name: "a"},
		{name: "b", b: behaviour{rspHdr: func(*linkStream) proxywasm.Action {
			callout(t, func(*proxywasm.CallResponse) {
				require.NoError(t, proxywasm.ResponseHeaders.Replace("x-settled", "yes"))
				require.NoError(t, proxywasm.ContinueResponse())
			})
			return proxywasm.ActionPause
		}}},
	}
	h, tr, _, err := startChain(t, specs, "", hosttest.Config{})
	require.NoError(t, err)
	res := h.Do(hosttest.Request{})
	require.True(t, res.Paused)
	assert.Equal(t, []string{"a:reqh", "b:reqh", "b:rsph"}, tr.events)
	h.Respond(h.Callouts()[0].Token, &hosttest.Response{Status: 200})
	res = res.Stream.Finish()
	require.False(t, res.Paused)
	assert.Equal(t, "yes", res.Header("x-settled"))
	assert.Equal(t, []string{"a:reqh", "b:reqh", "b:rsph", "a:rsph", "a:done", "b:done"}, tr.events)
}

func TestChainContinueInsideTheCallbackGoesOn(t *testing.T) {
	specs := []linkSpec{
		{name: "a", b: behaviour{reqHdr: func(*linkStream) proxywasm.Action {
			require.NoError(t, proxywasm.ContinueRequest())
			return proxywasm.ActionPause
		}}},
		{name: "b"},
	}
	h, tr, _, err := startChain(t, specs, "", hosttest.Config{})
	require.NoError(t, err)
	res := h.Do(hosttest.Request{})
	require.False(t, res.Paused)
	assert.Equal(t, 200, res.Status)
	assert.Equal(t, []string{"a:reqh", "b:reqh", "b:rsph", "a:rsph", "a:done", "b:done"}, tr.events)
}

func TestChainStrayContinueFromAnotherLinkIsIgnored(t *testing.T) {
	var stray func()
	specs := []linkSpec{
		{name: "a", b: behaviour{reqHdr: func(s *linkStream) proxywasm.Action {
			callout(t, func(*proxywasm.CallResponse) { _ = proxywasm.ContinueRequest() })
			return proxywasm.ActionContinue // a does not hold; its late continue must not release b
		}}},
		{name: "b", b: behaviour{reqHdr: func(*linkStream) proxywasm.Action {
			callout(t, func(*proxywasm.CallResponse) { stray = func() { _ = proxywasm.ContinueRequest() } })
			return proxywasm.ActionPause
		}}},
	}
	h, _, _, err := startChain(t, specs, "", hosttest.Config{})
	require.NoError(t, err)
	s := h.NewStream()
	s.SendRequest(hosttest.Request{})
	require.Len(t, h.Callouts(), 2)
	h.Respond(h.Callouts()[0].Token, &hosttest.Response{Status: 200})
	assert.Nil(t, s.Upstream(), "a's continue released b's hold")
	h.Respond(h.Callouts()[0].Token, &hosttest.Response{Status: 200})
	require.NotNil(t, stray)
	assert.Nil(t, s.Upstream())
}

func TestChainTicksEveryLinkAtItsOwnPeriod(t *testing.T) {
	h, _, links, err := startChain(t, []linkSpec{
		{name: "a", b: behaviour{period: 200 * time.Millisecond}},
		{name: "b"},
		{name: "c", b: behaviour{period: 300 * time.Millisecond}},
	}, "", hosttest.Config{})
	require.NoError(t, err)
	assert.Equal(t, 100*time.Millisecond, h.TickPeriod())
	for range 6 {
		h.Tick()
	}
	assert.Equal(t, 3, links["a"].ticks)
	assert.Equal(t, 0, links["b"].ticks)
	assert.Equal(t, 2, links["c"].ticks)
}

func TestChainConfiguration(t *testing.T) {
	specs := []linkSpec{{name: "a"}, {name: "b"}, {name: "c"}}
	for _, tc := range []struct {
		name, config, err string
		links             []string
	}{
		{"sections", `{"c": {"x": 1}, "a": {}}`, "", []string{"a", "c"}},
		{"unknown section", `{"a": {}, "d": {}}`, `unknown section "d"`, nil},
		{"case variant", `{"A": {}}`, "chain configuration", nil},
		{"not an object", `{"a": []}`, `section "a" must be a JSON object`, nil},
		{"no section", `{}`, "no filter section", nil},
		{"not JSON", `{"a": `, "chain configuration", nil},
		{"a link refuses", `{"b": {"refuse": true}}`, "b: refused by b", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, links, err := startChain(t, specs, tc.config, hosttest.Config{})
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			var got []string
			for _, n := range []string{"a", "b", "c"} {
				if links[n] != nil {
					got = append(got, n)
				}
			}
			assert.Equal(t, tc.links, got)
			assert.JSONEq(t, `{"x": 1}`, links["c"].cfg)
		})
	}
}

func TestChainLinksShareOneParseOfTheBody(t *testing.T) {
	views := map[string]*reqview.Request{}
	parse := func(name string, replace []byte) func(*linkStream, []byte, bool) proxywasm.Action {
		return func(_ *linkStream, body []byte, eos bool) proxywasm.Action {
			if !eos {
				return proxywasm.ActionPause
			}
			req, err := proxywasm.RequestMemo().ParseRequest(body, reqview.Limits{})
			require.NoError(t, err)
			views[name] = req
			if replace != nil {
				require.NoError(t, proxywasm.ReplaceRequestBody(replace))
			}
			return proxywasm.ActionContinue
		}
	}
	pause := func(*linkStream) proxywasm.Action { return proxywasm.ActionPause }
	specs := []linkSpec{
		{name: "a", allow: true, b: behaviour{reqHdr: pause, reqBody: parse("a", nil)}},
		{name: "b", allow: true, b: behaviour{reqHdr: pause, reqBody: parse("b", []byte(`{"model":"backend"}`))}},
		{name: "c", allow: true, b: behaviour{reqHdr: pause, reqBody: parse("c", nil)}},
	}
	h, _, _, err := startChain(t, specs, "", hosttest.Config{})
	require.NoError(t, err)
	res := h.Do(hosttest.Request{Body: []byte(`{"model":"alias"}`)})
	require.False(t, res.Paused)
	require.Len(t, views, 3)
	assert.Same(t, views["a"], views["b"], "b reuses a's parse of the same body")
	assert.Equal(t, "alias", views["b"].Model)
	assert.NotSame(t, views["b"], views["c"], "a replaced body is parsed afresh")
	assert.Equal(t, "backend", views["c"].Model)
	assert.Equal(t, `{"model":"backend"}`, string(res.Upstream.Body))
}
