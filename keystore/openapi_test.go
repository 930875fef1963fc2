package keystore

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/internal/jsontest"
)

// TestOpenAPIMatchesRoutes checks docs/openapi.yaml against the handlers:
// every documented path and method is served, and every method the document
// leaves out of a path is answered 405.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	raw, err := os.ReadFile("../docs/openapi.yaml")
	require.NoError(t, err)
	var doc struct {
		OpenAPI string                          `yaml:"openapi"`
		Paths   map[string]map[string]yaml.Node `yaml:"paths"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	require.True(t, strings.HasPrefix(doc.OpenAPI, "3."))
	require.NotEmpty(t, doc.Paths)

	h := newHarness(t)
	all := []string{"GET", "POST", "PUT", "DELETE", "PATCH"}
	for path, ops := range doc.Paths {
		// Missing ids and a malformed body: a routed request fails in the
		// handler (400/404 naming the record), an unrouted one says "no such endpoint".
		concrete := strings.NewReplacer("{id}", "zz-missing").Replace(path)
		if strings.HasPrefix(path, "/admin/v1/keys/") {
			concrete = strings.Replace(path, "{id}", "key_0000000000000000", 1)
		}
		handler := h.svc.DataHandler()
		if strings.HasPrefix(path, "/admin/") {
			handler = h.svc.AdminHandler()
		}
		for _, m := range all {
			documented := false
			for op := range ops {
				documented = documented || strings.EqualFold(op, m)
			}
			var body any
			if m == "POST" || m == "PUT" || m == "PATCH" {
				body = "{"
			}
			rec := do(t, handler, m, concrete, body, "Bearer "+testToken)
			code := jsontest.Get(rec.Body.Bytes(), "error.code").Str()
			if documented {
				assert.NotEqual(t, http.StatusMethodNotAllowed, rec.Code, "%s %s is documented but not served", m, path)
				assert.NotContains(t, rec.Body.String(), "no such endpoint", "%s %s is documented but not routed", m, path)
				assert.Less(t, rec.Code, 500, "%s %s", m, path)
			} else {
				assert.Equal(t, http.StatusMethodNotAllowed, rec.Code, "%s %s is served (code %q) but not documented", m, path, code)
			}
		}
	}
}
