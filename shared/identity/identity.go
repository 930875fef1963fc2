// Package identity is the contract between the apikey filter and the filters
// after it (quota, tokencount, modelroute): the request headers that carry a
// verified caller's identity, and the compact quota encoding they use.
//
// The apikey filter deletes every one of these headers from the client's
// request before it sets its own, so a later filter that sees them can trust
// them. The package is pure Go with no proxy-wasm calls, so every filter can
// import it.
package identity

import (
	"errors"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/shared/config"
)

// Default header names; each can be renamed in the apikey configuration.
const (
	HeaderApp           = "x-tollgate-app"
	HeaderDeveloper     = "x-tollgate-developer"
	HeaderProduct       = "x-tollgate-product"
	HeaderKeyID         = "x-tollgate-key-id"
	HeaderAllowedModels = "x-tollgate-allowed-models"
	HeaderRequestQuota  = "x-tollgate-request-quota"
	HeaderTokenQuota    = "x-tollgate-token-quota"
)

//go:generate go run github.com/tollgate/tollgate/scripts/configgen -type Headers

// Headers names the identity headers, so deployments that already use other
// names can keep them.
type Headers struct {
	App           string `json:"app"`
	Developer     string `json:"developer"`
	Product       string `json:"product"`
	KeyID         string `json:"key_id"`
	AllowedModels string `json:"allowed_models"`
	RequestQuota  string `json:"request_quota"`
	TokenQuota    string `json:"token_quota"`
}

// DefaultHeaders returns the x-tollgate-* names.
func DefaultHeaders() Headers {
	return Headers{
		App:           HeaderApp,
		Developer:     HeaderDeveloper,
		Product:       HeaderProduct,
		KeyID:         HeaderKeyID,
		AllowedModels: HeaderAllowedModels,
		RequestQuota:  HeaderRequestQuota,
		TokenQuota:    HeaderTokenQuota,
	}
}

// WithDefaults fills every empty name with its default and lower-cases the
// rest, because Envoy's header maps are lower-case.
func (h Headers) WithDefaults() Headers {
	d := DefaultHeaders()
	pick := func(v, def string) string {
		if v == "" {
			return def
		}
		return strings.ToLower(v)
	}
	return Headers{
		App:           pick(h.App, d.App),
		Developer:     pick(h.Developer, d.Developer),
		Product:       pick(h.Product, d.Product),
		KeyID:         pick(h.KeyID, d.KeyID),
		AllowedModels: pick(h.AllowedModels, d.AllowedModels),
		RequestQuota:  pick(h.RequestQuota, d.RequestQuota),
		TokenQuota:    pick(h.TokenQuota, d.TokenQuota),
	}
}

// All lists every identity header name: the set deleted from client requests.
func (h Headers) All() []string {
	return []string{h.App, h.Developer, h.Product, h.KeyID, h.AllowedModels, h.RequestQuota, h.TokenQuota}
}

// Validate reports an empty, duplicated or malformed header name.
func (h Headers) Validate() error {
	seen := map[string]bool{}
	for _, n := range h.All() {
		if _, err := config.HeaderName("identity header name", n); err != nil {
			return err
		}
		if seen[n] {
			return errors.New("identity header name " + strconv.Quote(n) + " is used twice")
		}
		seen[n] = true
	}
	return nil
}

// Quota is an effective quota as later filters need it: the limit, its
// window, what a token quota counts, and the counter scope within the app.
type Quota struct {
	Limit    int64
	Interval int64
	TimeUnit string // minute, hour, day, month (any unit the window package accepts)
	Window   string // calendar, rolling, flexi
	Counted  string // token quotas only: total, prompt, completion, cost
	Scope    string // opaque counter name; requests with the same app and scope share a counter
}

// ErrInvalidQuota marks a quota header that does not follow the compact form.
var ErrInvalidQuota = errors.New("invalid quota header")

// String renders the compact header form
//
//	<limit>/<interval><unit>/<window>[;counted=<what>];scope=<scope>
//
// e.g. "60/1minute/calendar;scope=chat". The part before the first ';' is
// what window.ParseCompact reads; scope comes last and runs to the end of the
// value, so it may contain any printable character.
func (q Quota) String() string {
	var b strings.Builder
	b.WriteString(strconv.FormatInt(q.Limit, 10))
	b.WriteByte('/')
	b.WriteString(strconv.FormatInt(q.Interval, 10))
	b.WriteString(q.TimeUnit)
	b.WriteByte('/')
	b.WriteString(q.Window)
	if q.Counted != "" {
		b.WriteString(";counted=")
		b.WriteString(q.Counted)
	}
	b.WriteString(";scope=")
	b.WriteString(q.Scope)
	return b.String()
}

