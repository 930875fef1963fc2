// Package apierror builds the error bodies every Tollgate component returns,
// so that OpenAI SDKs raise their typed errors and Apigee users see familiar
// faults. It is pure Go and used by both the Wasm filters and the service.
package apierror

import (
	"strconv"

	"github.com/tollgate/tollgate/shared/jsonenc"
)

// Style selects the shape of an error body, because clients migrating from
// Apigee parse its fault format while OpenAI SDKs need theirs.
type Style int

const (
	// StyleOpenAI is {"error":{"message","type","param","code"}}: OpenAI SDKs map it to typed errors.
	StyleOpenAI Style = iota
	// StyleApigee is {"fault":{"faultstring","detail":{"errorcode"}}}, as Apigee proxies answer.
	StyleApigee
)

// ParseStyle reads a configuration value ("openai", "apigee" or empty) so filters share one spelling.
func ParseStyle(s string) (Style, bool) {
	switch s {
	case "", "openai":
		return StyleOpenAI, true
	case "apigee":
		return StyleApigee, true
	}
	return StyleOpenAI, false
}

// Error is one client-facing failure: the HTTP status plus the machine-readable
// fields both styles need.
type Error struct {
	Status  int    // HTTP status code sent to the client.
	Message string // Human-readable explanation; never contains secrets.
	Type    string // OpenAI error type, e.g. "invalid_request_error".
	Code    string // OpenAI error code, e.g. "invalid_api_key".
	Param   string // Offending request parameter, if any.
	Apigee  string // Apigee errorcode, e.g. "oauth.v2.InvalidApiKey"; derived when empty.
}

// Error makes Error usable as a Go error inside pure policy code.
func (e *Error) Error() string { return strconv.Itoa(e.Status) + " " + e.Code + ": " + e.Message }

// New returns an Error with the OpenAI type that matches the status, so callers only state what went wrong.
func New(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message, Type: TypeFor(status)}
}

// TypeFor maps a status to the OpenAI error type that SDKs and dashboards expect for it.
func TypeFor(status int) string {
	switch {
	case status == 401:
		return "authentication_error"
	case status == 403:
		return "permission_error"
	case status == 404:
		return "not_found_error"
	case status == 429:
		return "rate_limit_error"
	case status == 413:
		return "invalid_request_error"
	case status >= 500:
		return "server_error"
	default:
		return "invalid_request_error"
	}
}

// Body renders the error in the requested style as JSON, written by hand
// (shared/jsonenc) so that no filter links encoding/json for its errors:
// {"error":{"message","type","param","code"}} for OpenAI, or Apigee's
// {"fault":{"faultstring","detail":{"errorcode"}}}.
func (e *Error) Body(style Style) []byte {
	b := make([]byte, 0, 96+len(e.Message))
	if style == StyleApigee {
		b = append(b, `{"fault":{"faultstring":`...)
		b = jsonenc.AppendString(b, e.Message)
		b = append(b, `,"detail":{"errorcode":`...)
		b = jsonenc.AppendString(b, e.apigeeCode())
		return append(b, "}}}"...)
	}
	typ := e.Type
	if typ == "" {
		typ = TypeFor(e.Status)
	}
	b = append(b, `{"error":{"message":`...)
	b = jsonenc.AppendString(b, e.Message)
	b = append(b, `,"type":`...)
	b = jsonenc.AppendString(b, typ)
	b = append(b, `,"param":`...)
	if e.Param != "" {
		b = jsonenc.AppendString(b, e.Param)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"code":`...)
	b = jsonenc.AppendString(b, e.Code)
	return append(b, "}}"...)
}

func (e *Error) apigeeCode() string {
	if e.Apigee != "" {
		return e.Apigee
	}
	switch e.Status {
	case 401:
		return "oauth.v2.InvalidApiKey"
	case 403:
		return "oauth.v2.InvalidApiKeyForGivenResource"
	case 429:
		return "policies.ratelimit.QuotaViolation"
	default:
		return "tollgate." + e.Code
	}
}

// Headers are the response headers every error carries; callers append their own (Retry-After, WWW-Authenticate).
func Headers() [][2]string {
	return [][2]string{{"content-type", "application/json"}}
}
