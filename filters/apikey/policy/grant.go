package policy

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/identity"
)

// Grant is what a good key may do: its identity and resolved products. It is
// what the cache holds for a key, so authorising another path needs no callout.
type Grant struct {
	KeyID        string              `json:"k,omitempty"`
	App          string              `json:"a"`
	Developer    string              `json:"d,omitempty"`
	Products     []string            `json:"p,omitempty"`
	Entitlements []model.Entitlement `json:"e,omitempty"`
	ExpiresAt    time.Time           `json:"x,omitzero"`

	// view caches work derived from the grant inside one VM; a Grant is
	// used by one goroutine at a time (a Wasm VM has one thread).
	view *grantView
}

// grantView remembers, for one grant, which operation each method and path
// matched and the identity rendered for each operation, so that a warm
// request neither re-runs the matcher nor re-formats headers.
type grantView struct {
	routes map[routeKey]opRef
	idents map[opRef]*rendered
}

type routeKey struct{ method, path string }

// opRef locates an operation: entitlement and operation index; e < 0 means
// no operation matched.
type opRef struct{ e, o int }

type rendered struct {
	id    identity.Identity
	pairs [][2]string
}

// maxRoutes bounds the remembered method/path pairs per grant.
const maxRoutes = 128

// match authorises method and path (query ignored) against the grant.
func (g *Grant) match(method, path string) opRef {
	if g.view == nil {
		g.view = &grantView{routes: map[routeKey]opRef{}, idents: map[opRef]*rendered{}}
	}
	k := routeKey{method, model.RequestPath(path)}
	if r, ok := g.view.routes[k]; ok {
		return r
	}
	r := opRef{e: -1}
	if d := model.Authorize(g.Entitlements, method, k.path, ""); d.Reason == "" && d.Entitlement != nil && d.Operation != nil {
	find:
		for i := range g.Entitlements {
			if &g.Entitlements[i] != d.Entitlement {
				continue
			}
			for j := range g.Entitlements[i].Operations {
				if &g.Entitlements[i].Operations[j] == d.Operation {
					r = opRef{i, j}
					break find
				}
			}
		}
	}
	if len(g.view.routes) >= maxRoutes {
		clear(g.view.routes)
	}
	g.view.routes[k] = r
	return r
}

// identity renders (once) the identity of an allowed request on operation r.
func (g *Grant) identity(r opRef, h identity.Headers) *rendered {
	if v, ok := g.view.idents[r]; ok {
		return v
	}
	e := &g.Entitlements[r.e]
	op := &e.Operations[r.o]
	v := &rendered{id: identity.Identity{
		App:           g.App,
		Developer:     g.Developer,
		Product:       e.Product,
		KeyID:         g.KeyID,
		AllowedModels: e.AllowedModels,
		RequestQuota:  QuotaOf(op.RequestQuota),
		TokenQuota:    QuotaOf(op.TokenQuota),
	}}
	v.pairs = v.id.Pairs(h)
	g.view.idents[r] = v
	return v
}

// Kind classifies a keystore answer.
type Kind byte

// Answer kinds; the byte values are the first byte of an encoded answer.
const (
	// Granted: the key is good; Grant says for what.
	Granted Kind = 'G'
	// Denied: the key is unknown, revoked or expired; Reason says which.
	Denied Kind = 'D'
	// Failed: the keystore could not answer (unreachable, timeout, garbage).
	Failed Kind = 'E'
)

// Answer is the outcome of looking a key up: from the keystore, the cache or
// the local table.
type Answer struct {
	Kind   Kind
	Grant  *Grant
	Reason string // Denied: a model.Reason*; Failed: what went wrong (no secrets)
	// TTL is how long the keystore allows the answer to be reused (0: no hint).
	TTL time.Duration
}

// ErrBadEntry marks a cache entry that cannot be decoded.
var ErrBadEntry = errors.New("malformed cached answer")

// Encode serialises the answer for the shared cache: one kind byte, then the
// JSON grant or the reason text.
func (a Answer) Encode() ([]byte, error) {
	switch a.Kind {
	case Granted:
		if a.Grant == nil {
			return nil, config.Wrap("", ErrBadEntry, ": granted answer without a grant")
		}
		return appendGrant([]byte{byte(Granted)}, a.Grant), nil
	case Denied, Failed:
		return append([]byte{byte(a.Kind)}, a.Reason...), nil
	}
	return nil, config.Wrap("", ErrBadEntry, ": kind "+strconv.QuoteRune(rune(a.Kind)))
}

// DecodeAnswer reads what Encode wrote.
func DecodeAnswer(b []byte) (Answer, error) {
	if len(b) == 0 {
		return Answer{}, config.Wrap("", ErrBadEntry, ": empty")
	}
	switch Kind(b[0]) {
	case Granted:
		var g Grant
		if err := config.Decode(b[1:], &g); err != nil {
			return Answer{}, config.Wrap2(ErrBadEntry, ": ", err)
		}
		if g.App == "" {
			return Answer{}, config.Wrap("", ErrBadEntry, ": grant without app")
		}
		return Answer{Kind: Granted, Grant: &g}, nil
	case Denied, Failed:
		return Answer{Kind: Kind(b[0]), Reason: string(b[1:])}, nil
	}
	return Answer{}, config.Wrap("", ErrBadEntry, ": kind byte 0x"+strconv.FormatUint(uint64(b[0]), 16))
}