// ParseQuota reads the compact form written by Quota.String. It checks the
// shape only; later filters validate limits and units with the window package.
func ParseQuota(s string) (Quota, error) {
	var q Quota
	spec, rest, _ := strings.Cut(s, ";")
	// Three fields cut in place: this runs on every request of quota and
	// tokencount, and a strings.Split allocates.
	var parts [3]string
	var ok1, ok2 bool
	parts[0], parts[1], ok1 = strings.Cut(spec, "/")
	parts[1], parts[2], ok2 = strings.Cut(parts[1], "/")
	if !ok1 || !ok2 || strings.Contains(parts[2], "/") {
		return q, config.Wrap("", ErrInvalidQuota, ": "+strconv.Quote(spec)+" is not limit/intervalunit/window")
	}
	limit, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || limit < 0 {
		return q, config.Wrap("", ErrInvalidQuota, ": limit "+strconv.Quote(parts[0]))
	}
	i := 0
	for i < len(parts[1]) && parts[1][i] >= '0' && parts[1][i] <= '9' {
		i++
	}
	if i == 0 || i > 18 || i == len(parts[1]) {
		return q, config.Wrap("", ErrInvalidQuota, ": interval "+strconv.Quote(parts[1]))
	}
	interval, err := strconv.ParseInt(parts[1][:i], 10, 64)
	if err != nil || interval < 1 {
		return q, config.Wrap("", ErrInvalidQuota, ": interval "+strconv.Quote(parts[1]))
	}
	if parts[2] == "" {
		return q, config.Wrap("", ErrInvalidQuota, ": empty window")
	}
	q = Quota{Limit: limit, Interval: interval, TimeUnit: parts[1][i:], Window: parts[2]}
	scoped := false
	for rest != "" {
		var field string
		if strings.HasPrefix(rest, "scope=") {
			q.Scope, rest, scoped = rest[len("scope="):], "", true
			break
		}
		field, rest, _ = strings.Cut(rest, ";")
		name, value, ok := strings.Cut(field, "=")
		switch {
		case !ok:
			return Quota{}, config.Wrap("", ErrInvalidQuota, ": parameter "+strconv.Quote(field)+" has no value")
		case name == "counted":
			q.Counted = value
		default:
			// Unknown parameters are skipped so the encoding can grow.
		}
	}
	if !scoped {
		return Quota{}, config.Wrap("", ErrInvalidQuota, ": no scope")
	}
	return q, nil
}

// Identity is what the apikey filter knows about a verified caller.
type Identity struct {
	App           string
	Developer     string
	Product       string
	KeyID         string
	AllowedModels []string
	RequestQuota  *Quota
	TokenQuota    *Quota
}

// Pairs renders the identity as request headers with the given names;
// empty fields are left out. Values containing control characters are
// dropped rather than sent, since Envoy would reject the whole request.
func (id Identity) Pairs(h Headers) [][2]string {
	out := make([][2]string, 0, 7)
	add := func(name, value string) {
		if value != "" && printable(value) {
			out = append(out, [2]string{name, value})
		}
	}
	add(h.App, id.App)
	add(h.Developer, id.Developer)
	add(h.Product, id.Product)
	add(h.KeyID, id.KeyID)
	add(h.AllowedModels, strings.Join(id.AllowedModels, ","))
	if id.RequestQuota != nil {
		add(h.RequestQuota, id.RequestQuota.String())
	}
	if id.TokenQuota != nil {
		add(h.TokenQuota, id.TokenQuota.String())
	}
	return out
}

// Parse reads an identity back from request headers (get returns "" when a
// header is absent). ok is false when no app header is present, i.e. the
// request was not verified by the apikey filter.
func Parse(h Headers, get func(name string) string) (id Identity, ok bool, err error) {
	id.App = get(h.App)
	if id.App == "" {
		return Identity{}, false, nil
	}
	id.Developer = get(h.Developer)
	id.Product = get(h.Product)
	id.KeyID = get(h.KeyID)
	if m := get(h.AllowedModels); m != "" {
		id.AllowedModels = strings.Split(m, ",")
	}
	// Both quotas share one allocation (this runs up to three times a
	// request in the chain).
	rq, tq := get(h.RequestQuota), get(h.TokenQuota)
	if rq == "" && tq == "" {
		return id, true, nil
	}
	qs := new([2]Quota)
	if rq != "" {
		if qs[0], err = ParseQuota(rq); err != nil {
			return Identity{}, true, config.Wrap(h.RequestQuota+": ", err, "")
		}
		id.RequestQuota = &qs[0]
	}
	if tq != "" {
		if qs[1], err = ParseQuota(tq); err != nil {
			return Identity{}, true, config.Wrap(h.TokenQuota+": ", err, "")
		}
		id.TokenQuota = &qs[1]
	}
	return id, true, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
