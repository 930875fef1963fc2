package portal

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tollgate/tollgate/counter"
	apikeypolicy "github.com/tollgate/tollgate/filters/apikey/policy"
	quotapolicy "github.com/tollgate/tollgate/filters/quota/policy"
	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/window"
)

// Counters is the part of the quota counter engine the portal reads: a
// consume of 0 units reports a counter's limit, usage, remainder and reset
// without counting anything. *counter.Engine implements it.
type Counters interface {
	ConsumeBatch(ctx context.Context, reqs []counter.Request, atomic bool) ([]counter.Decision, error)
}

// maxQuotaRows bounds the counters one page reads (an admin's usage page
// covers every app).
const maxQuotaRows = 512

// QuotaLeft is one request or token quota of an app's product as the
// gateway enforces it right now.
type QuotaLeft struct {
	App     string
	Product string
	// Kind is "requests" or what a token quota counts (tokens, prompt_tokens, …).
	Kind string
	// Scope names the operations sharing the counter: the product, an
	// operation set ("set:NAME") or one operation ("METHODS:PATH").
	Scope string
	// Window describes the quota, e.g. "1000 per 1 hour, rolling".
	Window    string
	Limit     int64
	Used      int64
	Remaining int64
	Reset     time.Time
}

// quotaCheck is one counter to read and the row it fills.
type quotaCheck struct {
	row QuotaLeft
	req counter.Request
}

// appQuotaChecks lists the counters of every quota the app's products
// carry, keyed exactly as the quota filter (request quotas) and tokencount
// (token quotas) key them for the apikey filter's identity: the same app,
// product and scope strings, through the filters' own IdentityKey. A token
// quota without "counted" is read as total tokens, tokencount's default.
func (p *Portal) appQuotaChecks(ctx context.Context, a model.App) ([]quotaCheck, error) {
	var out []quotaCheck
	sets := map[string]model.OperationSet{}
	for _, name := range a.Products {
		pr, err := p.cfg.Store.GetProduct(ctx, name)
		if err != nil {
			continue // a product deleted since the app subscribed grants nothing
		}
		for _, s := range pr.OperationSets {
			if _, ok := sets[s]; ok {
				continue
			}
			if set, err := p.cfg.Store.GetOperationSet(ctx, s); err == nil {
				sets[s] = set
			}
		}
		ent := model.Resolve(pr, sets)
		seen := map[string]bool{}
		for _, op := range ent.Operations {
			for _, q := range []struct {
				spec   *model.QuotaSpec
				tokens bool
			}{{op.RequestQuota, false}, {op.TokenQuota, true}} {
				if q.spec == nil {
					continue
				}
				c, err := quotaCounter(a.Name, ent.Product, *q.spec, q.tokens)
				if err != nil {
					return nil, fmt.Errorf("quota of product %s: %w", pr.Name, err)
				}
				id := counter.CounterID(c.req.Key, c.req.Spec)
				if seen[id] {
					continue
				}
				seen[id] = true
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// quotaCounter turns one resolved quota into the counter the filters use:
// through the apikey filter's identity quota, then the quota filter's or
// tokencount's own key function.
func quotaCounter(app, product string, qs model.QuotaSpec, tokens bool) (quotaCheck, error) {
	q := apikeypolicy.QuotaOf(&qs) // what the apikey filter hands quota and tokencount
	spec, err := window.NewSpec(q.Limit, int(min(q.Interval, 1<<30)), q.TimeUnit, q.Window)
	if err != nil {
		return quotaCheck{}, err
	}
	var key counter.Key
	if tokens {
		m, err := usage.ParseMetric(q.Counted)
		if err != nil {
			return quotaCheck{}, err
		}
		k := meter.IdentityKey(app, q.Scope, m)
		key = counter.Key{App: k.App, Product: k.Product, Operation: k.Operation, Kind: counter.Kind(k.Kind)}
	} else {
		key = quotapolicy.IdentityKey(app, product, q.Scope)
	}
	scope := q.Scope
	if rest, ok := strings.CutPrefix(scope, product+":"); ok {
		scope = rest
	}
	w := fmt.Sprintf("%d per %d %s, %s", spec.Limit, spec.Interval, spec.Unit, spec.Kind)
	return quotaCheck{
		row: QuotaLeft{App: app, Product: product, Kind: string(key.Kind), Scope: scope, Window: w, Limit: spec.Limit},
		req: counter.Request{Key: key, Spec: spec, N: 0},
	}, nil
}

// quotaLeft reads the counters of every quota of apps now. Without a
// counter engine it returns nil (the pages then say so).
func (p *Portal) quotaLeft(ctx context.Context, apps []model.App) ([]QuotaLeft, error) {
	if p.cfg.Counters == nil {
		return nil, nil
	}
	var checks []quotaCheck
	for _, a := range apps {
		cs, err := p.appQuotaChecks(ctx, a)
		if err != nil {
			return nil, err
		}
		checks = append(checks, cs...)
		if len(checks) >= maxQuotaRows {
			checks = checks[:maxQuotaRows]
			break
		}
	}
	rows := make([]QuotaLeft, 0, len(checks))
	for start := 0; start < len(checks); start += counter.MaxBatch {
		batch := checks[start:min(start+counter.MaxBatch, len(checks))]
		reqs := make([]counter.Request, len(batch))
		for i, c := range batch {
			reqs[i] = c.req
		}
		ds, err := p.cfg.Counters.ConsumeBatch(ctx, reqs, false)
		if err != nil {
			return nil, fmt.Errorf("read quota counters: %w", err)
		}
		for i, d := range ds {
			row := batch[i].row
			row.Limit, row.Used, row.Remaining, row.Reset = d.Limit, d.Used, d.Remaining, d.Reset
			rows = append(rows, row)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].App != rows[j].App {
			return rows[i].App < rows[j].App
		}
		return rows[i].Product < rows[j].Product
	})
	return rows, nil
}