// Expiry is when a cached copy of the answer must be dropped: now plus the
// configured TTL for its kind, shortened by the keystore's hint and by the
// key's own expiry. A zero result means "do not cache".
func (p *Policy) Expiry(a Answer, now time.Time) time.Time {
	var ttl time.Duration
	switch a.Kind {
	case Granted:
		ttl = p.Cache.TTL
	case Denied:
		ttl = p.Cache.NegativeTTL
	case Failed:
		ttl = p.Cache.ErrorTTL
	}
	if a.TTL > 0 && a.TTL < ttl && a.Kind != Failed {
		ttl = a.TTL
	}
	if ttl <= 0 {
		return time.Time{}
	}
	exp := now.Add(ttl)
	if a.Kind == Granted && a.Grant != nil && !a.Grant.ExpiresAt.IsZero() && a.Grant.ExpiresAt.Before(exp) {
		exp = a.Grant.ExpiresAt
		if !exp.After(now) {
			return time.Time{}
		}
	}
	return exp
}

// compileLocal validates local mode's products and keys and resolves each
// key's entitlements once, at configuration time.
func compileLocal(l *LocalConfig) (map[string]*Grant, error) {
	if len(l.Keys) == 0 {
		return nil, errors.New("keys: local mode needs at least one key")
	}
	sets := map[string]model.OperationSet{}
	for i := range l.OperationSets {
		s := l.OperationSets[i]
		s.Normalize()
		if errs := s.Validate(); len(errs) > 0 {
			return nil, config.Wrap("operation_sets["+strconv.Itoa(i)+"]: ", errs, "")
		}
		if _, dup := sets[s.Name]; dup {
			return nil, errors.New("operation_sets[" + strconv.Itoa(i) + "]: " + strconv.Quote(s.Name) + " defined twice")
		}
		sets[s.Name] = s
	}
	products := map[string]model.Entitlement{}
	for i := range l.Products {
		pr := l.Products[i]
		pr.Normalize()
		if errs := pr.Validate(); len(errs) > 0 {
			return nil, config.Wrap("products["+strconv.Itoa(i)+"]: ", errs, "")
		}
		if _, dup := products[pr.Name]; dup {
			return nil, errors.New("products[" + strconv.Itoa(i) + "]: " + strconv.Quote(pr.Name) + " defined twice")
		}
		for _, ref := range pr.OperationSets {
			if _, ok := sets[ref]; !ok {
				return nil, errors.New("products[" + strconv.Itoa(i) + "]: operation set " + strconv.Quote(ref) + " is not defined")
			}
		}
		products[pr.Name] = model.Resolve(pr, sets)
	}
	out := make(map[string]*Grant, len(l.Keys))
	for i, k := range l.Keys {
		h := strings.ToLower(k.Hash)
		switch {
		case !model.ValidKeyHash(h):
			return nil, errors.New("keys[" + strconv.Itoa(i) + "].hash: want 64 hex digits (the SHA-256 of the key), never the key itself")
		case !model.ValidName(k.App):
			return nil, errors.New("keys[" + strconv.Itoa(i) + "].app " + strconv.Quote(k.App) + " is not a valid name")
		case len(k.Products) == 0:
			return nil, errors.New("keys[" + strconv.Itoa(i) + "].products: a key needs at least one product")
		}
		if _, dup := out[h]; dup {
			return nil, errors.New("keys[" + strconv.Itoa(i) + "]: hash listed twice")
		}
		if k.Developer != "" && !model.ValidEmail(k.Developer) {
			return nil, errors.New("keys[" + strconv.Itoa(i) + "].developer " + strconv.Quote(k.Developer) + " is not an e-mail address")
		}
		if k.KeyID != "" && !printable(k.KeyID) {
			return nil, errors.New("keys[" + strconv.Itoa(i) + "].key_id must be printable")
		}
		g := &Grant{KeyID: k.KeyID, App: k.App, Developer: k.Developer, Products: k.Products, ExpiresAt: k.ExpiresAt}
		for j, name := range k.Products {
			e, ok := products[name]
			if !ok {
				return nil, errors.New("keys[" + strconv.Itoa(i) + "].products[" + strconv.Itoa(j) + "]: product " + strconv.Quote(name) + " is not defined")
			}
			g.Entitlements = append(g.Entitlements, e)
		}
		out[h] = g
	}
	return out, nil
}

// QuotaOf converts the keystore's effective quota to the identity encoding
// (the headers quota and tokencount read), so every reader derives the same
// window and scope.
func QuotaOf(q *model.QuotaSpec) *identity.Quota {
	if q == nil {
		return nil
	}
	out := &identity.Quota{
		Limit:    q.Limit,
		Interval: q.Interval,
		TimeUnit: q.TimeUnit,
		Window:   q.Window,
		Counted:  q.Counted,
		Scope:    q.Scope,
	}
	if out.Interval < 1 {
		out.Interval = 1
	}
	if out.Window == "" {
		out.Window = model.WindowCalendar
	}
	return out
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
