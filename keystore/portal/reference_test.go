package portal

import (
	"context"
	"html"
	"net/http"
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/keystore/model"
)

// TestEmbeddedOpenAPIIsCurrent keeps the embedded copy equal to
// docs/gateway-openapi.yaml (fix: cp docs/gateway-openapi.yaml keystore/portal/apiref/).
func TestEmbeddedOpenAPIIsCurrent(t *testing.T) {
	want, err := os.ReadFile("../../docs/gateway-openapi.yaml")
	require.NoError(t, err)
	require.Equal(t, string(want), string(gatewayOpenAPI), "cp docs/gateway-openapi.yaml keystore/portal/apiref/gateway-openapi.yaml")
	doc, err := parseAPIDoc(gatewayOpenAPI)
	require.NoError(t, err)
	for path, ops := range doc.Paths {
		for method, op := range ops {
			assert.Contains(t, refMethods, method, "%s: only HTTP methods under a path", path)
			assert.NotEmpty(t, op.Summary, "%s %s", method, path)
			assert.NotEmpty(t, op.OperationID, "%s %s", method, path)
			assert.NotEmpty(t, op.Responses, "%s %s", method, path)
			for code, r := range op.Responses {
				assert.NotEmpty(t, doc.response(r).Description, "%s %s %s: every $ref resolves", method, path, code)
			}
		}
	}
}

var refOpRE = regexp.MustCompile(`<section class="card operation" id="op-\d+" data-method="([A-Z]+)" data-path="([^"]*)">`)
var undocRE = regexp.MustCompile(`<tr class="undocumented"><td>([^<]*)</td><td><code>([^<]*)</code>`)

// referenceOps reads the operations a reference page lists: documented
// ones, then the product's operations the document does not describe.
func referenceOps(t *testing.T, body string) (documented, undocumented []string) {
	t.Helper()
	for _, m := range refOpRE.FindAllStringSubmatch(body, -1) {
		documented = append(documented, m[1]+" "+html.UnescapeString(m[2]))
	}
	for _, m := range undocRE.FindAllStringSubmatch(body, -1) {
		undocumented = append(undocumented, m[1]+" "+html.UnescapeString(m[2]))
	}
	return documented, undocumented
}

func TestProductReferenceListsExactlyItsOperations(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.st.CreateOperationSet(ctx, model.OperationSet{Name: "models-ops",
		Operations: []model.Operation{{Path: "/v1/models/**", Methods: []string{"GET"}}}})
	require.NoError(t, err)
	for _, pr := range []model.Product{
		{Name: "mixed", Description: "chat, models and speech",
			Operations: []model.Operation{
				{Path: "/v1/chat/completions", Methods: []string{"POST"}},
				{Path: "/v1/audio/speech", Methods: []string{"POST"}},
				{Path: "/v1/embeddings", Methods: []string{"GET"}}, // documented path, undocumented method
			},
			OperationSets: []string{"models-ops"}},
		{Name: "everything", Operations: []model.Operation{{Path: "/**"}}},
		{Name: "nothing-documented", Operations: []model.Operation{{Path: "/v2/private", Methods: []string{"PUT"}}}},
	} {
		pr.Normalize()
		require.Empty(t, pr.Validate())
		_, err := e.st.CreateProduct(ctx, pr)
		require.NoError(t, err)
	}
	b := e.browser(t)
	b.developer("ada@example.com")

	code, body := b.get("/catalogue")
	require.Equal(t, http.StatusOK, code)
	for _, name := range []string{"chat", "premium", "mixed", "everything"} {
		assert.Contains(t, body, `<a class="reference" href="/catalogue/`+name+`">API reference</a>`, "the catalogue links %s's reference", name)
	}

	for _, c := range []struct {
		product      string
		documented   []string
		undocumented []string
	}{
		{"chat", []string{"POST /v1/chat/completions"}, nil},
		{"mixed", []string{"POST /v1/chat/completions", "GET /v1/models", "GET /v1/models/{model}"},
			[]string{"POST /v1/audio/speech", "GET /v1/embeddings"}},
		{"everything", []string{"POST /v1/chat/completions", "POST /v1/completions", "POST /v1/embeddings", "GET /v1/models", "GET /v1/models/{model}"}, nil},
		{"nothing-documented", nil, []string{"PUT /v2/private"}},
	} {
		code, body := b.get("/catalogue/" + c.product)
		require.Equal(t, http.StatusOK, code, c.product)
		doc, undoc := referenceOps(t, body)
		assert.Equal(t, c.documented, doc, "%s: the document's operations the product grants, and only those", c.product)
		assert.Equal(t, c.undocumented, undoc, "%s: the product's operations the document lacks", c.product)
	}
	_, body = b.get("/catalogue/chat")
	assert.Contains(t, body, "Create a chat completion")
	assert.Contains(t, body, `<code>messages</code></td><td>array of Message</td><td>yes</td>`, "request fields come from the schema")
	assert.Contains(t, body, "x-ratelimit-remaining-requests", "response headers are listed")
	assert.Contains(t, body, "&#34;model&#34;: &#34;gemma-3-1b-it&#34;", "the example is rendered as JSON")

	code, missing := b.get("/catalogue/no-such-product")
	assert.Equal(t, http.StatusNotFound, code)
	assert.Contains(t, missing, "Page not found.")

	anon := e.browser(t)
	code, _ = anon.get("/catalogue/chat")
	assert.Equal(t, http.StatusSeeOther, code, "the reference needs a signed-in user, like the catalogue")
}

func TestReferenceEscapesProductFields(t *testing.T) {
	e := newEnv(t)
	const payload = `<script>alert("x")</script>`
	pr := model.Product{Name: "xss", DisplayName: payload, Description: payload, AllowedModels: []string{"m<img>"},
		Operations: []model.Operation{{Path: `/v1/<script>alert("op")</script>`, Methods: []string{"POST"}}}}
	pr.Normalize()
	require.Empty(t, pr.Validate())
	_, err := e.st.CreateProduct(context.Background(), pr)
	require.NoError(t, err)
	b := e.browser(t)
	b.developer("ada@example.com")
	for _, path := range []string{"/catalogue", "/catalogue/xss"} {
		code, body := b.get(path)
		require.Equal(t, http.StatusOK, code, path)
		assert.NotContains(t, body, "<script>", path)
		assert.NotContains(t, body, "<img>", path)
		assert.Contains(t, body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", path)
		assert.Contains(t, body, "/v1/&lt;script&gt;alert(&#34;op&#34;)&lt;/script&gt;", path)
	}
	_, body := b.get("/catalogue/xss")
	_, undoc := referenceOps(t, body)
	assert.Equal(t, []string{`POST /v1/<script>alert("op")</script>`}, undoc)
}

func TestInlineCode(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain", "plain"},
		{"a `b` c", "a <code>b</code> c"},
		{"`<x>` & `y", "<code>&lt;x&gt;</code> &amp; `y"},
		{"<script>`</script>`", "&lt;script&gt;<code>&lt;/script&gt;</code>"},
	} {
		assert.Equal(t, c.want, string(inlineCode(c.in)), c.in)
	}
}
