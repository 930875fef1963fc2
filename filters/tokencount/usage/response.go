package usage

import (
	"github.com/tidwall/gjson"
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
	}
}

// FromJSON reads the usage object of a complete JSON response body. ok is
// false when the body has no usage object (an error body, for instance).
func FromJSON(api API, body []byte) (u Usage, ok bool) {
	return fromUsage(api, gjson.GetBytes(body, "usage"))
}

// fromUsage reads one usage object in the given dialect.
func fromUsage(api API, v gjson.Result) (Usage, bool) {
	if !v.IsObject() {
		return Usage{}, false
	}
	// count reads a field; a misbehaving upstream cannot make it negative.
	count := func(key string) int64 { return max(v.Get(key).Int(), 0) }
	var u Usage
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
	u.CachedTokens = count("prompt_tokens_details.cached_tokens")
	u.ReasoningTokens = count("completion_tokens_details.reasoning_tokens")
	return u, true
}
