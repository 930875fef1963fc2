package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/identity"
	"github.com/tollgate/tollgate/window"
)

// Request is what the policy needs to know about a request. The functions
// are called only when a rule needs them, so the filter makes no host call
// it does not need.
type Request struct {
	Method string
	Path   string
	// Header returns a request header's value ("" when absent).
	Header func(name string) string
	// ClientIP returns the downstream peer address ("ip:port" or "ip").
	ClientIP func() string
	// RouteName returns Envoy's route name (xds.route_name).
	RouteName func() string
}

// Check is one counter a request consumes from.
type Check struct {
	Key  counter.Key
	Spec window.Spec
}

// Plan is what a request is limited by.
type Plan struct {
	Rule *Rule
	// Key is the counted identity ("" when no source yielded one).
	Key string
	// Checks are the counters to consume one request from, all or none.
	Checks []Check
	// SpikeID names the request's spike-arrest state ("" without spike arrest).
	SpikeID string
	// NoKey reports that the rule limits something but no key source
	// yielded a key, so nothing was counted.
	NoKey bool
	// Err is set when the request cannot be planned (a malformed identity quota).
	Err *apierror.Error
}

// Match returns the first rule matching the request; the default rule
// matches everything, so the result is never nil.
func (p *Policy) Match(r Request) *Rule {
	path := r.Path
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	var route string
	routeRead := false
	for _, rule := range p.Rules {
		if rule.Path != "" && path != rule.Path {
			continue
		}
		if rule.PathPrefix != "" && !strings.HasPrefix(path, rule.PathPrefix) {
			continue
		}
		if len(rule.Methods) > 0 && !contains(rule.Methods, r.Method) {
			continue
		}
		if rule.RouteName != "" {
			if !routeRead && r.RouteName != nil {
				route, routeRead = r.RouteName(), true
			}
			if route != rule.RouteName {
				continue
			}
		}
		return rule
	}
	return p.Rules[len(p.Rules)-1]
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Plan matches the request to a rule and works out its key and counters.
func (p *Policy) Plan(r Request) Plan {
	rule := p.Match(r)
	pl := Plan{Rule: rule}
	if len(rule.Quotas) == 0 && rule.Spike == nil && !(rule.IdentityQuota && hasIdentity(rule.Keys)) {
		return pl // nothing to limit: no host calls at all
	}
	var id identity.Identity
	for _, src := range rule.Keys {
		switch src.Kind {
		case FromIdentity:
			got, ok, err := identity.Parse(p.Identity, r.Header)
			if err != nil {
				pl.Err = apierror.New(500, "invalid_identity", "The gateway received a malformed identity quota from the apikey filter.")
				return pl
			}
			if ok {
				id, pl.Key = got, bounded(got.App)
			}
		case FromHeader:
			if v := r.Header(src.Header); v != "" {
				pl.Key = bounded("hdr:" + src.Header + ":" + v)
			}
		case FromClientIP:
			if r.ClientIP != nil {
				if ip := hostOnly(r.ClientIP()); ip != "" {
					pl.Key = "ip:" + ip
				}
			}
		}
		if pl.Key != "" {
			break
		}
	}
	if pl.Key == "" {
		pl.NoKey = true
		return pl
	}
	if rule.IdentityQuota && id.RequestQuota != nil {
		q := id.RequestQuota
		spec, err := window.NewSpec(q.Limit, int(min(q.Interval, 1<<30)), q.TimeUnit, q.Window)
		if err != nil {
			pl.Err = apierror.New(500, "invalid_identity", "The gateway received an invalid identity quota from the apikey filter.")
			return pl
		}
		pl.Checks = append(pl.Checks, Check{Spec: spec, Key: identityKey(pl.Key, id.Product, q.Scope)})
	}
	for _, spec := range rule.Quotas {
		pl.Checks = append(pl.Checks, Check{Spec: spec,
			Key: counter.Key{App: pl.Key, Product: "rule:" + rule.Name, Kind: counter.Requests}})
	}
	if rule.Spike != nil {
		who := pl.Key
		if rule.Spike.PerRule {
			who = "*"
		}
		pl.SpikeID = rule.Name + "|" + who
	}
	return pl
}

// IdentityKey is the counter an app's request quota from the apikey filter
// counts in (the app's name, the product that granted the request and the
// quota's scope), so that readers such as the developer portal's "quota left"
// see exactly the counter this filter enforces.
func IdentityKey(app, product, scope string) counter.Key {
	return identityKey(bounded(app), product, scope)
}

// identityKey builds IdentityKey's counter from an app part already bounded.
func identityKey(app, product, scope string) counter.Key {
	op := scope
	if op == product {
		op = ""
	}
	if product == "" {
		product, op = op, ""
	}
	return counter.Key{App: app, Product: bounded(product), Operation: bounded(op), Kind: counter.Requests}
}

func hasIdentity(keys []KeySource) bool {
	for _, k := range keys {
		if k.Kind == FromIdentity {
			return true
		}
	}
	return false
}

// maxPart is the longest key part the counter API accepts.
const maxPart = counter.MaxKeyPart

// bounded returns s, or "sha256:<hex>" of it when it is too long for a
// counter key or not plain printable UTF-8, so every client-chosen value
// maps to a distinct, valid, JSON-safe key.
func bounded(s string) string {
	if len(s) <= maxPart && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return r < 0x20 || r == 0x7f || r == '"' || r == '\\'
	}) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// hostOnly strips the port from "ip:port" / "[v6]:port" as
// net.SplitHostPort would (package net costs a Wasm module about 60 KB).
func hostOnly(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		if addr[0] == '[' {
			end := strings.IndexByte(addr, ']')
			if end+1 == i && strings.IndexByte(addr[1:], '[') < 0 && strings.IndexByte(addr[i:], ']') < 0 {
				return addr[1:end]
			}
		} else if strings.IndexByte(addr[:i], ':') < 0 && !strings.ContainsAny(addr, "[]") {
			return addr[:i]
		}
	}
	return strings.Trim(addr, "[]")
}
