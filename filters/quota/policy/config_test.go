package policy

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/keystoreconf"
	"github.com/tollgate/tollgate/window"
)

func mustParse(t testing.TB, cfg string) *Policy {
	t.Helper()
	p, err := ParseConfig([]byte(cfg))
	require.NoError(t, err)
	return p
}

func TestParseFullConfig(t *testing.T) {
	raw, err := os.ReadFile("testdata/full.json")
	require.NoError(t, err)
	p, err := ParseConfig(raw)
	require.NoError(t, err)

	assert.Equal(t, Keystore{Keystore: keystoreconf.Keystore{Cluster: "keystore", Authority: "keystore", Timeout: 250 * time.Millisecond},
		Path: DefaultPath, Headers: [][2]string{{"x-token", "t"}}}, p.Keystore)
	assert.Equal(t, 200*time.Millisecond, p.SyncPeriod)
	assert.EqualValues(t, 10, p.SyncCount)
	assert.Equal(t, 1024, p.MaxEntries)
	assert.Equal(t, apierror.StyleOpenAI, p.Style)
	assert.Equal(t, [3]bool{true, true, true}, p.UsesMode)
	assert.True(t, p.NeedsRouteName)
	require.Len(t, p.Rules, 4)

	health, chat, local, def := p.Rules[0], p.Rules[1], p.Rules[2], p.Rules[3]
	assert.Equal(t, "/healthz", health.Path)
	assert.Empty(t, health.Quotas, "rules never inherit quotas")
	assert.Nil(t, health.Spike, "rules never inherit spike arrest")
	assert.False(t, health.IdentityQuota)

	assert.Equal(t, Async, chat.Mode)
	assert.True(t, chat.FailOpen, "inherited")
	assert.Equal(t, []KeySource{{Kind: FromIdentity}, {Kind: FromHeader, Header: "x-user"}, {Kind: FromClientIP}}, chat.Keys)
	assert.Equal(t, []window.Spec{{Limit: 100, Interval: 1, Unit: window.Minute, Kind: window.Rolling},
		{Limit: 5000, Interval: 1, Unit: window.Hour, Kind: window.Calendar}}, chat.Quotas)
	assert.Equal(t, &Spike{Rate: window.Rate{Count: 5, Per: time.Second}, Burst: 2, PerRule: true}, chat.Spike)
	assert.True(t, chat.ResponseHeaders)

	assert.Equal(t, Local, local.Mode)
	assert.False(t, local.FailOpen)
	assert.Equal(t, []KeySource{{Kind: FromClientIP}}, local.Keys)
	assert.False(t, local.ResponseHeaders)

	assert.Equal(t, "default", def.Name)
	assert.Equal(t, Strict, def.Mode)
	assert.Equal(t, &Spike{Rate: window.Rate{Count: 30, Per: time.Minute}, Burst: 1}, def.Spike)
}

func TestParseDefaults(t *testing.T) {
	p := mustParse(t, `{"key_sources": [{"identity": true}]}`)
	def := p.Rules[0]
	assert.Equal(t, Strict, def.Mode)
	assert.True(t, def.FailOpen, "quotas fail open by default")
	assert.True(t, def.IdentityQuota)
	assert.True(t, def.ResponseHeaders)
	assert.Equal(t, DefaultTimeout, p.Keystore.Timeout)
	assert.Equal(t, DefaultCluster, p.Keystore.Cluster)
	assert.Equal(t, DefaultSyncPeriod, p.SyncPeriod)
	assert.Equal(t, DefaultMaxEntries, p.MaxEntries)
	assert.Equal(t, "x-tollgate-app", p.Identity.App)
}

