package policy

import (
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"github.com/tollgate/tollgate/keystore/model"
)

// MaxVerifyBody bounds the keystore answer the filter will parse.
const MaxVerifyBody = 1 << 20

// VerifyRequest is the callout to POST /v1/verify for a key hash: headers
// and JSON body. Only the hash travels, never the key; method and path are
// left out so the answer lists every entitlement and one cached answer
// authorises every path.
func (p *Policy) VerifyRequest(hash string) (headers [][2]string, body []byte) {
	headers = make([][2]string, 0, 5+len(p.Keystore.Headers))
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
	if status >= 500 || !gjson.ValidBytes(body) {
		return Answer{Kind: Failed, Reason: "keystore answered " + strconv.Itoa(status)}
	}
	root := gjson.ParseBytes(body)
	valid := root.Get("valid")
	if !root.IsObject() || (valid.Type != gjson.True && valid.Type != gjson.False) {
		return Answer{Kind: Failed, Reason: "keystore answered " + strconv.Itoa(status) + " without a verify result"}
	}
	var ttl time.Duration
	if s := root.Get("cache_ttl_seconds").Int(); s > 0 && s < 1<<31 {
		ttl = time.Duration(s) * time.Second
	}
	reason := root.Get("reason").String()
	if !valid.Bool() {
		switch reason {
		case model.ReasonUnknownKey, model.ReasonRevoked, model.ReasonExpired:
			return Answer{Kind: Denied, Reason: reason, TTL: ttl}
		case model.ReasonOperationNotAllowed, model.ReasonModelNotAllowed:
			// The key is good but was checked against a path: authorise locally.
		default:
			return Answer{Kind: Failed, Reason: "keystore denied with unexpected reason " + strconv.Quote(limit(reason, 64))}
		}
	}
	if status >= 300 && valid.Bool() {
		return Answer{Kind: Failed, Reason: "keystore answered " + strconv.Itoa(status) + " with a valid key"}
	}
	g := &Grant{
		KeyID:     root.Get("key_id").String(),
		App:       root.Get("app").String(),
		Developer: root.Get("developer").String(),
	}
	if g.App == "" {
		return Answer{Kind: Failed, Reason: "keystore answer names no app"}
	}
	root.Get("products").ForEach(func(_, v gjson.Result) bool {
		g.Products = append(g.Products, v.String())
		return true
	})
	if exp := root.Get("expires_at"); exp.Exists() && exp.Type == gjson.String {
		t, err := time.Parse(time.RFC3339Nano, exp.String())
		if err != nil {
			return Answer{Kind: Failed, Reason: "keystore answer has a malformed expires_at"}
		}
		g.ExpiresAt = t
	}
	root.Get("entitlements").ForEach(func(_, v gjson.Result) bool {
		g.Entitlements = append(g.Entitlements, decodeEntitlement(v))
		return true
	})
	return Answer{Kind: Granted, Grant: g, TTL: ttl}
}

func decodeEntitlement(v gjson.Result) model.Entitlement {
	e := model.Entitlement{Product: v.Get("product").String()}
	v.Get("allowed_models").ForEach(func(_, m gjson.Result) bool {
		e.AllowedModels = append(e.AllowedModels, m.String())
		return true
	})
	v.Get("operations").ForEach(func(_, o gjson.Result) bool {
		g := model.OperationGrant{Path: o.Get("path").String()}
		o.Get("methods").ForEach(func(_, m gjson.Result) bool {
			g.Methods = append(g.Methods, m.String())
			return true
		})
		g.RequestQuota = decodeQuota(o.Get("request_quota"))
		g.TokenQuota = decodeQuota(o.Get("token_quota"))
		e.Operations = append(e.Operations, g)
		return true
	})
	return e
}

func decodeQuota(v gjson.Result) *model.QuotaSpec {
	if !v.IsObject() {
		return nil
	}
	return &model.QuotaSpec{
		Limit:    v.Get("limit").Int(),
		Interval: v.Get("interval").Int(),
		TimeUnit: v.Get("time_unit").String(),
		Window:   v.Get("window").String(),
		Counted:  v.Get("counted").String(),
		Scope:    v.Get("scope").String(),
	}
}

func limit(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
