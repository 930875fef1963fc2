package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/shared/identity"
)

func headerGetter(h map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := h[name]
		return v, ok
	}
}

func TestExtract(t *testing.T) {
	all := `{"key_sources":[{"header":"x-api-key"},{"bearer":true},{"query":"key"}]}`
	key, err := model.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	hdr := []string{"x-api-key"}
	tests := []struct {
		name    string
		config  string
		headers map[string]string
		path    string
		want    Extraction
	}{
		{"default header", ``, map[string]string{"x-api-key": " tg_abc "}, "/v1/x",
			Extraction{Key: "tg_abc", Source: 0, RemoveHeaders: hdr, Path: "/v1/x"}},
		{"missing; unconfigured query name kept", ``, map[string]string{"authorization": "Bearer tg_abc"}, "/v1/x?key=tg_abc",
			Extraction{Source: -1, RemoveHeaders: hdr, Path: "/v1/x?key=tg_abc"}},
		{"a well-formed key under any name is cut out", ``, nil, "/v1/x?a=1&token=" + key + "&b=2",
			Extraction{Source: -1, RemoveHeaders: hdr, Path: "/v1/x?a=1&b=2", PathChanged: true}},
		{"an escaped well-formed key too", ``, nil, "/v1/x?t=%20" + key + "%20",
			Extraction{Source: -1, RemoveHeaders: hdr, Path: "/v1/x", PathChanged: true}},
		{"empty header still stripped", ``, map[string]string{"x-api-key": ""}, "/",
			Extraction{Source: -1, RemoveHeaders: hdr, Path: "/"}},
		{"bearer", `{"key_sources":[{"bearer":true}]}`, map[string]string{"authorization": "bearer  tg_b "}, "/",
			Extraction{Key: "tg_b", Source: 0, RemoveHeaders: []string{"authorization"}, Path: "/"}},
		{"basic auth is not a key but is stripped", `{"key_sources":[{"bearer":true}]}`, map[string]string{"authorization": "Basic dTpw"}, "/",
			Extraction{Source: -1, RemoveHeaders: []string{"authorization"}, Path: "/"}},
		{"query", `{"key_sources":[{"query":"key"}]}`, nil, "/v1/x?a=1&key=tg_q&b=2",
			Extraction{Key: "tg_q", Source: 0, Path: "/v1/x?a=1&b=2", PathChanged: true}},
		{"query only param", `{"key_sources":[{"query":"key"}]}`, nil, "/v1/x?key=tg_q",
			Extraction{Key: "tg_q", Source: 0, Path: "/v1/x", PathChanged: true}},
		{"query case variants are carriers, not keys", `{"key_sources":[{"query":"key"}]}`, nil, "/v1/x?KEY=tg_a&k%45y=tg_b&keys=1",
			Extraction{Source: -1, Path: "/v1/x?keys=1", PathChanged: true}},
		{"query not stripped", `{"key_sources":[{"query":"key"}],"strip_key":false}`, nil, "/v1/x?key=tg_q",
			Extraction{Key: "tg_q", Source: 0, Path: "/v1/x?key=tg_q"}},
		{"first source wins, every carrier stripped", all,
			map[string]string{"x-api-key": "tg_h", "authorization": "Bearer tg_b"}, "/p?key=tg_q",
			Extraction{Key: "tg_h", Source: 0, RemoveHeaders: []string{"x-api-key", "authorization"}, Path: "/p", PathChanged: true}},
		{"falls through empty header", all,
			map[string]string{"x-api-key": "", "authorization": "Bearer tg_b"}, "/p",
			Extraction{Key: "tg_b", Source: 1, RemoveHeaders: []string{"x-api-key", "authorization"}, Path: "/p"}},
		{"falls through to the query", all,
			map[string]string{"authorization": "Basic x"}, "/p?key=tg_q&Key=tg_r",
			Extraction{Key: "tg_q", Source: 2, RemoveHeaders: []string{"x-api-key", "authorization"}, Path: "/p", PathChanged: true}},
		{"header kept when not stripping", `{"strip_key":false}`, map[string]string{"x-api-key": "tg_h"}, "/?t=" + key,
			Extraction{Key: "tg_h", Source: 0, Path: "/?t=" + key}},
		{"any format: only named carriers", `{"key_format":"any","key_sources":[{"query":"key"}]}`, nil, "/p?t=" + key + "&key=k",
			Extraction{Key: "k", Source: 0, Path: "/p?t=" + key, PathChanged: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.config)
			assert.Equal(t, tt.want, p.Extract(headerGetter(tt.headers), tt.path))
		})
	}
}

