package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMatchPath(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"/v1/models", "/v1/models", true},
		{"/v1/models", "/v1/models/", false},
		{"/v1/models", "/v1/models/x", false},
		{"/v1/models", "/v1/model", false},
		{"/v1/models", "/V1/models", false},
		{"/v1/models/**", "/v1/models", true},
		{"/v1/models/**", "/v1/models/", true},
		{"/v1/models/**", "/v1/models/gemma/x", true},
		{"/v1/models/**", "/v1/modelsx", false},
		{"/v1/models/**", "/v1/models/../admin", false},
		{"/v1/models/**", "/v1/models/%2e%2e/admin", false},
		{"/v1/models/**", "/v1/models/..%2f..%2fadmin", false},
		{"/v1/models/**", "/v1/models/..%2F..%2Fadmin", false},
		{"/v1/models/**", "/v1/models/%2E%2E/admin", false},
		{"/v1/models/**", "/v1/models/./x", false},
		{"/v1/models/**", "/v1/models/..", false},
		{"/v1/models/**", `/v1/models/..\admin`, false},
		{"/v1/models/**", "/v1/models/a..b", true},
		{"/**", "/", true},
		{"/**", "/anything/at/all", true},
		{"/**", "", false},
		{"/**", "relative", false},
		{"/v1/chat*", "/v1/chat", true},
		{"/v1/chat*", "/v1/chat/completions", true},
		{"/v1/chat*", "/v1/chatter", true},
		{"/v1/chat*", "/v1/cha", false},
		{"/v1/*", "/v1/x/y", true},
		{"/v1/*", "/v1/../x", false},
		{"*", "/x", true},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"~"+tt.path, func(t *testing.T) {
			assert.Equal(t, tt.want, MatchPath(tt.pattern, tt.path))
		})
	}
}

func TestRequestPath(t *testing.T) {
	tests := map[string]string{
		"/v1/models?x=1":       "/v1/models",
		"/v1/models#frag":      "/v1/models",
		"/v1/models":           "/v1/models",
		"/v1/models?a=/../../": "/v1/models",
		"":                     "",
	}
	for in, want := range tests {
		assert.Equal(t, want, RequestPath(in), in)
	}
}

func TestMatchMethod(t *testing.T) {
	tests := []struct {
		methods []string
		method  string
		want    bool
	}{
		{nil, "DELETE", true},
		{[]string{"*"}, "PATCH", true},
		{[]string{"GET", "POST"}, "POST", true},
		{[]string{"GET", "POST"}, "post", true},
		{[]string{"GET"}, "POST", false},
		{[]string{"GET"}, "", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, MatchMethod(tt.methods, tt.method), "%v %s", tt.methods, tt.method)
	}
}

func TestMatchModel(t *testing.T) {
	tests := []struct {
		patterns []string
		model    string
		want     bool
	}{
		{nil, "anything", true},
		{[]string{"*"}, "anything", true},
		{[]string{"gemma-3-1b-it"}, "gemma-3-1b-it", true},
		{[]string{"gemma-3-1b-it"}, "gemma-3-1b-it-q4", false},
		{[]string{"gemma-3-1b-it"}, "Gemma-3-1b-it", false},
		{[]string{"llama-*"}, "llama-3.1-8b", true},
		{[]string{"llama-*"}, "llama-", true},
		{[]string{"llama-*"}, "llama", false},
		{[]string{"llama-*"}, "codellama-7b", false},
		{[]string{"gemma-3-1b-it", "llama-*"}, "llama-2", true},
		{[]string{"gemma-3-1b-it", "llama-*"}, "", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, MatchModel(tt.patterns, tt.model), "%v %s", tt.patterns, tt.model)
	}
}

func fieldsOf(errs FieldErrors) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field)
	}
	return out
}

func validProduct() Product {
	return Product{
		Name:          "chat",
		Operations:    []Operation{{Path: "/v1/chat/completions", Methods: []string{"post"}}},
		AllowedModels: []string{"gemma-3-1b-it", "llama-*"},
		RequestQuota:  &Quota{Limit: 60, TimeUnit: "Minute"},
		TokenQuota:    &Quota{Limit: 1000, TimeUnit: "hour", Window: "rolling"},
	}
}

func TestProductValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(p *Product)
		fields []string
	}{
		{"valid", func(*Product) {}, nil},
		{"only operation sets", func(p *Product) { p.Operations = nil; p.OperationSets = []string{"openai"} }, nil},
		{"bad name", func(p *Product) { p.Name = "Chat Product" }, []string{"name"}},
		{"name too long", func(p *Product) { p.Name = strings.Repeat("a", 64) }, []string{"name"}},
		{"name trailing dash", func(p *Product) { p.Name = "chat-" }, []string{"name"}},
		{"no operations", func(p *Product) { p.Operations = nil }, []string{"operations"}},
		{"relative path", func(p *Product) { p.Operations[0].Path = "v1/chat" }, []string{"operations[0].path"}},
		{"empty path", func(p *Product) { p.Operations[0].Path = "" }, []string{"operations[0].path"}},
		{"inner star", func(p *Product) { p.Operations[0].Path = "/v1/*/chat" }, []string{"operations[0].path"}},
		{"star star without slash", func(p *Product) { p.Operations[0].Path = "/v1**" }, []string{"operations[0].path"}},
		{"dot segment", func(p *Product) { p.Operations[0].Path = "/v1/../x" }, []string{"operations[0].path"}},
		{"query in path", func(p *Product) { p.Operations[0].Path = "/v1?x" }, []string{"operations[0].path"}},
		{"bad method", func(p *Product) { p.Operations[0].Methods = []string{"PO ST"} }, []string{"operations[0].methods[0]"}},
		{"duplicate method", func(p *Product) { p.Operations[0].Methods = []string{"POST", "post"} }, []string{"operations[0].methods[1]"}},
		{"bad model", func(p *Product) { p.AllowedModels = []string{"a*b"} }, []string{"allowedModels[0]"}},
		{"empty model", func(p *Product) { p.AllowedModels = []string{""} }, []string{"allowedModels[0]"}},
		{"zero limit", func(p *Product) { p.RequestQuota.Limit = 0 }, []string{"requestQuota.limit"}},
		{"negative interval", func(p *Product) { p.RequestQuota.Interval = -1 }, []string{"requestQuota.interval"}},
		{"bad unit", func(p *Product) { p.RequestQuota.TimeUnit = "week" }, []string{"requestQuota.timeUnit"}},
		{"bad window", func(p *Product) { p.TokenQuota.Window = "sliding" }, []string{"tokenQuota.window"}},
		{"bad counted", func(p *Product) { p.TokenQuota.Counted = "bytes" }, []string{"tokenQuota.counted"}},
		{"counted on request quota", func(p *Product) { p.RequestQuota.Counted = "total" }, []string{"requestQuota.counted"}},
		{"op quota", func(p *Product) { p.Operations[0].TokenQuota = &Quota{Limit: 5, TimeUnit: "fortnight"} }, []string{"operations[0].tokenQuota.timeUnit"}},
		{"bad set ref", func(p *Product) { p.OperationSets = []string{"OK", "x", "x"} }, []string{"operationSets[0]", "operationSets[2]"}},
		{"empty attr name", func(p *Product) { p.Attributes = map[string]string{"": "v"} }, []string{"attributes"}},
		{"long attr", func(p *Product) { p.Attributes = map[string]string{"k": strings.Repeat("v", MaxAttrValueLen+1)} }, []string{"attributes.k"}},
		{"long description", func(p *Product) { p.Description = strings.Repeat("d", MaxTextLen+1) }, []string{"description"}},
		{"several", func(p *Product) { p.Name = ""; p.Operations[0].Path = "x" }, []string{"name", "operations[0].path"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validProduct()
			tt.mutate(&p)
			p.Normalize()
			errs := p.Validate()
			assert.Equal(t, tt.fields, fieldsOf(errs), errs.Error())
			if tt.fields == nil {
				require.NoError(t, errs.Err())
			} else {
				require.Error(t, errs.Err())
			}
		})
	}
}

