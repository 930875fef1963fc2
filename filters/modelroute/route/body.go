package route

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/tollgate/tollgate/shared/apierror"
)

// Error codes of the client errors this package produces, stable for clients and metrics.
const (
	CodeInvalidJSON        = "invalid_json"
	CodeMissingModel       = "missing_model"
	CodeInvalidModel       = "invalid_model"
	CodeInvalidContentType = "invalid_content_type"
	CodeTooLarge           = "request_too_large"
	CodeModelNotFound      = "model_not_found"
	CodeModelNotAllowed    = "model_not_allowed"
	CodeNoIdentity         = "missing_identity"
)

// BodyModel is the top-level "model" of a request body and where it sits.
type BodyModel struct {
	// Name is the model's (unescaped) value.
	Name string
	// Start and End delimit the raw JSON string token, quotes included.
	Start, End int
}

// ExtractModel reads the top-level "model" string of a JSON object body.
// It rejects what an upstream could read differently from the gateway: a body
// that is not one valid JSON object (UTF-8), and a "model" key that appears
// twice (JSON parsers disagree about which duplicate wins).
func ExtractModel(body []byte) (BodyModel, *apierror.Error) {
	if len(body) == 0 {
		return BodyModel{}, invalidJSON("the request body is empty; send a JSON object with a \"model\" field")
	}
	top, err := scanTop(body)
	switch {
	case err != nil:
		return BodyModel{}, invalidJSON("the request body is not valid JSON")
	case !top.object:
		return BodyModel{}, invalidJSON("the request body must be a JSON object")
	case len(top.models) > 1:
		return BodyModel{}, badModel(CodeInvalidModel, "the request body names \"model\" more than once")
	case len(top.models) == 0:
		return BodyModel{}, badModel(CodeMissingModel, "you must provide a model parameter")
	}
	m := top.models[0]
	if !m.isString {
		if body[m.start] == 'n' { // null
			return BodyModel{}, badModel(CodeMissingModel, "you must provide a model parameter")
		}
		return BodyModel{}, badModel(CodeInvalidModel, "model must be a string, not "+jsonKind(body[m.start]))
	}
	name := stringValue(body, m)
	switch {
	case name == "":
		return BodyModel{}, badModel(CodeMissingModel, "you must provide a model parameter")
	case len(name) > maxModelLen:
		return BodyModel{}, badModel(CodeInvalidModel, "model is longer than 256 bytes")
	}
	return BodyModel{Name: name, Start: m.start, End: m.end}, nil
}

func badModel(code, msg string) *apierror.Error {
	return &apierror.Error{Status: http.StatusBadRequest, Code: code, Param: "model",
		Type: apierror.TypeFor(http.StatusBadRequest), Message: msg}
}

// jsonKind names the type of the JSON value starting with c.
func jsonKind(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// ReplaceModel returns a copy of body with the string token at [m.Start,
// m.End) replaced by name as a JSON string; every other byte is kept, so
// the result is valid JSON of exactly the length its bytes say.
func ReplaceModel(body []byte, m BodyModel, name string) []byte {
	q := quote(name)
	out := make([]byte, 0, len(body)-(m.End-m.Start)+len(q))
	out = append(out, body[:m.Start]...)
	out = append(out, q...)
	return append(out, body[m.End:]...)
}

// quote renders s as a JSON string.
func quote(s string) []byte {
	b, err := json.Marshal(s)
	if err != nil { // a string always marshals
		return []byte(`""`)
	}
	return b
}

func invalidJSON(msg string) *apierror.Error {
	return apierror.New(http.StatusBadRequest, CodeInvalidJSON, msg)
}

// IsJSONContentType reports whether a Content-Type names JSON
// (application/json or application/*+json, any parameters).
func IsJSONContentType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if mt == "application/json" {
		return true
	}
	return strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}
