package keystoreconf

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/reqview"
)

// block is how a filter embeds Config next to its own fields.
type block struct {
	Config
	Path string `json:"path"`
}

// DecodeConfig is what scripts/configgen writes for a type embedding Config.
func (b *block) DecodeConfig(v reqview.Value, path string) error {
	return config.Object(v, path, b)
}

func (b *block) DecodeField(key string, v reqview.Value, path string) (bool, error) {
	if key == "path" {
		return true, config.String(&b.Path, v, path)
	}
	return b.Config.DecodeField(key, v, path)
}

func compile(t *testing.T, raw string, env map[string]string) (Keystore, error) {
	t.Helper()
	var b block
	if err := config.Decode([]byte(raw), &b); err != nil {
		return Keystore{}, err
	}
	return b.Compile(time.Second, func(k string) string { return env[k] })
}

func TestCompile(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		env  map[string]string
		want Keystore
	}{
		{"defaults", `{}`, nil, Keystore{Cluster: "keystore", Authority: "keystore", Timeout: time.Second}},
		{"all fields", `{"cluster":"ks","authority":"keystore.svc:8420","timeout":"250ms","token":"tok_123","path":"/x"}`, nil,
			Keystore{Cluster: "ks", Authority: "keystore.svc:8420", Timeout: 250 * time.Millisecond, Token: "tok_123"}},
		{"istio cluster name", `{"cluster":"outbound|8420||ks.ns.svc.cluster.local"}`, nil,
			Keystore{Cluster: "outbound|8420||ks.ns.svc.cluster.local", Authority: "outbound|8420||ks.ns.svc.cluster.local", Timeout: time.Second}},
		{"token from the environment", `{"token_env":"TOLLGATE_DATA_TOKEN"}`, map[string]string{"TOLLGATE_DATA_TOKEN": "s3cret-token\n"},
			Keystore{Cluster: "keystore", Authority: "keystore", Timeout: time.Second, Token: "s3cret-token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := compile(t, tt.raw, tt.env)
			require.NoError(t, err)
			assert.Equal(t, tt.want, k)
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct{ name, raw, want string }{
		{"milliseconds as a number", `{"timeout_ms":500}`, "unknown field"},
		{"number timeout", `{"timeout":500}`, "cannot unmarshal number"},
		{"unitless timeout", `{"timeout":"500"}`, "keystore.timeout"},
		{"timeout too long", `{"timeout":"2m"}`, "1m0s"},
		{"timeout zero", `{"timeout":"0s"}`, "keystore.timeout"},
		{"both token sources", `{"token":"a","token_env":"B"}`, "not both"},
		{"unset env", `{"token_env":"MISSING"}`, "MISSING is unset"},
		{"bad env name", `{"token_env":"A-B"}`, "token_env"},
		{"token with space", `{"token":"a b"}`, "printable ASCII"},
		{"token with newline", `{"token":"a\nb"}`, "printable ASCII"},
		{"authority with newline", `{"authority":"ks\r\nx: y"}`, "keystore.authority"},
		{"number token", `{"token":1}`, "token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compile(t, tt.raw, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestAppendAuth(t *testing.T) {
	base := [][2]string{{":path", "/v1/verify"}}
	assert.Equal(t, base, Keystore{}.AppendAuth(base))
	assert.Equal(t, append(base, [2]string{"authorization", "Bearer t0k"}), Keystore{Token: "t0k"}.AppendAuth(base))
}

// The token must never show up in logs, errors or dumps of the configuration.
func TestTokenNeverPrinted(t *testing.T) {
	const tok = "very-secret-token-value"
	k, err := compile(t, `{"token":"`+tok+`"}`, nil)
	require.NoError(t, err)
	var logs strings.Builder
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("configured", "keystore", k, "token", k.Token)
	js, err := json.Marshal(k)
	require.NoError(t, err)
	for _, s := range []string{
		fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s %q", k, k, k, k.Token, k.Token), fmt.Sprintf("%#v", k.Token),
		string(js), logs.String(), k.String(),
	} {
		assert.NotContains(t, s, tok)
	}
	assert.Contains(t, k.String(), "token set")
	assert.Equal(t, tok, k.Token.Reveal())
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{`{}`, `{"cluster":"a","authority":"b:1","timeout":"1s","token":"x"}`, `{"token_env":"T"}`, `{"timeout":"-1s"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var b block
		if config.Decode([]byte(raw), &b) != nil {
			return
		}
		k, err := b.Compile(0, func(string) string { return "env-token" })
		if err != nil {
			return
		}
		if k.Timeout < MinTimeout || k.Timeout > MaxTimeout || k.Cluster == "" || !validAuthority(k.Authority) {
			t.Fatalf("accepted an invalid block: %+v", k)
		}
		for _, h := range k.AppendAuth(nil) {
			if strings.ContainsAny(h[1], "\r\n\x00") {
				t.Fatalf("header value with a line break: %q", h[1])
			}
		}
	})
}