func TestNormalizeDefaults(t *testing.T) {
	p := validProduct()
	p.Normalize()
	assert.Equal(t, []string{"POST"}, p.Operations[0].Methods)
	assert.Equal(t, Quota{Limit: 60, Interval: 1, TimeUnit: "minute", Window: "calendar"}, *p.RequestQuota)
	assert.Equal(t, Quota{Limit: 1000, Interval: 1, TimeUnit: "hour", Window: "rolling", Counted: "total"}, *p.TokenQuota)
}

func TestOperationSetValidate(t *testing.T) {
	tests := []struct {
		name   string
		set    OperationSet
		fields []string
	}{
		{"valid", OperationSet{Name: "openai", Operations: []Operation{{Path: "/v1/**"}}}, nil},
		{"empty", OperationSet{Name: "openai"}, []string{"operations"}},
		{"bad quota", OperationSet{Name: "openai", Operations: []Operation{{Path: "/v1/**"}}, RequestQuota: &Quota{Limit: 1, TimeUnit: "minute", Counted: "total"}}, []string{"requestQuota.counted"}},
		{"bad name", OperationSet{Name: "_x", Operations: []Operation{{Path: "/"}}}, []string{"name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.set.Normalize()
			assert.Equal(t, tt.fields, fieldsOf(tt.set.Validate()))
		})
	}
}

func TestDeveloperAndAppValidate(t *testing.T) {
	devs := []struct {
		email string
		ok    bool
	}{
		{"Ada@Example.com", true},
		{"a@b", true},
		{"no-at.example.com", false},
		{"two@@example.com", false},
		{"@example.com", false},
		{"ada@", false},
		{"ada lovelace@example.com", false},
		{"ada/x@example.com", false},
		{"", false},
	}
	for _, tt := range devs {
		d := Developer{Email: tt.email}
		d.Normalize()
		assert.Equal(t, tt.ok, d.Validate().Err() == nil, tt.email)
	}
	d := Developer{Email: " Ada@Example.COM "}
	d.Normalize()
	assert.Equal(t, "ada@example.com", d.Email)

	apps := []struct {
		name   string
		app    App
		fields []string
	}{
		{"valid", App{Name: "demo", Developer: "ada@example.com", Products: []string{"chat"}}, nil},
		{"no products ok", App{Name: "demo", Developer: "ada@example.com"}, nil},
		{"bad developer", App{Name: "demo", Developer: "ada"}, []string{"developer"}},
		{"bad name", App{Name: "Demo", Developer: "ada@example.com"}, []string{"name"}},
		{"dup product", App{Name: "demo", Developer: "ada@example.com", Products: []string{"chat", "chat"}}, []string{"products[1]"}},
	}
	for _, tt := range apps {
		t.Run(tt.name, func(t *testing.T) {
			tt.app.Normalize()
			assert.Equal(t, tt.fields, fieldsOf(tt.app.Validate()))
		})
	}
}

func TestGenerateKey(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		k, err := GenerateKey(nil)
		require.NoError(t, err)
		require.Len(t, k, KeyLen)
		require.True(t, strings.HasPrefix(k, "tg_"))
		require.True(t, WellFormedKey(k), k)
		require.False(t, seen[k])
		seen[k] = true
	}
	_, err := GenerateKey(bytes.NewReader([]byte{1, 2, 3}))
	require.Error(t, err, "short random source must fail, not produce a weak key")
}

func TestGenerateKeyDeterministicSource(t *testing.T) {
	// 255 is above the unbiased range and must be skipped, never mapped.
	src := bytes.Repeat([]byte{255, 0, 61, 62}, 64)
	k, err := GenerateKey(bytes.NewReader(src))
	require.NoError(t, err)
	assert.Equal(t, "tg_"+strings.Repeat("0z0", 10)+"0z", k[:35])
	assert.True(t, WellFormedKey(k))
}

