package greet

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/apierror"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, raw string
		wantErr   string
	}{
		{"blank means defaults", ``, ""},
		{"full", `{"greeting":"hi","deny_prefixes":["/private"],"error_style":"apigee"}`, ""},
		{"unknown field", `{"greting":"hi"}`, "unknown field"},
		{"trailing data", `{} {}`, "trailing data"},
		{"relative prefix", `{"deny_prefixes":["private"]}`, "must start with /"},
		{"header injection", `{"greeting":"a\r\nx-evil: 1"}`, "one line"},
		{"bad style", `{"error_style":"soap"}`, "error_style"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.raw))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.NotNil(t, p)
		})
	}
}

func TestDecide(t *testing.T) {
	p, err := Parse([]byte(`{"greeting":"hi","deny_prefixes":["/private"]}`))
	require.NoError(t, err)
	tests := []struct {
		name, path, app string
		want            Decision
	}{
		{"caller by app", "/v1/models", "demo", Decision{Greeting: "hi, demo"}},
		{"stranger", "/", "", Decision{Greeting: "hi, stranger"}},
		{"denied", "/private/x", "demo", Decision{Err: apierror.New(403, CodeDenied, "this path is not open to callers")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, p.Decide(tt.path, tt.app))
		})
	}
	assert.Equal(t, "hi", p.ResponseGreeting())
}

// FuzzParse: no configuration crashes the parser, and an accepted greeting
// is always safe to put in a header.
func FuzzParse(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"greeting":"hi"}`, `{"deny_prefixes":["/a"]}`, `[`, `{"greeting":"\r"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := Parse(raw)
		if err != nil {
			return
		}
		g := p.ResponseGreeting()
		if len(g) > maxGreeting || g == "" {
			t.Fatalf("greeting %q accepted", g)
		}
	})
}
