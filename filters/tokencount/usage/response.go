package usage

import (
	"math"

	"github.com/tollgate/tollgate/shared/reqview"
)

// Usage is the token count of one request, normalised across vendors.
//
// PromptTokens always includes cached prompt tokens: for Anthropic, whose
// input_tokens excludes them, it is input_tokens + cache_creation_input_tokens
// + cache_read_input_tokens. TotalTokens is the upstream's total when given,
// else prompt + completion.
type Usage struct {
	PromptTokens     int64
	CompletionTokens int64
	TotalTokens      int64
	// CachedTokens are prompt tokens served from the prompt cache
	// (prompt_tokens_details.cached_tokens, Anthropic cache_read_input_tokens).
	CachedTokens int64
	// CacheWriteTokens are Anthropic prompt tokens written to the cache.
	CacheWriteTokens int64
	// ReasoningTokens are completion tokens spent on reasoning
	// (completion_tokens_details.reasoning_tokens).
	ReasoningTokens int64
	// Estimated is true when the response carried no usage and the counts
	// come from the estimator.
	Estimated bool
	// Invalid is true when the upstream reported a field that is not a
	// count: negative, fractional, not a number, or above MaxCount. Such a
	// field reads as 0 here; the filter charges the request's bound instead.
	Invalid bool
}

// MaxCount is the largest token count read from an upstream (2^53, the
// counter engine's limit); larger values are Invalid.
const MaxCount = 1 << 53

// count reads one usage field: absent or null is 0; anything but an
// integer in [0, MaxCount] is 0 and marks the usage Invalid.
func count(v reqview.Value, invalid *bool) int64 {
	if v.IsNull() {
		return 0
	}
	if f, ok := v.Num(); ok && f >= 0 && f <= MaxCount && f == math.Trunc(f) {
		return int64(f)
	}
	*invalid = true
	return 0
}

// Add sums two usages (for several responses of one logical request).
func (u Usage) Add(o Usage) Usage {
	return Usage{
		PromptTokens:     u.PromptTokens + o.PromptTokens,
		CompletionTokens: u.CompletionTokens + o.CompletionTokens,
		TotalTokens:      u.TotalTokens + o.TotalTokens,
		CachedTokens:     u.CachedTokens + o.CachedTokens,
		CacheWriteTokens: u.CacheWriteTokens + o.CacheWriteTokens,
		ReasoningTokens:  u.ReasoningTokens + o.ReasoningTokens,
		Estimated:        u.Estimated || o.Estimated,
		Invalid:          u.Invalid || o.Invalid,
	}
}

// FromJSON reads the usage object of a complete JSON response body. ok is
// false when the body has no usage object (an error body, for instance).
func FromJSON(api API, body []byte) (u Usage, ok bool) {
	o, ok := parseJSON(body)
	if !ok {
		return Usage{}, false
	}
	v := o.Get("usage")
	if !v.IsNull() && !isObject(v) {
		return Usage{Invalid: true}, true // a usage that is not an object is no count
	}
	return fromUsage(api, v)
}

// count2 reads a count from a details object (absent or null: 0).
func count2(details reqview.Value, key string, invalid *bool) int64 {
	if details.IsNull() {
		return 0
	}
	if !isObject(details) {
		*invalid = true
		return 0
	}
	return count(details.Get(key), invalid)
}

// fromUsage reads one usage object in the given dialect.
func fromUsage(api API, v reqview.Value) (Usage, bool) {
	if !isObject(v) {
		return Usage{}, false
	}
	var u Usage
	count := func(key string) int64 { return count(v.Get(key), &u.Invalid) }
	if api == APIAnthropicMessages {
		u.CacheWriteTokens = count("cache_creation_input_tokens")
		u.CachedTokens = count("cache_read_input_tokens")
		u.PromptTokens = count("input_tokens") + u.CacheWriteTokens + u.CachedTokens
		u.CompletionTokens = count("output_tokens")
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
		return u, true
	}
	u.PromptTokens = count("prompt_tokens")
	u.CompletionTokens = count("completion_tokens")
	u.TotalTokens = count("total_tokens")
	if u.TotalTokens == 0 {
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
	}
	u.CachedTokens = count2(v.Get("prompt_tokens_details"), "cached_tokens", &u.Invalid)
	u.ReasoningTokens = count2(v.Get("completion_tokens_details"), "reasoning_tokens", &u.Invalid)
	return u, true
}
