package keystore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/tollgate/tollgate/shared/apierror"
)

// Error codes the keystore's APIs return in {"error":{"code":...}}.
const (
	CodeMalformedJSON    = "malformed_json"
	CodeUnknownField     = "unknown_field"
	CodeInvalidType      = "invalid_type"
	CodeEmptyBody        = "empty_body"
	CodeBodyTooLarge     = "body_too_large"
	CodeInvalidRequest   = "invalid_request"
	CodeValidationFailed = "validation_failed"
	CodeUnknownReference = "unknown_reference"
	CodeNotFound         = "not_found"
	CodeAlreadyExists    = "already_exists"
	CodeInUse            = "in_use"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeMissingToken     = "missing_admin_token"
	CodeInvalidToken     = "invalid_admin_token"
	// CodeMissingDataToken and CodeInvalidDataToken refuse data-plane calls
	// without the configured data-plane token.
	CodeMissingDataToken = "missing_data_token"
	CodeInvalidDataToken = "invalid_data_token"
	CodeUnavailable      = "keystore_unavailable"
	CodeInternal         = "internal_error"
)

// writeJSON sends v with status; the body is never cached by intermediaries.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, apierror.New(http.StatusInternalServerError, CodeInternal, "could not encode the response"))
		return
	}
	writeBody(w, status, body)
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError sends the OpenAI-style error body shared by every Tollgate component.
func writeError(w http.ResponseWriter, e *apierror.Error) {
	writeBody(w, e.Status, e.Body(apierror.StyleOpenAI))
}

// decodeJSON reads exactly one JSON object into v from a body capped at
// limit bytes, rejecting unknown fields, and explains any failure as a 4xx.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) *apierror.Error {
	data, e := readBody(w, r, limit)
	if e != nil {
		return e
	}
	return decodeBytes(data, v)
}

// readBody reads a request body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *apierror.Error) {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, apierror.New(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("request body exceeds %d bytes", limit))
		}
		return nil, apierror.New(http.StatusBadRequest, CodeInvalidRequest, "could not read the request body")
	}
	return data, nil
}

// decodeBytes is decodeJSON's parser, separate so it can be fuzzed.
func decodeBytes(data []byte, v any) *apierror.Error {
	if len(bytes.TrimSpace(data)) == 0 {
		return apierror.New(http.StatusBadRequest, CodeEmptyBody, "request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return apierror.New(http.StatusBadRequest, CodeMalformedJSON, "request body has data after the JSON object")
	}
	return nil
}

func jsonError(err error) *apierror.Error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tparse *time.ParseError
	switch {
	case errors.As(err, &tparse):
		return apierror.New(http.StatusBadRequest, CodeInvalidType, fmt.Sprintf("timestamp %q is not RFC 3339 (e.g. 2030-01-02T15:04:05Z)", tparse.Value))
	case errors.As(err, &syntax):
		return apierror.New(http.StatusBadRequest, CodeMalformedJSON, fmt.Sprintf("request body is not valid JSON at byte %d: %s", syntax.Offset, syntax.Error()))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			e := apierror.New(http.StatusBadRequest, CodeInvalidType, fmt.Sprintf("request body must be a JSON object, got %s", typ.Value))
			return e
		}
		e := apierror.New(http.StatusBadRequest, CodeInvalidType, fmt.Sprintf("field %q must be %s, got %s", field, jsonKind(typ.Type.String()), typ.Value))
		e.Param = field
		return e
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return apierror.New(http.StatusBadRequest, CodeMalformedJSON, "request body is truncated JSON")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		e := apierror.New(http.StatusBadRequest, CodeUnknownField, "unknown field "+name+" in request body")
		e.Param = strings.Trim(name, `"`)
		return e
	}
	return apierror.New(http.StatusBadRequest, CodeMalformedJSON, "request body is not valid JSON: "+err.Error())
}

func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["):
		return "an object"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint") || strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "a boolean"
	case goType == "time.Time":
		return "an RFC 3339 timestamp string"
	}
	return "an object"
}

// methods routes one path to per-method handlers and answers any other
// method with a JSON 405 and an Allow header.
type methods map[string]http.HandlerFunc

func (m methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, ok := m[r.Method]; ok {
		h(w, r)
		return
	}
	if r.Method == http.MethodHead {
		if h, ok := m[http.MethodGet]; ok {
			h(w, r)
			return
		}
	}
	allowed := make([]string, 0, len(m))
	for k := range m {
		allowed = append(allowed, k)
	}
	sort.Strings(allowed)
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeError(w, apierror.New(http.StatusMethodNotAllowed, CodeMethodNotAllowed,
		fmt.Sprintf("method %s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allowed, ", "))))
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, apierror.New(http.StatusNotFound, CodeNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)))
}
