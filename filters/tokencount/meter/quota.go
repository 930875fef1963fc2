package meter

import (
	"strings"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/identity"
	"github.com/tollgate/tollgate/window"
)

// Key is the counter key of a token quota, as the counter engine's JSON
// API spells it.
type Key struct {
	App       string `json:"app"`
	Product   string `json:"product,omitempty"`
	Operation string `json:"operation,omitempty"`
	Kind      string `json:"kind"`
}

// Quota is the token quota one request is metered against.
type Quota struct {
	// Key is the counter the quota counts in.
	Key Key
	// Spec is the limit and window.
	Spec window.Spec
	// Metric is what the quota counts.
	Metric usage.Metric
	// App is the caller, for metric labels.
	App string
}

// KindFor names the counter kind of a metric, so quotas counting different
// things never share a counter.
func KindFor(m usage.Metric) string {
	switch m {
	case usage.MetricPrompt:
		return "prompt_tokens"
	case usage.MetricCompletion:
		return "completion_tokens"
	case usage.MetricCost:
		return "cost"
	}
	return "tokens"
}

// Identity is what Resolve learnt about the caller.
type Identity struct {
	// App is the caller for metric labels ("" when unknown).
	App string
	// Verified is true when the apikey filter identified the caller.
	Verified bool
}

// Resolve finds the token quota of a request from its headers (get returns
// "" for an absent header): the apikey filter's token quota when the
// caller was identified and has one (and identity headers are trusted),
// else the static quota, else none
// (nil: the request is metered for metrics only). A malformed identity
// header is an internal error: only the apikey filter writes it.
func (p *Policy) Resolve(get func(name string) string) (*Quota, Identity, *apierror.Error) {
	var id identity.Identity
	var verified bool
	var err error
	if p.TrustIdentity {
		id, verified, err = identity.Parse(p.Identity, get)
	}
	if err != nil {
		return nil, Identity{App: id.App, Verified: verified}, apierror.New(500, CodeInvalidIdentity,
			"the gateway could not read the caller's token quota")
	}
	if verified && id.TokenQuota != nil {
		q, err := fromIdentity(id.App, *id.TokenQuota, p.Metric)
		if err != nil {
			return nil, Identity{App: id.App, Verified: true}, apierror.New(500, CodeInvalidIdentity,
				"the gateway could not read the caller's token quota")
		}
		return q, Identity{App: id.App, Verified: true}, nil
	}
	if s := p.Static; s != nil {
		app, spec := GlobalApp, s.Default
		if s.Header != "" {
			app = get(s.Header)
			if o, ok := s.Overrides[app]; ok {
				spec = o
			}
			if app == "" {
				app = AnonymousApp
			}
			if len(app) > 256 {
				return nil, Identity{}, apierror.New(400, CodeInvalidIdentity, "the "+s.Header+" header is longer than 256 bytes")
			}
		}
		return &Quota{
			Key:    Key{App: app, Product: s.Product, Kind: KindFor(spec.Metric)},
			Spec:   spec.Spec,
			Metric: spec.Metric,
			App:    app,
		}, Identity{App: app, Verified: verified}, nil
	}
	return nil, Identity{App: id.App, Verified: verified}, nil
}

// IdentityKey is the counter an app's token quota from the apikey filter
// counts metric m in: the scope's first ':'-separated part is the product,
// the rest (an operation set or one operation) the operation, so each scope
// has its own counter. Readers such as the developer portal's "quota left"
// use it to see exactly the counter this filter enforces.
func IdentityKey(app, scope string, m usage.Metric) Key {
	product, op, _ := strings.Cut(scope, ":")
	if product == "" {
		product, op = "", ""
	}
	return Key{App: app, Product: product, Operation: op, Kind: KindFor(m)}
}

// fromIdentity turns the apikey filter's quota into a counter key: the
// scope's first ':'-separated part is the product, the rest (an operation
// set or one operation) the operation, so each scope has its own counter.
func fromIdentity(app string, q identity.Quota, def usage.Metric) (*Quota, error) {
	spec, err := window.NewSpec(q.Limit, int(min(q.Interval, 1<<30)), q.TimeUnit, q.Window)
	if err != nil {
		return nil, err
	}
	m := def
	if q.Counted != "" {
		if m, err = usage.ParseMetric(q.Counted); err != nil {
			return nil, err
		}
	}
	key := IdentityKey(app, q.Scope, m)
	if len(key.App) > 256 || len(key.Product) > 256 || len(key.Operation) > 256 {
		return nil, errTooLong
	}
	return &Quota{
		Key:    key,
		Spec:   spec,
		Metric: m,
		App:    app,
	}, nil
}