func TestQueryParam(t *testing.T) {
	tests := []struct {
		path, name, value, rest string
		found                   bool
	}{
		{"/x", "key", "", "/x", false},
		{"/x?", "key", "", "/x?", false},
		{"/x?a=1", "key", "", "/x?a=1", false},
		{"/x?key=v", "key", "v", "/x", true},
		{"/x?key=v&key=w", "key", "v", "/x", true},
		{"/x?a=1&key=v", "key", "v", "/x?a=1", true},
		{"/x?key=v&a=%2F", "key", "v", "/x?a=%2F", true},
		{"/x?k%65y=v%2B1", "key", "v+1", "/x", true},
		{"/x?key=a+b", "key", "a b", "/x", true},
		{"/x?key", "key", "", "/x", true},
		{"/x?key=%zz", "key", "%zz", "/x", true},
		{"/x?keys=v", "key", "", "/x?keys=v", false},
		{"/x?a=1&key=v#frag", "key", "v", "/x?a=1#frag", true},
		{"/x?a&&b", "key", "", "/x?a&&b", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			v, rest, found := QueryParam(tt.path, tt.name)
			assert.Equal(t, tt.value, v)
			assert.Equal(t, tt.rest, rest)
			assert.Equal(t, tt.found, found)
		})
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		in, token string
		ok        bool
	}{
		{"Bearer abc", "abc", true},
		{"bEaReR   abc  ", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Basic abc", "", false},
		{"Bearerabc", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		token, ok := BearerToken(tt.in)
		assert.Equal(t, tt.token, token, tt.in)
		assert.Equal(t, tt.ok, ok, tt.in)
	}
}

func TestScreen(t *testing.T) {
	good, err := model.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	last := byte('0')
	if good[len(good)-1] == last {
		last = '1'
	}
	typo := good[:len(good)-1] + string(last)
	strict := mustParse(t, ``)
	loose := mustParse(t, `{"key_format":"any"}`)
	long := string(make([]byte, MaxKeyLen+1))
	tests := []struct {
		name          string
		key           string
		strict, loose bool
	}{
		{"generated", good, true, true},
		{"typo", typo, false, true},
		{"foreign", "sk-abc", false, true},
		{"empty", "", false, false},
		{"too long", long, false, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.strict, strict.Screen(tt.key), tt.name)
		assert.Equal(t, tt.loose, loose.Screen(tt.key), tt.name)
	}
	assert.Equal(t, "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", HashKey("foo"))
}

func TestUpstreamHeaders(t *testing.T) {
	p := mustParse(t, `{"key_sources":[{"header":"x-api-key"},{"query":"key"}]}`)
	in := [][2]string{
		{":method", "GET"}, {":path", "/v1/models?key=tg_x&a=1"}, {":authority", "gw"},
		{"x-api-key", "tg_x"}, {"x-tollgate-app", "spoof"}, {"cookie", "a=1"}, {"cookie", "b=2"},
	}
	get := func(name string) (string, bool) {
		for _, kv := range in {
			if kv[0] == name {
				return kv[1], true
			}
		}
		return "", false
	}
	x := p.Extract(get, "/v1/models?key=tg_x&a=1")
	allowed := Decision{Outcome: Allowed, Pass: true, Identity: identity.Identity{App: "demo", Product: "chat"}}
	out, changed := p.UpstreamHeaders(in, x, allowed)
	assert.True(t, changed)
	assert.Equal(t, [][2]string{
		{":method", "GET"}, {":path", "/v1/models?a=1"}, {":authority", "gw"},
		{"cookie", "a=1"}, {"cookie", "b=2"},
		{"x-tollgate-app", "demo"}, {"x-tollgate-product", "chat"},
	}, out)
	assert.Equal(t, "/v1/models?key=tg_x&a=1", in[1][1], "the snapshot is not modified")

	clean := [][2]string{{":method", "GET"}, {":path", "/"}}
	out, changed = p.UpstreamHeaders(clean, Extraction{Source: -1, Path: "/"}, Decision{Pass: true})
	assert.False(t, changed, "fail-open without spoofed headers changes nothing")
	assert.Equal(t, clean, out)

	spoofs := [][2]string{
		{":path", "/"}, {"x_api_key", "tg_x"}, {"X-Api-Key", "tg_x"}, {"x_tollgate_app", "spoof"},
		{"X-TOLLGATE-PRODUCT", "spoof"}, {"x-tollgate-anything", "spoof"}, {"x_tollgate_priority", "spoof"},
		{"x-tollgatex", "kept"}, {"x-tollgate", "kept"}, {"accept", "kept"},
	}
	out, changed = p.UpstreamHeaders(spoofs, p.Extract(func(string) (string, bool) { return "", false }, "/"), Decision{Pass: true})
	assert.True(t, changed)
	assert.Equal(t, [][2]string{{":path", "/"}, {"x-tollgatex", "kept"}, {"x-tollgate", "kept"}, {"accept", "kept"}}, out,
		"key and identity headers go in every spelling, and the whole x-tollgate- namespace")

	strip := mustParse(t, `{"mode":"strip"}`)
	out, changed = strip.UpstreamHeaders(in, Extraction{Source: -1}, Decision{Pass: true})
	assert.True(t, changed)
	assert.Len(t, out, len(in)-1, "only the identity header goes; keys are not a strip instance's business")
}
