package route

import (
	"math/bits"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/reqview"
)

// Headers reads request headers by lower-case name; the filter adapts the
// proxy's header map to it and tests use HeaderMap.
type Headers interface {
	Get(name string) (string, bool)
}

// HeaderMap is a plain Headers for tests and callers that already hold the headers.
type HeaderMap map[string]string

// Get returns the value of a lower-case header name.
func (h HeaderMap) Get(name string) (string, bool) {
	v, ok := h[name]
	return v, ok
}

// Rand is the random source of unweighted-by-key picks; *math/rand/v2.Rand
// satisfies it, and its Uint64N is unbiased.
type Rand interface {
	Uint64N(n uint64) uint64
}

// Step says what the filter does after the request headers.
type Step int

const (
	// Skip lets the request through untouched (no body, or a path the filter does not own).
	Skip Step = iota
	// Buffer pauses the request until its whole body has arrived, then calls Decide.
	Buffer
	// Reject answers the client with Start.Err.
	Reject
)

// Start is the verdict on the request headers.
type Start struct {
	// Step is the action to take.
	Step Step
	// Err is the client error when Step is Reject.
	Err *apierror.Error
}

// ClientHeaders are the headers the filter owns: any value a client sent is
// removed before routing, so a client can never pick its own route or
// priority, nor the public model later filters meter and price by.
func (p *Policy) ClientHeaders() []string {
	return []string{p.RoutingHeader, p.PriorityHeader, p.PublicModelHeader}
}

// Begin judges the request headers. path is the :path (query allowed);
// endOfStream is true for requests without a body, which are never paused.
func (p *Policy) Begin(path string, h Headers, endOfStream bool) Start {
	if endOfStream || !p.Owns(path) {
		return Start{Step: Skip}
	}
	ct, _ := h.Get("content-type")
	if !IsJSONContentType(ct) {
		msg := "Content-Type must be application/json"
		if ct != "" {
			msg += ", not " + strconv.Quote(truncate(ct, 100))
		}
		return Start{Step: Reject, Err: apierror.New(400, CodeInvalidContentType, msg)}
	}
	if cl, ok := h.Get("content-length"); ok {
		n, err := strconv.ParseInt(strings.TrimSpace(cl), 10, 64)
		if err == nil && n > p.MaxBodyBytes {
			return Start{Step: Reject, Err: p.TooLarge()}
		}
	}
	if _, ok := h.Get(p.AllowedModelsHeader); !ok && p.RequireIdentity {
		return Start{Step: Reject, Err: p.noIdentity()}
	}
	return Start{Step: Buffer}
}

// Owns reports whether the filter handles path (the query is ignored).
func (p *Policy) Owns(path string) bool {
	if len(p.Paths) == 0 {
		return true
	}
	path, _, _ = strings.Cut(path, "?")
	for _, pre := range p.Paths {
		if strings.HasPrefix(path, pre) {
			return true
		}
	}
	return false
}

// TooLarge is the 413 for a body above MaxBodyBytes.
func (p *Policy) TooLarge() *apierror.Error {
	return apierror.New(413, CodeTooLarge,
		"the request body is larger than the gateway's limit of "+strconv.FormatInt(p.MaxBodyBytes, 10)+" bytes")
}

func (p *Policy) noIdentity() *apierror.Error {
	return apierror.New(403, CodeNoIdentity, "the request carries no API product identity, so no model is allowed")
}

// Decision is where one request goes and what changes on the way.
type Decision struct {
	// Requested is the model name the client sent.
	Requested string
	// Model is the canonical public name ("" when an unknown model passed through).
	Model string
	// Target is the routing header value chosen.
	Target string
	// BackendModel is the model name the upstream receives.
	BackendModel string
	// Body is the rewritten body, or nil when the body is unchanged.
	Body []byte
	// Priority is the priority header value ("" for none).
	Priority string
	// Sticky reports that the target was chosen from the sticky key.
	Sticky bool
	// MapResponse says to map the response's model from BackendModel back to Model.
	MapResponse bool
}

// PublicModel is the name later filters should label and price the request
// by: the canonical public name, or the client's name when an unknown model
// passed through.
func (d *Decision) PublicModel() string {
	if d.Model != "" {
		return d.Model
	}
	return d.Requested
}

// Headers returns the request headers to set for the decision, in order:
// the routing header, the public model header and the priority (if any).
func (d *Decision) Headers(p *Policy) [][2]string {
	hs := [][2]string{{p.RoutingHeader, d.Target}}
	if pm := d.PublicModel(); pm != "" {
		hs = append(hs, [2]string{p.PublicModelHeader, pm})
	}
	if d.Priority != "" {
		hs = append(hs, [2]string{p.PriorityHeader, d.Priority})
	}
	return hs
}

// Decide routes a complete request body. h are the request headers (identity,
// sticky key); rnd picks among weighted targets when there is no sticky key.
func (p *Policy) Decide(body []byte, h Headers, rnd Rand) (Decision, *apierror.Error) {
	return p.DecideMemo(nil, body, h, rnd)
}

