package policy

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/identity"
	"github.com/tollgate/tollgate/shared/keystoreconf"
)

func mustParse(t *testing.T, raw string) *Policy {
	t.Helper()
	p, err := ParseConfig([]byte(raw))
	require.NoError(t, err)
	return p
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return b
}

func TestParseConfigDefaults(t *testing.T) {
	for _, raw := range []string{"", "  ", "{}"} {
		p := mustParse(t, raw)
		assert.Equal(t, ModeVerify, p.Mode)
		assert.Equal(t, []KeySource{{Header: "x-api-key"}}, p.Sources)
		assert.True(t, p.StripKey)
		assert.Equal(t, FormatTollgate, p.KeyFormat)
		assert.Equal(t, Keystore{Keystore: keystoreconf.Keystore{Cluster: "keystore", Authority: "keystore", Timeout: time.Second}, Path: "/v1/verify"}, p.Keystore)
		assert.Equal(t, CacheSettings{
			TTL: time.Minute, NegativeTTL: 5 * time.Second, ErrorTTL: time.Second,
			MaxEntries: 4096, CoalesceWait: 1250 * time.Millisecond, PollInterval: 5 * time.Millisecond,
		}, p.Cache)
		assert.False(t, p.FailOpen)
		assert.Equal(t, apierror.StyleOpenAI, p.Style)
		assert.Equal(t, "tollgate", p.Realm)
		assert.Equal(t, identity.DefaultHeaders(), p.Identity)
		assert.Len(t, p.IdentityList, 7)
		assert.Nil(t, p.Local)
	}
}

func TestParseConfigValues(t *testing.T) {
	p := mustParse(t, `{
		"key_sources": [{"bearer": true}, {"header": "X-Goog-Api-Key"}, {"query": "key"}],
		"strip_key": false,
		"key_format": "any",
		"keystore": {"cluster": "ks", "authority": "keystore.local", "path": "/verify", "timeout": "250ms", "headers": {"x-token": "t"}},
		"cache": {"ttl": "2m", "negative_ttl": "0s", "error_ttl": "0s", "max_entries": 10, "coalesce_wait": "1s", "poll_interval": "2ms"},
		"failure_mode": "open",
		"error_style": "apigee",
		"realm": "ai",
		"identity_headers": {"app": "X-App"}
	}`)
	assert.Equal(t, []KeySource{{Bearer: true}, {Header: "x-goog-api-key"}, {Query: "key"}}, p.Sources)
	assert.False(t, p.StripKey)
	assert.Equal(t, FormatAny, p.KeyFormat)
	assert.Equal(t, "keystore.local", p.Keystore.Authority)
	assert.Equal(t, 250*time.Millisecond, p.Keystore.Timeout)
	assert.Equal(t, CacheSettings{TTL: 2 * time.Minute, MaxEntries: 10, CoalesceWait: time.Second, PollInterval: 2 * time.Millisecond}, p.Cache)
	assert.True(t, p.FailOpen)
	assert.Equal(t, apierror.StyleApigee, p.Style)
	assert.Equal(t, "x-app", p.Identity.App)
	assert.Equal(t, identity.HeaderProduct, p.Identity.Product)
}

