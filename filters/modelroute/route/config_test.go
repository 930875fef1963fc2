package route

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/apierror"
)

func loadFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

func seedPolicy(t testing.TB) *Policy {
	t.Helper()
	p, err := Parse(loadFixture(t, "seed.json"))
	require.NoError(t, err)
	return p
}

func TestParseSeed(t *testing.T) {
	p := seedPolicy(t)
	assert.Equal(t, "x-tollgate-model", p.RoutingHeader)
	assert.Equal(t, DefaultAllowedModelsHeader, p.AllowedModelsHeader)
	assert.Equal(t, DefaultPriorityHeader, p.PriorityHeader)
	assert.EqualValues(t, 1<<20, p.MaxBodyBytes)
	assert.EqualValues(t, DefaultMaxResponseBytes, p.MaxResponseBytes)
	assert.Equal(t, "standard", p.DefaultPriority)
	require.Len(t, p.Models(), 3)

	for _, name := range []string{"gemma-3-1b-it", "gemma", "google/gemma-3-1b-it"} {
		m, ok := p.Lookup(name)
		require.True(t, ok, name)
		assert.Equal(t, "gemma-3-1b-it", m.Name)
		assert.Equal(t, []Target{{Route: "gemma", BackendModel: "/gcs/google/gemma-3-1b-it", Weight: 1}}, m.Targets)
		assert.True(t, m.MapResponse)
		assert.Equal(t, "x-session-id", m.StickyHeader)
	}
	llama, ok := p.Lookup("llama-3.1-8b")
	require.True(t, ok)
	assert.Equal(t, []Target{
		{Route: "llama-stable", BackendModel: "llama-3.1-8b", Weight: 90},
		{Route: "llama-canary", BackendModel: "llama-3.1-8b-canary", Weight: 10},
	}, llama.Targets)
	assert.False(t, llama.MapResponse)
	emb, _ := p.Lookup("text-embedding-small")
	assert.Equal(t, "x-user", emb.StickyHeader)
	_, ok = p.Lookup("gpt-4o")
	assert.False(t, ok)
}

