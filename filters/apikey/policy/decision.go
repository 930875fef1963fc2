package policy

import (
	"strings"
	"time"

	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/identity"
)

// Outcome is the result of a request, and the label of its metric.
type Outcome int

// Outcomes, one metric label each.
const (
	Allowed Outcome = iota
	Missing
	Invalid
	Forbidden
	KeystoreError
	// BadRequest: the path is ambiguous (see CheckPath) and refused before any lookup.
	BadRequest
)

// Outcomes lists every outcome, for defining metrics.
var Outcomes = []Outcome{Allowed, Missing, Invalid, Forbidden, KeystoreError, BadRequest}

// String is the metric label: allowed, missing, invalid, forbidden, keystore_error, bad_request.
func (o Outcome) String() string {
	switch o {
	case Allowed:
		return "allowed"
	case Missing:
		return "missing"
	case Invalid:
		return "invalid"
	case Forbidden:
		return "forbidden"
	case KeystoreError:
		return "keystore_error"
	case BadRequest:
		return "bad_request"
	}
	return "unknown"
}

// Decision is what to do with one request.
type Decision struct {
	Outcome Outcome
	// Pass is true when the request goes on upstream (allowed, or fail-open).
	Pass bool
	// Identity is set on Allowed.
	Identity identity.Identity
	// Pairs is Identity rendered as request headers (shared: do not modify);
	// nil means render Identity.
	Pairs [][2]string
	// Error and Headers are the local reply when Pass is false.
	Error   *apierror.Error
	Headers [][2]string
}

// Missing is the decision for a request without a key.
func (p *Policy) Missing() Decision {
	e := apierror.New(401, "missing_api_key",
		"No API key provided. Send it in "+p.describeSources()+".")
	e.Apigee = "steps.oauth.v2.FailedToResolveAPIKey"
	return Decision{Outcome: Missing, Error: e, Headers: p.challenge(-1, "")}
}

// Invalid is the decision for a key that failed Screen or that the keystore
// does not know (reason is a model.Reason*; "" means malformed).
func (p *Policy) Invalid(source int, reason string) Decision {
	var e *apierror.Error
	switch reason {
	case model.ReasonRevoked:
		e = apierror.New(401, "revoked_api_key", "The API key has been revoked.")
		e.Apigee = "oauth.v2.ApiKeyNotApproved"
	case model.ReasonExpired:
		e = apierror.New(401, "expired_api_key", "The API key has expired.")
		e.Apigee = "keymanagement.service.consumer_key_expired"
	default:
		e = apierror.New(401, "invalid_api_key", "Invalid API key provided.")
		e.Apigee = "oauth.v2.InvalidApiKey"
	}
	return Decision{Outcome: Invalid, Error: e, Headers: p.challenge(source, e.Message)}
}

// Decide turns an answer for the request's key into a decision: a Granted
// answer is authorised against method and path (and the key's expiry at now).
func (p *Policy) Decide(a Answer, source int, method, path string, now time.Time) Decision {
	switch a.Kind {
	case Denied:
		return p.Invalid(source, a.Reason)
	case Granted:
		if a.Grant == nil {
			return p.KeystoreFailure()
		}
	default:
		return p.KeystoreFailure()
	}
	g := a.Grant
	if !g.ExpiresAt.IsZero() && !now.Before(g.ExpiresAt) {
		return p.Invalid(source, model.ReasonExpired)
	}
	r := g.match(method, path)
	if r.e < 0 {
		e := apierror.New(403, "operation_not_allowed",
			"This API key may not call "+limit(method, 16)+" "+limit(model.RequestPath(path), 256)+".")
		e.Apigee = "oauth.v2.InvalidApiKeyForGivenResource"
		var hdrs [][2]string
		if source >= 0 && source < len(p.Sources) && p.Sources[source].Bearer {
			hdrs = [][2]string{{"www-authenticate", `Bearer realm="` + p.Realm + `", error="insufficient_scope"`}}
		}
		return Decision{Outcome: Forbidden, Error: e, Headers: hdrs}
	}
	v := g.identity(r, p.Identity)
	return Decision{Outcome: Allowed, Pass: true, Identity: v.id, Pairs: v.pairs}
}

// KeystoreFailure is the decision when the keystore cannot answer: 503, or
// pass without identity when failing open.
func (p *Policy) KeystoreFailure() Decision {
	if p.FailOpen {
		return Decision{Outcome: KeystoreError, Pass: true}
	}
	e := apierror.New(503, "keystore_unavailable",
		"The API key could not be verified right now; retry later.")
	return Decision{Outcome: KeystoreError, Error: e, Headers: [][2]string{{"retry-after", "1"}}}
}

// describeSources names where keys are read, for the missing-key message.
func (p *Policy) describeSources() string {
	parts := make([]string, len(p.Sources))
	for i, s := range p.Sources {
		switch {
		case s.Bearer:
			parts[i] = "the Authorization header as \"Bearer <key>\""
		case s.Query != "":
			parts[i] = "the query parameter \"" + s.Query + "\""
		default:
			parts[i] = "the \"" + s.Header + "\" header"
		}
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " or " + parts[len(parts)-1]
}

// challenge is the WWW-Authenticate header of a 401: the Bearer scheme
// (RFC 6750) for bearer keys, otherwise an "ApiKey" challenge naming where
// the key goes. source -1 (no key) challenges for the first configured source.
func (p *Policy) challenge(source int, description string) [][2]string {
	if source < 0 || source >= len(p.Sources) {
		source = 0
	}
	s := p.Sources[source]
	var v string
	switch {
	case s.Bearer:
		v = `Bearer realm="` + p.Realm + `"`
		if description != "" {
			v += `, error="invalid_token", error_description="` + description + `"`
		}
	case s.Query != "":
		v = `ApiKey realm="` + p.Realm + `", query="` + s.Query + `"`
	default:
		v = `ApiKey realm="` + p.Realm + `", header="` + s.Header + `"`
	}
	return [][2]string{{"www-authenticate", v}}
}