func TestParseConfigStripMode(t *testing.T) {
	p := mustParse(t, `{"mode":"strip","identity_headers":{"product":"x-prod"}}`)
	assert.Equal(t, ModeStrip, p.Mode)
	assert.Contains(t, p.IdentityList, "x-prod")
	assert.NotContains(t, p.IdentityList, identity.HeaderProduct)
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"not json", `{`, "configuration"},
		{"unknown field", `{"cache_ttl":"1s"}`, "unknown field"},
		{"trailing", `{} {}`, "trailing data"},
		{"stray closing brace", `{}}`, "trailing data"},
		{"bad mode", `{"mode":"audit"}`, `mode "audit"`},
		{"bad style", `{"error_style":"xml"}`, "error_style"},
		{"bad failure", `{"failure_mode":"maybe"}`, "failure_mode"},
		{"two kinds in a source", `{"key_sources":[{"header":"a","bearer":true}]}`, "exactly one"},
		{"empty source", `{"key_sources":[{}]}`, "exactly one"},
		{"authorization header", `{"key_sources":[{"header":"Authorization"}]}`, "bearer"},
		{"header with space", `{"key_sources":[{"header":"x api"}]}`, "not an HTTP header"},
		{"identity header as key", `{"key_sources":[{"header":"x-tollgate-app"}]}`, "identity header"},
		{"bad query name", `{"key_sources":[{"query":"k\"y"}]}`, "query"},
		{"numeric duration", `{"cache":{"ttl":60}}`, "duration must be a string"},
		{"bad duration", `{"cache":{"ttl":"soon"}}`, "duration"},
		{"negative duration", `{"cache":{"ttl":"-1s"}}`, "negative"},
		{"timeout too long", `{"keystore":{"timeout":"2m"}}`, "keystore.timeout"},
		{"relative path", `{"keystore":{"path":"verify"}}`, "keystore.path"},
		{"bad callout header", `{"keystore":{"headers":{"a b":"c"}}}`, "keystore.headers"},
		{"token and authorization header", `{"keystore":{"token":"t0ken","headers":{"Authorization":"c"}}}`, "keystore.token"},
		{"timeout in milliseconds", `{"keystore":{"timeout_ms":500}}`, "unknown field"},
		{"too many entries", `{"cache":{"max_entries":2000000}}`, "max_entries"},
		{"negative entries", `{"cache":{"max_entries":-1}}`, "max_entries"},
		{"poll too fast", `{"cache":{"poll_interval":"100us"}}`, "poll_interval"},
		{"bad key format", `{"key_format":"uuid"}`, "key_format"},
		{"realm quote", `{"realm":"a\"b"}`, "realm"},
		{"dup identity", `{"identity_headers":{"app":"x-a","product":"x-a"}}`, "twice"},
		{"pseudo identity", `{"identity_headers":{"app":":path"}}`, "identity header name"},
		{"local and cluster", `{"keystore":{"cluster":"ks"},"local":{"keys":[{"hash":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","app":"a","products":["p"]}],"products":[{"name":"p","operations":[{"path":"/"}]}]}}`, "not both"},
		{"local no keys", `{"local":{}}`, "at least one key"},
		{"local plaintext key", `{"local":{"keys":[{"hash":"tg_secret","app":"a","products":["p"]}]}}`, "never the key itself"},
		{"local unknown product", `{"local":{"keys":[{"hash":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","app":"a","products":["p"]}]}}`, `product "p" is not defined`},
		{"local bad product", `{"local":{"keys":[{"hash":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","app":"a","products":["p"]}],"products":[{"name":"p","operations":[{"path":"x"}]}]}}`, "products[0]"},
		{"local missing set", `{"local":{"keys":[{"hash":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","app":"a","products":["p"]}],"products":[{"name":"p","operationSets":["s"]}]}}`, `operation set "s"`},
		{"local dup hash", `{"local":{"keys":[{"hash":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","app":"a","products":["p"]},{"hash":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","app":"b","products":["p"]}],"products":[{"name":"p","operations":[{"path":"/"}]}]}}`, "twice"},
		{"local bad app", `{"local":{"keys":[{"hash":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","app":"A B","products":["p"]}],"products":[{"name":"p","operations":[{"path":"/"}]}]}}`, "app"},
		{"local no products", `{"local":{"keys":[{"hash":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","app":"a"}]}}`, "at least one product"},
		{"local bad developer", `{"local":{"keys":[{"hash":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","app":"a","developer":"nobody","products":["p"]}],"products":[{"name":"p","operations":[{"path":"/"}]}]}}`, "e-mail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.raw))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	_, err := ParseConfig(make([]byte, MaxConfigLen+1))
	require.ErrorContains(t, err, "limit")
}

func TestParseConfigLocal(t *testing.T) {
	p, err := ParseConfig(fixture(t, "local.json"))
	require.NoError(t, err)
	assert.Equal(t, FormatAny, p.KeyFormat)
	require.Len(t, p.Local, 2)
	g := p.Local[HashKey("foo")]
	require.NotNil(t, g)
	assert.Equal(t, "demo", g.App)
	require.Len(t, g.Entitlements, 1)
	assert.Len(t, g.Entitlements[0].Operations, 2)
	assert.NotNil(t, p.Local[HashKey("bar")], "upper-case hashes are normalised")
}

func TestDurationJSON(t *testing.T) {
	d := Duration(1500 * time.Millisecond)
	b, err := d.MarshalJSON()
	require.NoError(t, err)
	assert.Equal(t, `"1.5s"`, string(b))
	var back Duration
	require.NoError(t, back.UnmarshalJSON(b))
	assert.Equal(t, d, back)
}

func TestCacheNamespace(t *testing.T) {
	a := mustParse(t, `{}`)
	assert.Equal(t, a.CacheNamespace(), mustParse(t, `{"keystore":{"cluster":"keystore","path":"/v1/verify"}}`).CacheNamespace())
	for _, other := range []string{
		`{"keystore":{"cluster":"other"}}`,
		`{"cache":{"ttl":"0s"}}`,
		`{"cache":{"negative_ttl":"1s"}}`,
		`{"cache":{"max_entries":10}}`,
	} {
		assert.NotEqual(t, a.CacheNamespace(), mustParse(t, other).CacheNamespace(), other)
	}
	assert.Contains(t, a.CacheNamespace(), "tollgate.apikey.v1.")
}
