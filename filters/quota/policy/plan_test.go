package policy

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/window"
)

func request(method, path string, headers map[string]string, ip string) Request {
	return Request{
		Method:    method,
		Path:      path,
		Header:    func(n string) string { return headers[n] },
		ClientIP:  func() string { return ip },
		RouteName: func() string { return headers["route"] },
	}
}

func TestMatch(t *testing.T) {
	p := mustParse(t, `{"key_sources": [{"client_ip": true}], "rules": [
		{"name": "exact", "path": "/healthz"},
		{"name": "chat", "path_prefix": "/v1/chat/", "methods": ["POST"]},
		{"name": "routed", "route_name": "r1"}]}`)
	tests := []struct {
		method, path, route, want string
	}{
		{"GET", "/healthz", "", "exact"},
		{"GET", "/healthz?x=1", "", "exact"},
		{"GET", "/healthz/x", "", "default"},
		{"POST", "/v1/chat/completions", "", "chat"},
		{"GET", "/v1/chat/completions", "", "default"},
		{"POST", "/v1/chat", "", "default"},
		{"GET", "/anything", "r1", "routed"},
		{"GET", "/anything", "r2", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.route, func(t *testing.T) {
			r := p.Match(request(tt.method, tt.path, map[string]string{"route": tt.route}, ""))
			assert.Equal(t, tt.want, r.Name)
		})
	}
}

func TestPlan(t *testing.T) {
	p := mustParse(t, `{
	  "key_sources": [{"identity": true}, {"header": "x-user"}, {"client_ip": true}],
	  "quotas": [{"limit": 10, "timeUnit": "minute"}],
	  "spike_arrest": {"rate": "5ps"},
	  "rules": [
	    {"name": "open", "path": "/open", "quotas": []},
	    {"name": "noident", "path": "/noident", "identity_quota": false, "quotas": []},
	    {"name": "shared", "path": "/shared", "quotas": [], "spike_arrest": {"rate": "1ps", "identifier": "rule"}}
	  ]}`)
	minute10 := window.Spec{Limit: 10, Interval: 1, Unit: window.Minute, Kind: window.Calendar}
	chat60 := window.Spec{Limit: 60, Interval: 1, Unit: window.Minute, Kind: window.Calendar}
	ident := map[string]string{"x-tollgate-app": "demo", "x-tollgate-product": "gold",
		"x-tollgate-request-quota": "60/1minute/calendar;scope=gold:set:chat", "x-user": "u1"}
	tests := []struct {
		name    string
		path    string
		headers map[string]string
		ip      string
		key     string
		checks  []Check
		spike   string
		err     bool
	}{
		{"identity with quota", "/x", ident, "10.0.0.1:5555", "demo", []Check{
			{Key: counter.Key{App: "demo", Product: "gold", Operation: "gold:set:chat", Kind: counter.Requests}, Spec: chat60},
			{Key: counter.Key{App: "demo", Product: "rule:default", Kind: counter.Requests}, Spec: minute10},
		}, "default|demo", false},
		{"product-scoped quota has no operation", "/x", map[string]string{"x-tollgate-app": "demo", "x-tollgate-product": "gold",
			"x-tollgate-request-quota": "60/1minute/calendar;scope=gold"}, "", "demo", []Check{
			{Key: counter.Key{App: "demo", Product: "gold", Kind: counter.Requests}, Spec: chat60},
			{Key: counter.Key{App: "demo", Product: "rule:default", Kind: counter.Requests}, Spec: minute10},
		}, "default|demo", false},
		{"header key", "/x", map[string]string{"x-user": "u1"}, "10.0.0.1:5555", "hdr:x-user:u1", []Check{
			{Key: counter.Key{App: "hdr:x-user:u1", Product: "rule:default", Kind: counter.Requests}, Spec: minute10},
		}, "default|hdr:x-user:u1", false},
		{"client ip v4", "/x", nil, "10.0.0.1:5555", "ip:10.0.0.1", []Check{
			{Key: counter.Key{App: "ip:10.0.0.1", Product: "rule:default", Kind: counter.Requests}, Spec: minute10},
		}, "default|ip:10.0.0.1", false},
		{"client ip v6", "/x", nil, "[::1]:80", "ip:::1", []Check{
			{Key: counter.Key{App: "ip:::1", Product: "rule:default", Kind: counter.Requests}, Spec: minute10},
		}, "default|ip:::1", false},
		{"identity quota only", "/open", ident, "", "demo", []Check{
			{Key: counter.Key{App: "demo", Product: "gold", Operation: "gold:set:chat", Kind: counter.Requests}, Spec: chat60},
		}, "", false},
		{"nothing to limit", "/noident", ident, "", "", nil, "", false},
		{"spike per rule", "/shared", map[string]string{"x-user": "u9"}, "", "hdr:x-user:u9", nil, "shared|*", false},
		{"malformed identity quota", "/x", map[string]string{"x-tollgate-app": "demo", "x-tollgate-request-quota": "lots"}, "", "", nil, "", true},
		{"invalid identity quota", "/x", map[string]string{"x-tollgate-app": "demo", "x-tollgate-request-quota": "5/1fortnight/calendar;scope=p"}, "", "demo", nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := p.Plan(request("GET", tt.path, tt.headers, tt.ip))
			if tt.err {
				require.NotNil(t, pl.Err)
				assert.Equal(t, 500, pl.Err.Status)
				return
			}
			require.Nil(t, pl.Err)
			assert.Equal(t, tt.key, pl.Key)
			assert.Equal(t, tt.checks, pl.Checks)
			assert.Equal(t, tt.spike, pl.SpikeID)
		})
	}
}

