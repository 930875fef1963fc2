package model

import (
	"strings"
	"time"
)

// Denial reasons returned by POST /v1/verify; filters switch on these strings.
const (
	ReasonMissing             = "missing"
	ReasonUnknownKey          = "unknown_key"
	ReasonRevoked             = "revoked"
	ReasonExpired             = "expired"
	ReasonOperationNotAllowed = "operation_not_allowed"
	ReasonModelNotAllowed     = "model_not_allowed"
)

// ReasonStatus is the HTTP status a filter should answer the client with for
// a denial reason: 401 when the key is missing or unusable, 403 when the key
// is good but not for this request.
func ReasonStatus(reason string) int {
	switch reason {
	case "":
		return 200
	case ReasonOperationNotAllowed, ReasonModelNotAllowed:
		return 403
	default:
		return 401
	}
}

// VerifyRequest is the body of POST /v1/verify. Exactly one of Key and
// KeyHash is set; Method and Path are given together or not at all (then only
// the key is checked and the entitlements come back for local evaluation).
type VerifyRequest struct {
	Key     string `json:"key,omitempty"`
	KeyHash string `json:"key_hash,omitempty"`
	Method  string `json:"method,omitempty"`
	Path    string `json:"path,omitempty"`
	Model   string `json:"model,omitempty"`
}

// QuotaSpec is an effective quota as the data plane sees it. Scope is an
// opaque, stable counter name within the app: requests sharing a scope share
// a counter.
type QuotaSpec struct {
	Limit    int64  `json:"limit"`
	Interval int64  `json:"interval"`
	TimeUnit string `json:"time_unit"`
	Window   string `json:"window"`
	Counted  string `json:"counted,omitempty"`
	Scope    string `json:"scope"`
}

// OperationGrant is one operation a key may call, with the quotas that apply
// to it already resolved (operation, then operation set, then product).
type OperationGrant struct {
	Path         string     `json:"path"`
	Methods      []string   `json:"methods"`
	RequestQuota *QuotaSpec `json:"request_quota,omitempty"`
	TokenQuota   *QuotaSpec `json:"token_quota,omitempty"`
}

// Entitlement is one product as resolved for a key: everything a filter
// needs to authorise further requests from its cache without a callout.
type Entitlement struct {
	Product       string            `json:"product"`
	Operations    []OperationGrant  `json:"operations"`
	AllowedModels []string          `json:"allowed_models"`
	Attributes    map[string]string `json:"attributes,omitempty"`
}

// VerifyResponse is the body of every /v1/verify answer that is not a
// malformed request. Valid is true only when the key is good and, if method
// and path were given, the request is authorised. For 403 reasons the key
// itself is good: the identity and entitlements are filled in and may be
// cached like a positive answer.
type VerifyResponse struct {
	Valid           bool            `json:"valid"`
	Status          int             `json:"status"`
	Reason          string          `json:"reason,omitempty"`
	Message         string          `json:"message,omitempty"`
	KeyID           string          `json:"key_id,omitempty"`
	App             string          `json:"app,omitempty"`
	Developer       string          `json:"developer,omitempty"`
	Products        []string        `json:"products,omitempty"`
	Product         string          `json:"product,omitempty"`
	Operation       *OperationGrant `json:"operation,omitempty"`
	AllowedModels   []string        `json:"allowed_models,omitempty"`
	RequestQuota    *QuotaSpec      `json:"request_quota,omitempty"`
	TokenQuota      *QuotaSpec      `json:"token_quota,omitempty"`
	ExpiresAt       *time.Time      `json:"expires_at,omitempty"`
	CacheTTLSeconds int             `json:"cache_ttl_seconds"`
	Entitlements    []Entitlement   `json:"entitlements,omitempty"`
}

func quotaSpec(q *Quota, scope string) *QuotaSpec {
	if q == nil {
		return nil
	}
	return &QuotaSpec{Limit: q.Limit, Interval: q.Interval, TimeUnit: q.TimeUnit, Window: q.Window, Counted: q.Counted, Scope: scope}
}

func opScope(product string, op Operation) string {
	methods := "*"
	if len(op.Methods) > 0 {
		methods = strings.Join(op.Methods, ",")
	}
	return product + ":" + methods + ":" + op.Path
}

func grant(product string, op Operation, setName string, setReq, setTok, prodReq, prodTok *Quota) OperationGrant {
	g := OperationGrant{Path: op.Path, Methods: op.Methods}
	if len(g.Methods) == 0 {
		g.Methods = []string{"*"}
	}
	pick := func(opQ, setQ, prodQ *Quota) *QuotaSpec {
		switch {
		case opQ != nil:
			return quotaSpec(opQ, opScope(product, op))
		case setQ != nil:
			return quotaSpec(setQ, product+":set:"+setName)
		default:
			return quotaSpec(prodQ, product)
		}
	}
	g.RequestQuota = pick(op.RequestQuota, setReq, prodReq)
	g.TokenQuota = pick(op.TokenQuota, setTok, prodTok)
	return g
}

// Resolve expands a product's operation sets (looked up in sets; missing ones
// are skipped) and computes each operation's effective quotas. Inline
// operations come first, then the sets in the order the product lists them.
func Resolve(p Product, sets map[string]OperationSet) Entitlement {
	e := Entitlement{Product: p.Name, AllowedModels: p.AllowedModels, Attributes: p.Attributes}
	if len(e.AllowedModels) == 0 {
		e.AllowedModels = []string{"*"}
	}
	for _, op := range p.Operations {
		e.Operations = append(e.Operations, grant(p.Name, op, "", nil, nil, p.RequestQuota, p.TokenQuota))
	}
	for _, name := range p.OperationSets {
		set, ok := sets[name]
		if !ok {
			continue
		}
		for _, op := range set.Operations {
			e.Operations = append(e.Operations, grant(p.Name, op, set.Name, set.RequestQuota, set.TokenQuota, p.RequestQuota, p.TokenQuota))
		}
	}
	return e
}

// Decision is the outcome of Authorize: an empty Reason means allowed, and
// then Entitlement and Operation say what matched.
type Decision struct {
	Reason      string
	Entitlement *Entitlement
	Operation   *OperationGrant
}

// Authorize finds the first entitlement (in key order) with an operation that
// matches method and path and, when model is not empty, allows the model.
// When some operation matched but no product allowed the model the reason is
// model_not_allowed, otherwise operation_not_allowed.
func Authorize(ents []Entitlement, method, path, model string) Decision {
	p := RequestPath(path)
	opMatched := false
	for i := range ents {
		e := &ents[i]
		for j := range e.Operations {
			op := &e.Operations[j]
			if !MatchPath(op.Path, p) || !MatchMethod(op.Methods, method) {
				continue
			}
			opMatched = true
			if model == "" || MatchModel(e.AllowedModels, model) {
				return Decision{Entitlement: e, Operation: op}
			}
			break
		}
	}
	if opMatched {
		return Decision{Reason: ReasonModelNotAllowed}
	}
	return Decision{Reason: ReasonOperationNotAllowed}
}

// EffectiveProducts is the products a key may use: its own restriction when
// set, intersected with the app's current subscriptions, in the key's order.
func EffectiveProducts(k Key, a App) []string {
	if len(k.Products) == 0 {
		return a.Products
	}
	var out []string
	for _, p := range k.Products {
		for _, ap := range a.Products {
			if p == ap {
				out = append(out, p)
				break
			}
		}
	}
	return out
}
