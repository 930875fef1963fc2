package usage

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

//go:generate go run github.com/tollgate/tollgate/scripts/configgen -type Pricing

// Metric selects what a token quota counts.
type Metric uint8

// Quota metrics.
const (
	MetricTotal      Metric = iota // prompt + completion tokens
	MetricPrompt                   // prompt tokens only
	MetricCompletion               // completion tokens only
	MetricCost                     // weighted cost from per-model prices
)

// String names the metric as configuration spells it.
func (m Metric) String() string {
	switch m {
	case MetricPrompt:
		return "prompt"
	case MetricCompletion:
		return "completion"
	case MetricCost:
		return "cost"
	}
	return "total"
}

// ParseMetric reads a metric name from configuration ("" means total).
func ParseMetric(s string) (Metric, error) {
	switch s {
	case "", "total":
		return MetricTotal, nil
	case "prompt":
		return MetricPrompt, nil
	case "completion":
		return MetricCompletion, nil
	case "cost":
		return MetricCost, nil
	}
	return 0, errors.New("unknown token metric " + strconv.Quote(s) + " (want total, prompt, completion or cost)")
}

// Price is a model's price per million tokens, in whatever unit the
// operator picks; a MetricCost charge is then in millionths of that unit
// (prices in USD per 1M tokens give charges in micro-USD).
type Price struct {
	// Input prices uncached prompt tokens.
	Input float64 `json:"input" yaml:"input"`
	// CachedInput prices prompt tokens read from the cache (0: Input).
	CachedInput float64 `json:"cached_input,omitempty" yaml:"cached_input,omitempty"`
	// CacheWrite prices prompt tokens written to the cache (0: Input).
	CacheWrite float64 `json:"cache_write,omitempty" yaml:"cache_write,omitempty"`
	// Output prices completion tokens, reasoning included.
	Output float64 `json:"output" yaml:"output"`
}

// Pricing maps model names to prices. A key ending in "*" matches every
// model with that prefix; the longest match wins; Default covers the rest.
type Pricing struct {
	Models  map[string]Price `json:"models" yaml:"models"`
	Default Price            `json:"default" yaml:"default"`
}

// For returns the price of a model.
func (p Pricing) For(model string) Price {
	pr, _ := p.Lookup(model)
	return pr
}

// Lookup returns the price of a model and whether a models entry (exact or
// prefix) matched it; without a match it is Default, and false.
func (p Pricing) Lookup(model string) (Price, bool) {
	if pr, ok := p.Models[model]; ok {
		return pr, true
	}
	best, bestLen := p.Default, -1
	for k, pr := range p.Models {
		prefix, ok := strings.CutSuffix(k, "*")
		if ok && len(prefix) > bestLen && strings.HasPrefix(model, prefix) {
			best, bestLen = pr, len(prefix)
		}
	}
	return best, bestLen >= 0
}

// Validate rejects negative or non-finite prices.
func (p Pricing) Validate() error {
	check := func(name string, pr Price) error {
		for _, v := range []float64{pr.Input, pr.CachedInput, pr.CacheWrite, pr.Output} {
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				return errors.New("price of " + strconv.Quote(name) + ": prices must be finite and non-negative")
			}
		}
		return nil
	}
	if err := check("default", p.Default); err != nil {
		return err
	}
	for k, pr := range p.Models {
		if err := check(k, pr); err != nil {
			return err
		}
	}
	return nil
}

// Charge is what a usage costs against a quota of the given metric. It is
// also used for reservations, with Usage{PromptTokens: estimate,
// CompletionTokens: max output}.
func Charge(m Metric, u Usage, price Price) int64 {
	switch m {
	case MetricPrompt:
		return u.PromptTokens
	case MetricCompletion:
		return u.CompletionTokens
	case MetricCost:
		cachedPrice, writePrice := price.CachedInput, price.CacheWrite
		if cachedPrice == 0 {
			cachedPrice = price.Input
		}
		if writePrice == 0 {
			writePrice = price.Input
		}
		uncached := max(u.PromptTokens-u.CachedTokens-u.CacheWriteTokens, 0)
		c := float64(uncached)*price.Input +
			float64(u.CachedTokens)*cachedPrice +
			float64(u.CacheWriteTokens)*writePrice +
			float64(u.CompletionTokens)*price.Output
		if c >= math.MaxInt64 {
			return math.MaxInt64
		}
		return int64(math.Ceil(c))
	}
	if u.TotalTokens > 0 {
		return u.TotalTokens
	}
	return u.PromptTokens + u.CompletionTokens
}
