package policy

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParseConfig: any configuration is accepted or rejected with an error, never a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"key_sources":[{"query":"key"}],"cache":{"ttl":"1s"}}`))
	f.Add([]byte(`{"mode":"strip"}`))
	f.Add([]byte(`{"local":{"keys":[{"hash":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","app":"a","products":["p"]}],"products":[{"name":"p","operations":[{"path":"/**"}]}]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := ParseConfig(raw)
		if err != nil {
			return
		}
		require.NotEmpty(t, p.IdentityList)
		if p.Mode == ModeVerify {
			require.NotEmpty(t, p.Sources)
		}
	})
}

// FuzzQueryParam: removing a parameter keeps everything else and leaves no
// occurrence of it behind.
func FuzzQueryParam(f *testing.F) {
	f.Add("/v1/x?a=1&key=tg_abc&b=2", "key")
	f.Add("/x?key", "key")
	f.Add("/x?k%65y=1&key=2#f", "key")
	f.Add("/x", "key")
	f.Fuzz(func(t *testing.T, path, name string) {
		v, rest, found := QueryParam(path, name)
		if !found {
			require.Equal(t, path, rest)
			require.Empty(t, v)
			return
		}
		require.LessOrEqual(t, len(rest), len(path))
		_, again, foundAgain := QueryParam(rest, name)
		require.False(t, foundAgain, "parameter still present in %q", rest)
		require.Equal(t, rest, again)
		base := path[:strings.IndexByte(path, '?')]
		require.True(t, strings.HasPrefix(rest, base))
	})
}

// FuzzDecodeVerify: any keystore answer decodes to a well-formed Answer that
// survives the cache encoding, and deciding on it never panics.
func FuzzDecodeVerify(f *testing.F) {
	f.Add(200, []byte(`{"valid":true,"app":"a","entitlements":[{"product":"p","operations":[{"path":"/**","methods":["*"]}]}]}`))
	f.Add(401, []byte(`{"valid":false,"reason":"revoked"}`))
	f.Add(200, []byte(`{"valid":true,"app":"a","expires_at":"2020-01-01T00:00:00Z","entitlements":[{"operations":[{"path":"/x*","request_quota":{"limit":1}}]}]}`))
	f.Add(0, []byte(nil))
	p, err := ParseConfig(nil)
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		a := DecodeVerify(status, body)
		switch a.Kind {
		case Granted:
			require.NotNil(t, a.Grant)
			require.NotEmpty(t, a.Grant.App)
		case Denied, Failed:
			require.NotEmpty(t, a.Reason)
		default:
			t.Fatalf("kind %q", a.Kind)
		}
		enc, err := a.Encode()
		require.NoError(t, err)
		back, err := DecodeAnswer(enc)
		require.NoError(t, err)
		require.Equal(t, a.Kind, back.Kind)
		d := p.Decide(back, 0, "POST", "/v1/chat/completions", now)
		if !d.Pass {
			require.NotNil(t, d.Error)
		}
		for _, h := range d.Identity.Pairs(p.Identity) {
			require.NotContains(t, h[1], "\n")
		}
	})
}

// FuzzDecodeAnswer: arbitrary cached bytes never panic the decoder.
func FuzzDecodeAnswer(f *testing.F) {
	f.Add([]byte(`G{"a":"x"}`))
	f.Add([]byte(`Drevoked`))
	f.Add([]byte(`E`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeAnswer(b)
		if err == nil && a.Kind == Granted {
			require.NotEmpty(t, a.Grant.App)
		}
	})
}

// FuzzExtract: whatever the headers and path, extraction yields a key only
// from a configured source and never leaves a query key in the path.
func FuzzExtract(f *testing.F) {
	f.Add("tg_a", "Bearer tg_b", "/x?key=tg_c&y=1")
	f.Add("", "Basic x", "/x?key")
	p, err := ParseConfig([]byte(`{"key_sources":[{"header":"x-api-key"},{"bearer":true},{"query":"key"}]}`))
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, header, auth, path string) {
		x := p.Extract(func(name string) (string, bool) {
			switch name {
			case "x-api-key":
				return header, header != ""
			case "authorization":
				return auth, auth != ""
			}
			return "", false
		}, path)
		if x.Key == "" {
			require.Equal(t, -1, x.Source)
		} else {
			require.GreaterOrEqual(t, x.Source, 0)
		}
		_, _, found := QueryParam(x.Path, "key")
		require.False(t, found)
	})
}

// FuzzScrubQuery: after Extract, no parameter of the forwarded path is a key
// carrier, and the path before the query is untouched.
func FuzzScrubQuery(f *testing.F) {
	f.Add("/v1/x?a=1&key=tg_abc&KEY=2&b=2")
	f.Add("/x?k%65y&t=tg_123#f")
	f.Add("/x")
	p, err := ParseConfig([]byte(`{"key_sources":[{"header":"x-api-key"},{"query":"key"},{"query":"api_key"}]}`))
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, path string) {
		x := p.Extract(func(string) (string, bool) { return "", false }, path)
		require.Equal(t, x.PathChanged, x.Path != path)
		base, query, hasQuery := strings.Cut(x.Path, "?")
		if !hasQuery {
			return
		}
		require.True(t, strings.HasPrefix(path, base+"?"))
		query, _, _ = strings.Cut(query, "#")
		for _, part := range strings.Split(query, "&") {
			require.False(t, p.carriesKey(part), "carrier %q left in %q", part, x.Path)
		}
	})
}