func TestWellFormedKey(t *testing.T) {
	k, err := GenerateKey(nil)
	require.NoError(t, err)
	flip := []byte(k)
	if flip[10] == 'a' {
		flip[10] = 'b'
	} else {
		flip[10] = 'a'
	}
	tests := []struct {
		key  string
		want bool
	}{
		{k, true},
		{string(flip), false},
		{k[:len(k)-1], false},
		{k + "x", false},
		{"xx_" + k[3:], false},
		{strings.Replace(k, k[5:6], "-", 1), false},
		{"", false},
		{"tg_", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, WellFormedKey(tt.key), tt.key)
	}
}

func TestHashKey(t *testing.T) {
	key := "tg_example"
	sum := sha256.Sum256([]byte(key))
	assert.Equal(t, hex.EncodeToString(sum[:]), HashKey(key))
	// Fixed vector: printf %s tg_example | sha256sum
	assert.Equal(t, "849bcdf2697a91c638e19b84148f16dfc88df7d48e384922ea779360f0837bc4", HashKey(key))
	assert.True(t, ValidKeyHash(HashKey(key)))
	assert.False(t, ValidKeyHash(strings.ToUpper(HashKey(key))))
	assert.False(t, ValidKeyHash(HashKey(key)[:63]))
	assert.False(t, ValidKeyHash(""))
}

func TestKeyIDAndPrefix(t *testing.T) {
	id, err := GenerateKeyID(nil)
	require.NoError(t, err)
	assert.True(t, ValidKeyID(id), id)
	assert.False(t, ValidKeyID("key_short"))
	assert.False(t, ValidKeyID("tg_0123456789abcdef"))
	k, err := GenerateKey(nil)
	require.NoError(t, err)
	assert.Equal(t, k[:9], DisplayPrefix(k))
	assert.Equal(t, "", DisplayPrefix("tg_"))
}

func TestKeyExpired(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	assert.False(t, Key{}.Expired(now))
	assert.False(t, Key{ExpiresAt: now.Add(time.Second)}.Expired(now))
	assert.True(t, Key{ExpiresAt: now}.Expired(now))
	assert.True(t, Key{ExpiresAt: now.Add(-time.Second)}.Expired(now))
}

func TestReasonStatus(t *testing.T) {
	tests := map[string]int{
		"": 200, ReasonMissing: 401, ReasonUnknownKey: 401, ReasonRevoked: 401, ReasonExpired: 401,
		ReasonOperationNotAllowed: 403, ReasonModelNotAllowed: 403,
	}
	for r, want := range tests {
		assert.Equal(t, want, ReasonStatus(r), r)
	}
}

func TestResolveQuotaPrecedence(t *testing.T) {
	sets := map[string]OperationSet{
		"openai": {
			Name: "openai",
			Operations: []Operation{
				{Path: "/v1/chat/completions", Methods: []string{"POST"}},
				{Path: "/v1/embeddings", Methods: []string{"POST"}, RequestQuota: &Quota{Limit: 7, Interval: 1, TimeUnit: "minute", Window: "calendar"}},
			},
			RequestQuota: &Quota{Limit: 5, Interval: 1, TimeUnit: "minute", Window: "calendar"},
		},
	}
	p := Product{
		Name:          "chat",
		Operations:    []Operation{{Path: "/v1/models"}},
		OperationSets: []string{"openai", "missing"},
		RequestQuota:  &Quota{Limit: 60, Interval: 1, TimeUnit: "minute", Window: "calendar"},
		TokenQuota:    &Quota{Limit: 1000, Interval: 1, TimeUnit: "hour", Window: "rolling", Counted: "total"},
	}
	e := Resolve(p, sets)
	require.Len(t, e.Operations, 3)
	assert.Equal(t, []string{"*"}, e.AllowedModels)

	models := e.Operations[0]
	assert.Equal(t, []string{"*"}, models.Methods)
	assert.Equal(t, int64(60), models.RequestQuota.Limit)
	assert.Equal(t, "chat", models.RequestQuota.Scope)
	assert.Equal(t, "chat", models.TokenQuota.Scope)

	chat := e.Operations[1]
	assert.Equal(t, int64(5), chat.RequestQuota.Limit, "set quota overrides product quota")
	assert.Equal(t, "chat:set:openai", chat.RequestQuota.Scope)
	assert.Equal(t, "total", chat.TokenQuota.Counted, "token quota falls back to product")

	emb := e.Operations[2]
	assert.Equal(t, int64(7), emb.RequestQuota.Limit, "operation quota overrides set quota")
	assert.Equal(t, "chat:POST:/v1/embeddings", emb.RequestQuota.Scope)
}