func TestParseDefaults(t *testing.T) {
	for _, in := range []string{"", "  ", "{}"} {
		p, err := Parse([]byte(in))
		require.NoError(t, err, "%q", in)
		assert.Equal(t, DefaultRoutingHeader, p.RoutingHeader)
		assert.Equal(t, DefaultProductHeader, p.ProductHeader)
		assert.Equal(t, DefaultAppHeader, p.AppHeader)
		assert.Equal(t, DefaultPublicModelHeader, p.PublicModelHeader)
		assert.EqualValues(t, DefaultMaxBodyBytes, p.MaxBodyBytes)
		assert.Equal(t, apierror.StyleOpenAI, p.Style)
		assert.False(t, p.Passthrough)
		assert.Empty(t, p.Models())
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(t *testing.T, p *Policy)
	}{
		{"gateway api header is lower-cased", `{"routing_header":"X-Gateway-Model-Name"}`, func(t *testing.T, p *Policy) {
			assert.Equal(t, GatewayAPIRoutingHeader, p.RoutingHeader)
		}},
		{"identity headers", `{"allowed_models_header":"X-Models","product_header":"x-prod","app_header":"x-app"}`, func(t *testing.T, p *Policy) {
			assert.Equal(t, "x-models", p.AllowedModelsHeader)
			assert.Equal(t, "x-prod", p.ProductHeader)
			assert.Equal(t, "x-app", p.AppHeader)
		}},
		{"passthrough and hide", `{"unknown_models":"passthrough","hide_forbidden":true,"require_identity":true,"error_style":"apigee"}`, func(t *testing.T, p *Policy) {
			assert.True(t, p.Passthrough)
			assert.True(t, p.HideForbidden)
			assert.True(t, p.RequireIdentity)
			assert.Equal(t, apierror.StyleApigee, p.Style)
		}},
		{"route defaults to name", `{"models":[{"name":"m"}]}`, func(t *testing.T, p *Policy) {
			m, _ := p.Lookup("m")
			assert.Equal(t, []Target{{Route: "m", BackendModel: "m", Weight: 1}}, m.Targets)
		}},
		{"weights default to 1, 0 drains", `{"models":[{"name":"m","targets":[{"route":"a"},{"route":"b","weight":0}]}]}`, func(t *testing.T, p *Policy) {
			m, _ := p.Lookup("m")
			assert.EqualValues(t, 1, m.Targets[0].Weight)
			assert.EqualValues(t, 0, m.Targets[1].Weight)
			assert.EqualValues(t, 1, m.total)
		}},
		{"global map_response_model, per-model off", `{"map_response_model":true,"models":[{"name":"a","backend_model":"x"},{"name":"b","map_response_model":false}]}`, func(t *testing.T, p *Policy) {
			a, _ := p.Lookup("a")
			b, _ := p.Lookup("b")
			assert.True(t, a.MapResponse)
			assert.False(t, b.MapResponse)
		}},
		{"public model header is lower-cased", `{"public_model_header":"X-Public-Model"}`, func(t *testing.T, p *Policy) {
			assert.Equal(t, "x-public-model", p.PublicModelHeader)
		}},
		{"paths", `{"paths":["/v1/chat/","/v1/embeddings"]}`, func(t *testing.T, p *Policy) {
			assert.Equal(t, []string{"/v1/chat/", "/v1/embeddings"}, p.Paths)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.in))
			require.NoError(t, err)
			tt.check(t, p)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"not json", `{`, "modelroute config"},
		{"trailing", `{} {}`, "trailing data"},
		{"stray closing brace", `{}}`, "trailing data"},
		{"unknown field", `{"routing_headr":"x"}`, `unknown field "routing_headr"`},
		{"bad header", `{"routing_header":"x model"}`, `routing_header "x model": not an HTTP header name`},
		{"pseudo header", `{"routing_header":":authority"}`, "not an HTTP header name"},
		{"same headers", `{"routing_header":"x-a","priority_header":"X-A"}`, "routing_header and priority_header"},
		{"bad public model header", `{"public_model_header":"x model"}`, `public_model_header "x model": not an HTTP header name`},
		{"public model header is the routing header", `{"public_model_header":"X-Tollgate-Model"}`, "public_model_header"},
		{"public model header is the priority header", `{"priority_header":"x-p","public_model_header":"x-p"}`, "public_model_header"},
		{"bad sticky", `{"sticky_header":"a b"}`, "sticky_header"},
		{"negative body", `{"max_body_bytes":-1}`, "max_body_bytes -1"},
		{"huge body", `{"max_body_bytes":1099511627776}`, "max_body_bytes"},
		{"bad response limit", `{"max_response_bytes":-5}`, "max_response_bytes"},
		{"relative path", `{"paths":["v1/chat"]}`, `paths[0] "v1/chat" must start with /`},
		{"unknown_models", `{"unknown_models":"allow"}`, `unknown_models "allow"`},
		{"error_style", `{"error_style":"xml"}`, `error_style "xml"`},
		{"model without name", `{"models":[{"route":"a"}]}`, "models[0].name is empty"},
		{"duplicate name", `{"models":[{"name":"a"},{"name":"a"}]}`, `name "a" is already used by model "a"`},
		{"alias clash", `{"models":[{"name":"a","aliases":["x"]},{"name":"b","aliases":["x"]}]}`, `models[1]: name "x" is already used by model "a"`},
		{"alias equals other name", `{"models":[{"name":"a"},{"name":"b","aliases":["a"]}]}`, `name "a" is already used`},
		{"empty alias", `{"models":[{"name":"a","aliases":[""]}]}`, `aliases[0] is empty`},
		{"control char", "{\"models\":[{\"name\":\"a\\nb\"}]}", "visible ASCII"},
		{"route and targets", `{"models":[{"name":"a","route":"r","targets":[{"route":"t"}]}]}`, "set route or targets, not both"},
		{"target without route", `{"models":[{"name":"a","targets":[{"weight":1}]}]}`, "targets[0].route is empty"},
		{"header injection", `{"models":[{"name":"a","route":"r\r\nx-evil: 1"}]}`, "visible ASCII"},
		{"duplicate target", `{"models":[{"name":"a","targets":[{"route":"t"},{"route":"t"}]}]}`, `route "t" appears twice`},
		{"negative weight", `{"models":[{"name":"a","targets":[{"route":"t","weight":-1}]}]}`, "weight -1"},
		{"zero total", `{"models":[{"name":"a","targets":[{"route":"t","weight":0}]}]}`, "add up to 0"},
		{"bad backend", `{"models":[{"name":"a","backend_model":" x"}]}`, "backend_model"},
		{"bad target backend", `{"models":[{"name":"a","targets":[{"route":"t","backend_model":"\u0001"}]}]}`, "backend_model"},
		{"bad priority", `{"models":[{"name":"a","priority":"x\ty"}]}`, "priority"},
		{"bad default priority", `{"default_priority":"é"}`, "default_priority"},
		{"bad product priority", `{"products":{"gold":{"priority":"a\nb"}}}`, `products["gold"].priority`},
		{"empty product model priority", `{"products":{"gold":{"models":{"m":""}}}}`, `products["gold"].models["m"] is empty`},
		{"empty app name", `{"apps":{"":{"priority":"x"}}}`, "apps: empty name"},
		{"long name", `{"models":[{"name":"` + strings.Repeat("m", 300) + `"}]}`, "longer than 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(loadFixture(f, "seed.json"))
	f.Add([]byte(`{"models":[{"name":"a","targets":[{"route":"t","weight":4294967295},{"route":"u","weight":4294967295}]}]}`))
	f.Add([]byte(`{"routing_header":"X-Gateway-Model-Name","paths":["/v1"]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		// A valid policy is internally consistent.
		for _, m := range p.Models() {
			require.NotEmpty(t, m.Targets)
			require.Positive(t, m.total)
			var sum uint64
			for _, tg := range m.Targets {
				require.True(t, validHeaderValue(tg.Route))
				require.True(t, validHeaderValue(tg.BackendModel))
				sum += tg.Weight
			}
			require.Equal(t, m.total, sum)
			got, ok := p.Lookup(m.Name)
			require.True(t, ok)
			require.Same(t, m, got)
		}
	})
}