func TestPlanNoKey(t *testing.T) {
	p := mustParse(t, `{"key_sources": [{"header": "x-user"}], "quotas": [{"limit": 1, "timeUnit": "minute"}]}`)
	pl := p.Plan(request("GET", "/", nil, "10.0.0.1:1"))
	assert.Empty(t, pl.Key)
	assert.Empty(t, pl.Checks)
	assert.True(t, pl.NoKey)
}

// TestPlanMakesNoHostCallsForUnlimitedRules: a rule that limits nothing
// reads neither headers nor the client address.
func TestPlanMakesNoHostCallsForUnlimitedRules(t *testing.T) {
	p := mustParse(t, `{"key_sources": [{"client_ip": true}], "rules": [{"name": "free", "path_prefix": "/"}]}`)
	r := Request{Method: "GET", Path: "/x",
		Header:   func(string) string { t.Fatal("header read"); return "" },
		ClientIP: func() string { t.Fatal("client ip read"); return "" }}
	pl := p.Plan(r)
	assert.Equal(t, "free", pl.Rule.Name)
	assert.Empty(t, pl.Checks)
	assert.False(t, pl.NoKey, "nothing to limit is not a missing key")
}

func TestBoundedKeys(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct {
		in     string
		hashed bool
	}{
		{"plain", false},
		{strings.Repeat("a", 256), false},
		{long, true},
		{"quote\"d", true},
		{"back\\slash", true},
		{"ctl\x01", true},
		{"bad\xffutf8", true},
		{"ünïcode", false},
	}
	for _, tt := range tests {
		got := bounded(tt.in)
		if tt.hashed {
			assert.True(t, strings.HasPrefix(got, "sha256:"), tt.in)
			assert.Len(t, got, 7+64)
		} else {
			assert.Equal(t, tt.in, got)
		}
		k := counter.Key{App: got, Kind: counter.Requests}
		assert.NoError(t, k.Validate())
	}
	assert.NotEqual(t, bounded(long), bounded(long+"b"))
}

func TestStatsTagsExtractLabels(t *testing.T) {
	names := map[string]map[string]string{
		"wasmcustom." + RequestsMetric(Async, SpikeDenied): {"mode": "async", "outcome": "spike_denied"},
		"wasmcustom." + KeystoreErrorsMetric("consume"):    {"op": "consume"},
		"wasmcustom." + SyncsMetric("error"):               {"result": "error"},
	}
	for name, want := range names {
		got := map[string]string{}
		for _, tag := range StatsTags() {
			if m := regexp.MustCompile(tag.Regex).FindStringSubmatch(name); m != nil {
				got[tag.Name] = m[2]
			}
		}
		assert.Equal(t, want, got, name)
	}
}
