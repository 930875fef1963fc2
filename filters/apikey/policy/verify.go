package policy

import (
	"strconv"
	"time"

	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/reqview"
)

// MaxVerifyBody bounds the keystore answer the filter will parse.
const MaxVerifyBody = 1 << 20

// VerifyRequest is the callout to POST /v1/verify for a key hash: headers
// and JSON body. Only the hash travels, never the key; method and path are
// left out so the answer lists every entitlement and one cached answer
// authorises every path.
func (p *Policy) VerifyRequest(hash string) (headers [][2]string, body []byte) {
	headers = make([][2]string, 0, 6+len(p.Keystore.Headers))
	headers = append(headers,
		[2]string{":method", "POST"},
		[2]string{":path", p.Keystore.Path},
		[2]string{":authority", p.Keystore.Authority},
		[2]string{"content-type", "application/json"},
		[2]string{"accept", "application/json"},
	)
	for k, v := range p.Keystore.Headers {
		headers = append(headers, [2]string{k, v})
	}
	headers = p.Keystore.AppendAuth(headers)
	body = make([]byte, 0, 16+len(hash))
	body = append(body, `{"key_hash":"`...)
	body = append(body, hash...)
	body = append(body, `"}`...)
	return headers, body
}

// DecodeVerify turns the keystore's HTTP answer into an Answer. Anything but
// a well-formed verify body (valid true with an app, or valid false with a
// key-level reason) is a Failed answer, so the failure mode decides.
func DecodeVerify(status int, body []byte) Answer {
	if status == 0 {
		return Answer{Kind: Failed, Reason: "keystore unreachable"}
	}
	if len(body) > MaxVerifyBody {
		return Answer{Kind: Failed, Reason: "keystore answer too large"}
	}
	if status >= 500 {
		return Answer{Kind: Failed, Reason: "keystore answered " + strconv.Itoa(status)}
	}
	// The answer is read with the same strict, non-recursive view as client bodies.
	doc, err := reqview.Parse(body, reqview.Limits{MaxBytes: MaxVerifyBody, MaxDepth: 16})
	if err != nil {
		return Answer{Kind: Failed, Reason: "keystore answered " + strconv.Itoa(status)}
	}
	root := doc.Root()
	isValid, isBool := root.Get("valid").Bool()
	if root.Kind() != reqview.Object || !isBool {
		return Answer{Kind: Failed, Reason: "keystore answered " + strconv.Itoa(status) + " without a verify result"}
	}
	var ttl time.Duration
	if s, _ := root.Get("cache_ttl_seconds").Int(); s > 0 && s < 1<<31 {
		ttl = time.Duration(s) * time.Second
	}
	reason := root.Get("reason").Str()
	if !isValid {
		switch reason {
		case model.ReasonUnknownKey, model.ReasonRevoked, model.ReasonExpired:
			return Answer{Kind: Denied, Reason: reason, TTL: ttl}
		case model.ReasonOperationNotAllowed, model.ReasonModelNotAllowed:
			// The key is good but was checked against a path: authorise locally.
		default:
			return Answer{Kind: Failed, Reason: "keystore denied with unexpected reason " + strconv.Quote(limit(reason, 64))}
		}
	}
	if status >= 300 && isValid {
		return Answer{Kind: Failed, Reason: "keystore answered " + strconv.Itoa(status) + " with a valid key"}
	}
	g := &Grant{
		KeyID:     root.Get("key_id").Str(),
		App:       root.Get("app").Str(),
		Developer: root.Get("developer").Str(),
	}
	if g.App == "" {
		return Answer{Kind: Failed, Reason: "keystore answer names no app"}
	}
	g.Products = strs(root.Get("products"))
	if exp := root.Get("expires_at"); exp.Kind() == reqview.String {
		t, err := config.ParseTime(exp.Str())
		if err != nil {
			return Answer{Kind: Failed, Reason: "keystore answer has a malformed expires_at"}
		}
		g.ExpiresAt = t
	}
	root.Get("entitlements").Elems(func(_ int, v reqview.Value) bool {
		g.Entitlements = append(g.Entitlements, decodeEntitlement(v))
		return true
	})
	return Answer{Kind: Granted, Grant: g, TTL: ttl}
}

func decodeEntitlement(v reqview.Value) model.Entitlement {
	e := model.Entitlement{Product: v.Get("product").Str(), AllowedModels: strs(v.Get("allowed_models"))}
	v.Get("operations").Elems(func(_ int, o reqview.Value) bool {
		e.Operations = append(e.Operations, model.OperationGrant{
			Path:         o.Get("path").Str(),
			Methods:      strs(o.Get("methods")),
			RequestQuota: decodeQuota(o.Get("request_quota")),
			TokenQuota:   decodeQuota(o.Get("token_quota")),
		})
		return true
	})
	return e
}

// strs reads an array of strings (nil when absent).
func strs(v reqview.Value) []string {
	var out []string
	v.Elems(func(_ int, s reqview.Value) bool {
		out = append(out, s.Str())
		return true
	})
	return out
}

func decodeQuota(v reqview.Value) *model.QuotaSpec {
	if v.Kind() != reqview.Object {
		return nil
	}
	limit, _ := v.Get("limit").Int()
	interval, _ := v.Get("interval").Int()
	return &model.QuotaSpec{
		Limit:    limit,
		Interval: interval,
		TimeUnit: v.Get("time_unit").Str(),
		Window:   v.Get("window").Str(),
		Counted:  v.Get("counted").Str(),
		Scope:    v.Get("scope").Str(),
	}
}

func limit(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