// DecideMemo is Decide reading the body through a stream's request-view
// memo, so the filters of one stream parse one body once.
func (p *Policy) DecideMemo(memo *reqview.Memo, body []byte, h Headers, rnd Rand) (Decision, *apierror.Error) {
	if int64(len(body)) > p.MaxBodyBytes {
		return Decision{}, p.TooLarge()
	}
	bm, aerr := extractModel(memo, body, p.JSONLimits)
	if aerr != nil {
		return Decision{}, aerr
	}
	d := Decision{Requested: bm.Name}
	m, known := p.byName[bm.Name]
	if !known && !p.Passthrough {
		return Decision{}, notFound(bm.Name)
	}
	if aerr := p.checkAllowed(bm.Name, m, h); aerr != nil {
		return Decision{}, aerr
	}
	if !known {
		if !validHeaderValue(bm.Name) {
			return Decision{}, &apierror.Error{Status: 400, Code: CodeInvalidModel, Param: "model",
				Type: apierror.TypeFor(400), Message: "model must be visible ASCII without leading or trailing spaces"}
		}
		d.Target, d.BackendModel = bm.Name, bm.Name
		d.Priority = p.priority(nil, h)
		return d, nil
	}
	d.Model = m.Name
	var t Target
	t, d.Sticky = m.pick(h, rnd)
	d.Target, d.BackendModel = t.Route, t.BackendModel
	if t.BackendModel != bm.Name {
		d.Body = ReplaceModel(body, bm, t.BackendModel)
	}
	d.MapResponse = m.MapResponse && t.BackendModel != m.Name
	d.Priority = p.priority(m, h)
	return d, nil
}

func notFound(name string) *apierror.Error {
	return &apierror.Error{Status: 404, Code: CodeModelNotFound, Param: "model",
		Type:    apierror.TypeFor(404),
		Message: "The model " + strconv.Quote(truncate(name, maxModelLen)) + " does not exist or you do not have access to it."}
}

// checkAllowed applies the caller's product: a model is allowed when its
// canonical name or the name the client used matches an allowed pattern.
func (p *Policy) checkAllowed(requested string, m *Model, h Headers) *apierror.Error {
	allowed, ok := h.Get(p.AllowedModelsHeader)
	if !ok {
		if p.RequireIdentity {
			return p.noIdentity()
		}
		return nil
	}
	if AllowedBy(allowed, requested) || (m != nil && AllowedBy(allowed, m.Name)) {
		return nil
	}
	if p.HideForbidden {
		return notFound(requested)
	}
	product, _ := h.Get(p.ProductHeader)
	msg := "The model " + strconv.Quote(truncate(requested, maxModelLen)) + " is not available to your API product"
	if product != "" {
		msg = "The model " + strconv.Quote(truncate(requested, maxModelLen)) + " is not available to API product " + strconv.Quote(truncate(product, 100))
	}
	return &apierror.Error{Status: 403, Code: CodeModelNotAllowed, Param: "model",
		Type: apierror.TypeFor(403), Message: msg}
}

// AllowedBy reports whether name matches a comma-separated list of exact
// names and "prefix*" patterns ("*" alone allows everything).
func AllowedBy(list, name string) bool {
	for list != "" {
		var item string
		item, list, _ = strings.Cut(list, ",")
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if pre, ok := strings.CutSuffix(item, "*"); ok {
			if strings.HasPrefix(name, pre) {
				return true
			}
			continue
		}
		if item == name {
			return true
		}
	}
	return false
}

// priority resolves the priority header value: app, then product, then the
// model, then the default; inside an app or product a per-model value wins.
func (p *Policy) priority(m *Model, h Headers) string {
	name := ""
	if m != nil {
		name = m.Name
	}
	lookup := func(set map[string]PriorityConfig, header string) string {
		if len(set) == 0 {
			return ""
		}
		who, ok := h.Get(header)
		if !ok {
			return ""
		}
		pc, ok := set[who]
		if !ok {
			return ""
		}
		if v, ok := pc.Models[name]; ok && name != "" {
			return v
		}
		return pc.Priority
	}
	if v := lookup(p.apps, p.AppHeader); v != "" {
		return v
	}
	if v := lookup(p.products, p.ProductHeader); v != "" {
		return v
	}
	if m != nil && m.Priority != "" {
		return m.Priority
	}
	return p.DefaultPriority
}

// pick chooses a target: from the sticky key when the request has one, so
// a conversation stays on one target, and uniformly at random otherwise.
func (m *Model) pick(h Headers, rnd Rand) (Target, bool) {
	if len(m.Targets) == 1 {
		return m.Targets[0], false
	}
	if m.StickyHeader != "" {
		if key, ok := h.Get(m.StickyHeader); ok && key != "" {
			return m.at(StickyBucket(m.Name, key, m.total)), true
		}
	}
	return m.at(rnd.Uint64N(m.total)), false
}

// at returns the target owning bucket b in [0, total).
func (m *Model) at(b uint64) Target {
	for _, t := range m.Targets {
		if b < t.Weight {
			return t
		}
		b -= t.Weight
	}
	return m.Targets[len(m.Targets)-1] // unreachable for b < total
}

// StickyBucket maps a sticky key to a bucket in [0, total): xxhash64 of the
// model and key, scaled by multiply-high, so the same key always lands on
// the same bucket and keys spread evenly over the weights.
func StickyBucket(model, key string, total uint64) uint64 {
	h := xxhash.New()
	_, _ = h.WriteString(model)
	_, _ = h.Write([]byte{0})
	_, _ = h.WriteString(key)
	hi, _ := bits.Mul64(h.Sum64(), total)
	return hi
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
