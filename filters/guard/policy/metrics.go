package policy

import (
	"sort"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/shared/apierror"
)

// MetricDecisions counts every decision. Labels ride in the stat name, as
// ".<label>.<value>" pairs that Envoy's stats_tags (StatsTags) extract:
//
//	tollgate_guard_decisions_total.detector.<d>.action.<a>.product.<p>.direction.<request|response>
const MetricDecisions = "tollgate_guard_decisions_total"

// MetricName names the counter of a decision for a product.
func MetricName(d Decision, product string) string {
	return MetricDecisions + ".detector." + label(d.Rule) + ".action." + label(d.Action) +
		".product." + label(product) + ".direction." + string(d.Direction)
}

// StatsTags are the stats_tags regexes that turn MetricName's segments
// into Prometheus labels (name, regex).
func StatsTags() [][2]string {
	const stem = `^wasmcustom\.tollgate_guard_decisions_total`
	return [][2]string{
		{"detector", stem + `(\.detector\.([^.]+))`},
		{"action", stem + `\.detector\.[^.]+(\.action\.([^.]+))`},
		{"product", stem + `\.detector\.[^.]+\.action\.[^.]+(\.product\.([^.]+))`},
		{"direction", stem + `\.detector\.[^.]+\.action\.[^.]+\.product\.[^.]+(\.direction\.([^.]+))$`},
	}
}

// label makes s one safe stat-name segment: letters, digits, '-' and '_'
// kept, anything else '_', empty "_", at most 64 bytes.
func label(s string) string {
	if s == "" {
		return "_"
	}
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// Summary is the access-log form of a stream's decisions, e.g.
// "request:payment_card:mask:1,response:email:mask:2" (never matched text).
func Summary(ds []Decision) string {
	agg := map[string]int{}
	for _, d := range ds {
		agg[string(d.Direction)+":"+d.Rule+":"+d.Action] += d.Count
	}
	keys := make([]string, 0, len(agg))
	for k := range agg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + ":" + strconv.Itoa(agg[k])
	}
	return strings.Join(keys, ",")
}

// ModerationError is the 400 of a flagged text; its code names the category.
func ModerationError(v Verdict, dir Direction) *apierror.Error {
	what := "the request was"
	if dir == Response {
		what = "the answer was"
	}
	return apierror.New(400, CodeFor(v.Category),
		what+" flagged by the content safety check for "+strconv.Quote(v.Category)+" (score "+strconv.FormatFloat(v.Score, 'f', 2, 64)+")")
}