func TestAuthorize(t *testing.T) {
	ents := []Entitlement{
		Resolve(Product{Name: "chat", Operations: []Operation{
			{Path: "/v1/chat/completions", Methods: []string{"POST"}},
			{Path: "/v1/models/**", Methods: []string{"GET"}},
		}, AllowedModels: []string{"gemma-3-1b-it", "llama-*"}}, nil),
		Resolve(Product{Name: "embed", Operations: []Operation{
			{Path: "/v1/embeddings", Methods: []string{"POST"}},
			{Path: "/v1/chat/completions", Methods: []string{"POST"}},
		}, AllowedModels: []string{"text-embed-*", "mistral-7b"}}, nil),
	}
	tests := []struct {
		name, method, path, model string
		reason, product, opPath   string
	}{
		{"chat ok", "POST", "/v1/chat/completions", "gemma-3-1b-it", "", "chat", "/v1/chat/completions"},
		{"chat without model", "POST", "/v1/chat/completions", "", "", "chat", "/v1/chat/completions"},
		{"query ignored", "POST", "/v1/chat/completions?x=1", "llama-3", "", "chat", "/v1/chat/completions"},
		{"second product allows model", "POST", "/v1/chat/completions", "mistral-7b", "", "embed", "/v1/chat/completions"},
		{"embeddings", "POST", "/v1/embeddings", "text-embed-3", "", "embed", "/v1/embeddings"},
		{"models subtree", "GET", "/v1/models/gemma-3-1b-it", "", "", "chat", "/v1/models/**"},
		{"wrong method", "GET", "/v1/chat/completions", "", ReasonOperationNotAllowed, "", ""},
		{"wrong path", "POST", "/v1/images/generations", "", ReasonOperationNotAllowed, "", ""},
		{"traversal", "GET", "/v1/models/../admin", "", ReasonOperationNotAllowed, "", ""},
		{"model not allowed anywhere", "POST", "/v1/chat/completions", "gpt-4o", ReasonModelNotAllowed, "", ""},
		{"model not allowed on embeddings", "POST", "/v1/embeddings", "llama-3", ReasonModelNotAllowed, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Authorize(ents, tt.method, tt.path, tt.model)
			assert.Equal(t, tt.reason, d.Reason)
			if tt.reason == "" {
				require.NotNil(t, d.Entitlement)
				assert.Equal(t, tt.product, d.Entitlement.Product)
				assert.Equal(t, tt.opPath, d.Operation.Path)
			} else {
				assert.Nil(t, d.Entitlement)
			}
		})
	}
	assert.Equal(t, ReasonOperationNotAllowed, Authorize(nil, "GET", "/", "").Reason)
}

func TestEffectiveProducts(t *testing.T) {
	app := App{Products: []string{"chat", "embed"}}
	assert.Equal(t, []string{"chat", "embed"}, EffectiveProducts(Key{}, app))
	assert.Equal(t, []string{"embed"}, EffectiveProducts(Key{Products: []string{"embed", "gone"}}, app))
	assert.Nil(t, EffectiveProducts(Key{Products: []string{"gone"}}, app))
}

func TestFieldErrorsError(t *testing.T) {
	errs := FieldErrors{{Field: "a", Message: "bad"}, {Message: "whole"}}
	assert.Equal(t, "a: bad; whole", errs.Error())
	assert.NoError(t, FieldErrors(nil).Err())
}
