package route

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"

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
// that is not one valid JSON object, and a "model" key that appears twice
// (JSON parsers disagree about which duplicate wins).
func ExtractModel(body []byte) (BodyModel, *apierror.Error) {
	if len(body) == 0 {
		return BodyModel{}, invalidJSON("the request body is empty; send a JSON object with a \"model\" field")
	}
	if !gjson.ValidBytes(body) {
		return BodyModel{}, invalidJSON("the request body is not valid JSON")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return BodyModel{}, invalidJSON("the request body must be a JSON object")
	}
	var (
		found   bool
		dup     bool
		val     gjson.Result
		valAt   int
		badType string
	)
	root.ForEach(func(k, v gjson.Result) bool {
		if k.Str != "model" {
			return true
		}
		if found {
			dup = true
			return false
		}
		found, val, valAt = true, v, v.Index // Index is the offset in body
		return true
	})
	switch {
	case dup:
		return BodyModel{}, &apierror.Error{Status: http.StatusBadRequest, Code: CodeInvalidModel, Param: "model",
			Type: apierror.TypeFor(http.StatusBadRequest), Message: "the request body names \"model\" more than once"}
	case !found || val.Type == gjson.Null:
		return BodyModel{}, &apierror.Error{Status: http.StatusBadRequest, Code: CodeMissingModel, Param: "model",
			Type: apierror.TypeFor(http.StatusBadRequest), Message: "you must provide a model parameter"}
	case val.Type != gjson.String:
		badType = val.Type.String()
		return BodyModel{}, &apierror.Error{Status: http.StatusBadRequest, Code: CodeInvalidModel, Param: "model",
			Type: apierror.TypeFor(http.StatusBadRequest), Message: "model must be a string, not " + strings.ToLower(badType)}
	case val.Str == "":
		return BodyModel{}, &apierror.Error{Status: http.StatusBadRequest, Code: CodeMissingModel, Param: "model",
			Type: apierror.TypeFor(http.StatusBadRequest), Message: "you must provide a model parameter"}
	case len(val.Str) > maxModelLen:
		return BodyModel{}, &apierror.Error{Status: http.StatusBadRequest, Code: CodeInvalidModel, Param: "model",
			Type: apierror.TypeFor(http.StatusBadRequest), Message: "model is longer than 256 bytes"}
	}
	return BodyModel{Name: strings.Clone(val.Str), Start: valAt, End: valAt + len(val.Raw)}, nil
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
