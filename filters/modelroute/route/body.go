package route

import (
	"errors"
	"strings"

	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/jsonenc"
	"github.com/tollgate/tollgate/shared/reqview"
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

// ExtractModel reads the top-level "model" string of a request body through
// the canonical request view, so modelroute refuses exactly what every other
// filter refuses: anything an upstream could read differently from the
// gateway (duplicate or case-variant keys, escapes, invalid UTF-8, nesting
// deeper than lim allows, trailing data).
func ExtractModel(body []byte, lim reqview.Limits) (BodyModel, *apierror.Error) {
	return extractModel(nil, body, lim)
}

// extractModel is ExtractModel through a request-view memo.
func extractModel(memo *reqview.Memo, body []byte, lim reqview.Limits) (BodyModel, *apierror.Error) {
	if len(body) == 0 {
		return BodyModel{}, invalidJSON("the request body is empty; send a JSON object with a \"model\" field")
	}
	req, err := memo.ParseRequest(body, lim)
	if err != nil {
		var re *reqview.Error
		if !errors.As(err, &re) {
			return BodyModel{}, invalidJSON("the request body is not valid JSON")
		}
		ae := re.API()
		if re.Param == "model" {
			ae.Code = CodeInvalidModel
		}
		return BodyModel{}, ae
	}
	m := req.ModelValue
	switch {
	case req.Model == "":
		return BodyModel{}, badModel(CodeMissingModel, "you must provide a model parameter")
	case len(req.Model) > maxModelLen:
		return BodyModel{}, badModel(CodeInvalidModel, "model is longer than 256 bytes")
	}
	start, end := m.Span()
	return BodyModel{Name: req.Model, Start: start, End: end}, nil
}

func badModel(code, msg string) *apierror.Error {
	return &apierror.Error{Status: 400, Code: code, Param: "model",
		Type: apierror.TypeFor(400), Message: msg}
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
func quote(s string) []byte { return jsonenc.AppendString(nil, s) }

func invalidJSON(msg string) *apierror.Error {
	return apierror.New(400, CodeInvalidJSON, msg)
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