func TestParseErrors(t *testing.T) {
	const keys = `"key_sources": [{"client_ip": true}]`
	tests := []struct {
		name, cfg, want string
	}{
		{"empty", ``, "EOF"},
		{"not an object", `[]`, "cannot unmarshal"},
		{"unknown field", `{` + keys + `, "modes": "x"}`, "unknown field"},
		{"trailing data", `{` + keys + `} {}`, "trailing data"},
		{"stray closing brace", `{` + keys + `}}`, "trailing data"},
		{"no key sources", `{}`, "key_sources is required"},
		{"two kinds in one source", `{"key_sources": [{"identity": true, "client_ip": true}]}`, "exactly one"},
		{"bad header source", `{"key_sources": [{"header": "x y"}]}`, "not an HTTP header name"},
		{"bad mode", `{` + keys + `, "mode": "fast"}`, `mode "fast"`},
		{"bad failure mode", `{` + keys + `, "failure_mode": "maybe"}`, "failure_mode"},
		{"bad style", `{` + keys + `, "error_style": "xml"}`, "error_style"},
		{"quota without limit", `{` + keys + `, "quotas": [{"timeUnit": "minute"}]}`, "limit is required"},
		{"quota without unit", `{` + keys + `, "quotas": [{"limit": 1}]}`, "timeUnit is required"},
		{"quota bad unit", `{` + keys + `, "quotas": [{"limit": 1, "timeUnit": "fortnight"}]}`, "time unit"},
		{"quota negative", `{` + keys + `, "quotas": [{"limit": -1, "timeUnit": "minute"}]}`, "out of range"},
		{"duplicate shape", `{` + keys + `, "quotas": [{"limit": 1, "timeUnit": "minute"}, {"limit": 2, "timeUnit": "minutes"}]}`, "share its counter"},
		{"bad rate", `{` + keys + `, "spike_arrest": {"rate": "30px"}}`, "spike_arrest"},
		{"bad burst", `{` + keys + `, "spike_arrest": {"rate": "30pm", "burst": -1}}`, "burst"},
		{"bad identifier", `{` + keys + `, "spike_arrest": {"rate": "30pm", "identifier": "ip"}}`, "identifier"},
		{"timeout too long", `{` + keys + `, "keystore": {"timeout": "2m"}}`, "keystore.timeout"},
		{"timeout not a duration", `{` + keys + `, "keystore": {"timeout": "500"}}`, "keystore.timeout"},
		{"timeout in milliseconds", `{` + keys + `, "keystore": {"timeout_ms": 500}}`, "unknown field"},
		{"token and authorization header", `{` + keys + `, "keystore": {"token": "t0ken", "headers": {"Authorization": "x"}}}`, "keystore.headers"},
		{"sync period too short", `{` + keys + `, "async": {"sync_period": "1ms"}}`, "async.sync_period"},
		{"bad path", `{` + keys + `, "keystore": {"path": "v1/quota"}}`, "keystore.path"},
		{"pseudo header", `{` + keys + `, "keystore": {"headers": {":path": "/x"}}}`, "keystore.headers"},
		{"header line break", `{` + keys + `, "keystore": {"headers": {"x-a": "a\nb"}}}`, "line break"},
		{"sync count", `{` + keys + `, "async": {"sync_count": -1}}`, "async.sync_count"},
		{"max entries", `{` + keys + `, "local": {"max_entries": -5}}`, "local.max_entries"},
		{"rule name reserved", `{` + keys + `, "rules": [{"name": "default"}]}`, "used twice"},
		{"rule name twice", `{` + keys + `, "rules": [{"name": "a"}, {"name": "a"}]}`, "used twice"},
		{"rule name charset", `{` + keys + `, "rules": [{"name": "a b"}]}`, "rules[0].name"},
		{"rule prefix", `{` + keys + `, "rules": [{"path_prefix": "v1"}]}`, "path_prefix"},
		{"rule path", `{` + keys + `, "rules": [{"path": "v1"}]}`, "rules[0].path"},
		{"rule method", `{` + keys + `, "rules": [{"methods": ["post"]}]}`, "upper-case"},
		{"rule error located", `{` + keys + `, "rules": [{}, {"quotas": [{"limit": 1}]}]}`, "rules[1].quotas[0]"},
		{"identity header names", `{` + keys + `, "identity_headers": {"app": "X Y"}}`, "identity_headers"},
		{"too large", `{"x": "` + strings.Repeat("a", MaxConfigLen) + `"}`, "limit is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.cfg))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestLocalOnlyNeedsNoCluster(t *testing.T) {
	p := mustParse(t, `{"mode": "local", "key_sources": [{"client_ip": true}], "keystore": {"cluster": ""}}`)
	assert.Equal(t, [3]bool{false, true, false}, p.UsesMode)
}

func TestNamespaceFollowsTableSize(t *testing.T) {
	a := mustParse(t, `{"key_sources": [{"client_ip": true}]}`)
	b := mustParse(t, `{"key_sources": [{"client_ip": true}], "local": {"max_entries": 16}}`)
	assert.NotEqual(t, a.Namespace, b.Namespace, "tables of different geometry never share keys")
}

func TestModeAndOutcomeNames(t *testing.T) {
	assert.Equal(t, "async", Async.String())
	assert.Equal(t, "invalid", Mode(9).String())
	assert.Equal(t, "spike_denied", SpikeDenied.String())
	assert.Equal(t, "unknown", Outcome(-1).String())
	assert.Equal(t, "tollgate_quota_requests_total.mode.strict.outcome.failed_open", RequestsMetric(Strict, FailedOpen))
	assert.Equal(t, "tollgate_quota_keystore_errors_total.op.sync", KeystoreErrorsMetric("sync"))
	assert.Equal(t, "tollgate_quota_syncs_total.result.ok", SyncsMetric("ok"))
	assert.Len(t, StatsTags(), 5)
}
