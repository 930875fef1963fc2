package portal

import (
	_ "embed" // the gateway document
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/keystore/model"
)

// gatewayOpenAPI is docs/gateway-openapi.yaml, the API consumers call
// through the gateway; TestEmbeddedOpenAPIIsCurrent keeps the copy equal.
//
//go:embed apiref/gateway-openapi.yaml
var gatewayOpenAPI []byte

// refMethods are the HTTP methods a reference lists, in display order.
var refMethods = []string{"get", "post", "put", "patch", "delete"}

// maxRefHops bounds how many $ref links one lookup follows, so a cycle in
// the document cannot loop.
const maxRefHops = 8

// apiDoc is the part of an OpenAPI 3 document the reference renders.
type apiDoc struct {
	Info struct {
		Title       string `yaml:"title"`
		Description string `yaml:"description"`
	} `yaml:"info"`
	Paths      map[string]map[string]apiOp `yaml:"paths"`
	Components struct {
		Schemas   map[string]apiSchema   `yaml:"schemas"`
		Responses map[string]apiResponse `yaml:"responses"`
	} `yaml:"components"`
}

type apiOp struct {
	OperationID string                 `yaml:"operationId"`
	Summary     string                 `yaml:"summary"`
	Description string                 `yaml:"description"`
	Parameters  []apiParam             `yaml:"parameters"`
	RequestBody *apiBody               `yaml:"requestBody"`
	Responses   map[string]apiResponse `yaml:"responses"`
}

type apiParam struct {
	Name        string `yaml:"name"`
	In          string `yaml:"in"`
	Required    bool   `yaml:"required"`
	Description string `yaml:"description"`
}

type apiBody struct {
	Required bool                    `yaml:"required"`
	Content  map[string]apiMediaType `yaml:"content"`
}

type apiMediaType struct {
	Schema  apiSchema `yaml:"schema"`
	Example any       `yaml:"example"`
}

type apiSchema struct {
	Ref         string               `yaml:"$ref"`
	Type        string               `yaml:"type"`
	Description string               `yaml:"description"`
	Required    []string             `yaml:"required"`
	Properties  map[string]apiSchema `yaml:"properties"`
	Items       *apiSchema           `yaml:"items"`
}

type apiResponse struct {
	Ref         string `yaml:"$ref"`
	Description string `yaml:"description"`
	Headers     map[string]struct {
		Description string `yaml:"description"`
	} `yaml:"headers"`
}

// parseAPIDoc reads the embedded gateway document.
func parseAPIDoc(raw []byte) (*apiDoc, error) {
	var d apiDoc
	if err := yaml.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("gateway openapi: %w", err)
	}
	if len(d.Paths) == 0 {
		return nil, errors.New("gateway openapi: no paths")
	}
	return &d, nil
}

func (d *apiDoc) schema(s apiSchema) apiSchema {
	for i := 0; s.Ref != "" && i < maxRefHops; i++ {
		s = d.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")]
	}
	return s
}

func (d *apiDoc) response(r apiResponse) apiResponse {
	for i := 0; r.Ref != "" && i < maxRefHops; i++ {
		r = d.Components.Responses[strings.TrimPrefix(r.Ref, "#/components/responses/")]
	}
	return r
}

// typeName describes a schema in one word or two ("array of Message").
func (d *apiDoc) typeName(s apiSchema) string {
	name := strings.TrimPrefix(s.Ref, "#/components/schemas/")
	r := d.schema(s)
	switch {
	case r.Type == "array" && r.Items != nil:
		return "array of " + d.typeName(*r.Items) // Items nest once per level of the document: bounded by its size
	case name != "":
		return name
	case r.Type != "":
		return r.Type
	}
	return "any"
}

// RefField is one property of a request body.
type RefField struct {
	Name, Type, Description string
	Required                bool
}

// RefResponse is one documented answer.
type RefResponse struct {
	Code, Description string
	Headers           []string
}

// RefOperation is one operation of a product's reference.
type RefOperation struct {
	Method, Path, ID, Summary, Description string
	Params                                 []apiParam
	Body                                   []RefField
	Example                                string
	Responses                              []RefResponse
	// Grant is the product's operation pattern that grants it.
	Grant string
}

// Reference is a product's rendered API reference: the gateway document's
// operations the product grants, and the product's operations the document
// does not describe.
type Reference struct {
	Operations   []RefOperation
	Undocumented []model.Operation
}

// productReference lists the operations of doc that ops grant, in path then
// method order, and the ops that grant none of them.
func productReference(doc *apiDoc, ops []model.Operation) Reference {
	var ref Reference
	used := make([]bool, len(ops))
	paths := make([]string, 0, len(doc.Paths))
	for p := range doc.Paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, path := range paths {
		for _, method := range refMethods {
			op, ok := doc.Paths[path][method]
			if !ok {
				continue
			}
			grant := -1
			for i, g := range ops {
				if model.MatchPath(g.Path, path) && model.MatchMethod(g.Methods, method) {
					used[i] = true
					if grant < 0 {
						grant = i
					}
				}
			}
			if grant < 0 {
				continue
			}
			ref.Operations = append(ref.Operations, doc.render(strings.ToUpper(method), path, op, ops[grant].Path))
		}
	}
	for i, g := range ops {
		if !used[i] {
			ref.Undocumented = append(ref.Undocumented, g)
		}
	}
	return ref
}

func (d *apiDoc) render(method, path string, op apiOp, grant string) RefOperation {
	out := RefOperation{Method: method, Path: path, ID: op.OperationID, Summary: op.Summary,
		Description: op.Description, Params: op.Parameters, Grant: grant}
	if op.RequestBody != nil {
		if mt, ok := op.RequestBody.Content["application/json"]; ok {
			s := d.schema(mt.Schema)
			names := make([]string, 0, len(s.Properties))
			for n := range s.Properties {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				p := s.Properties[n]
				out.Body = append(out.Body, RefField{Name: n, Type: d.typeName(p), Description: d.schema(p).Description,
					Required: slices.Contains(s.Required, n)})
			}
			if mt.Example != nil {
				if raw, err := json.MarshalIndent(mt.Example, "", "  "); err == nil {
					out.Example = string(raw)
				}
			}
		}
	}
	codes := make([]string, 0, len(op.Responses))
	for c := range op.Responses {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		r := d.response(op.Responses[c])
		rr := RefResponse{Code: c, Description: r.Description}
		for h := range r.Headers {
			rr.Headers = append(rr.Headers, h)
		}
		sort.Strings(rr.Headers)
		out.Responses = append(out.Responses, rr)
	}
	return out
}

// referencePage renders a product's API reference for any signed-in user
// (the catalogue is public to them).
func (p *Portal) referencePage(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	pr, err := p.cfg.Store.GetProduct(r.Context(), r.PathValue("product"))
	if p.failed(w, r, rc, err) {
		return
	}
	v := p.productView(r, pr)
	p.render(w, r, http.StatusOK, "reference", &rc, map[string]any{"Product": v, "Ref": productReference(p.apiDoc, v.Ops),
		"Gateway": p.cfg.GatewayURL, "DocTitle": p.apiDoc.Info.Title})
}
