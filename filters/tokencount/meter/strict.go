package meter

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/config"
)

// StrictConfig turns on strict token quotas (docs/tokencount.md, "Strict
// quotas").
type StrictConfig struct {
	// Enabled reserves the prompt's bound instead of its estimate, always
	// forwards an output cap equal to the reserved output, and charges the
	// reservation when the upstream reports no usage.
	Enabled bool `json:"enabled"`
	// UnboundedInputs is what strict mode does with images, audio, files
	// and tools, whose tokens do not follow from their bytes: "reserve"
	// (default: their prompt_bound maxima) or "refuse" (400).
	UnboundedInputs string `json:"unbounded_inputs"`
	// ClampMaxTokens lowers the forwarded max_tokens /
	// max_completion_tokens to what the budget still allows instead of
	// answering 429 (the body is rewritten).
	ClampMaxTokens bool `json:"clamp_max_tokens"`
	// MinOutputTokens is the smallest output cap a clamp leaves (default
	// 1); below it the request is refused.
	MinOutputTokens int64 `json:"min_output_tokens"`
}

// BoundConfig sets the constants of the prompt bound (usage.Bounds); 0
// takes the default.
type BoundConfig struct {
	PerRequestTokens    int64 `json:"per_request_tokens"`
	PerPromptTokens     int64 `json:"per_prompt_tokens"`
	PerMessageTokens    int64 `json:"per_message_tokens"`
	PerTextTokens       int64 `json:"per_text_tokens"`
	ToolsPreambleTokens int64 `json:"tools_preamble_tokens"`
	PerToolTokens       int64 `json:"per_tool_tokens"`
	ToolBytesFactor     int64 `json:"tool_bytes_factor"`
	ImageTokens         int64 `json:"image_tokens"`
	AudioTokens         int64 `json:"audio_tokens"`
	FileTokens          int64 `json:"file_tokens"`
}

// ContextConfig is the context window (prompt + output tokens) per model:
// exact names or "prefix*" (longest prefix wins), else Default.
type ContextConfig struct {
	Default int64            `json:"default"`
	Models  map[string]int64 `json:"models"`
}

// SettleRetryConfig sizes the retry queue of settles that failed.
type SettleRetryConfig struct {
	// MaxEntries bounds the queued settles shared by the workers (default 4096).
	MaxEntries int `json:"max_entries"`
	// Interval is how often queued settles are retried (default "1s").
	Interval config.Duration `json:"interval"`
}

// Defaults of the hardening options.
const (
	// DefaultContextTokens bounds usage of models without a configured
	// context: 2^21 tokens, above every context window offered today.
	DefaultContextTokens = 1 << 21
	// MaxContextTokens bounds a configured context.
	MaxContextTokens = 1 << 30
	// DefaultSettleQueueEntries bounds the failed-settle queue.
	DefaultSettleQueueEntries = 4096
	// DefaultSettleRetryInterval is the retry tick.
	DefaultSettleRetryInterval = time.Second
	// maxBoundConstant bounds each prompt_bound constant.
	maxBoundConstant = 1 << 24
)

// CodeUnmeteredPath refuses a POST the filter cannot meter while a token
// quota applies; CodeUnboundedInput refuses, in strict mode, an input whose
// tokens cannot be bounded.
const (
	CodeUnmeteredPath  = "unmetered_endpoint"
	CodeUnboundedInput = "unbounded_input"
)

func (c *Config) compileHardening(p *Policy) error {
	s := c.Strict
	p.Strict = s.Enabled
	switch s.UnboundedInputs {
	case "", "reserve":
	case "refuse":
		p.RefuseUnbounded = true
	default:
		return errors.New("strict.unbounded_inputs " + strconv.Quote(s.UnboundedInputs) + ": want reserve or refuse")
	}
	p.ClampMaxTokens = s.ClampMaxTokens
	if s.MinOutputTokens < 0 || s.MinOutputTokens > 1<<20 {
		return errors.New("strict.min_output_tokens " + strconv.FormatInt(s.MinOutputTokens, 10) + " out of range [0, " + strconv.Itoa(1<<20) + "]")
	}
	p.MinOutputTokens = max(s.MinOutputTokens, 1)
	if (s.ClampMaxTokens || s.UnboundedInputs != "" || s.MinOutputTokens != 0) && !s.Enabled {
		return errors.New("strict options need strict.enabled")
	}
	b := c.PromptBound
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"per_request_tokens", b.PerRequestTokens}, {"per_prompt_tokens", b.PerPromptTokens}, {"per_message_tokens", b.PerMessageTokens},
		{"per_text_tokens", b.PerTextTokens}, {"tools_preamble_tokens", b.ToolsPreambleTokens},
		{"per_tool_tokens", b.PerToolTokens}, {"image_tokens", b.ImageTokens},
		{"audio_tokens", b.AudioTokens}, {"file_tokens", b.FileTokens},
	} {
		if f.v < 0 || f.v > maxBoundConstant {
			return errors.New("prompt_bound." + f.name + " " + strconv.FormatInt(f.v, 10) + " out of range [0, " + strconv.Itoa(maxBoundConstant) + "]")
		}
	}
	if b.ToolBytesFactor < 0 || b.ToolBytesFactor > 16 {
		return errors.New("prompt_bound.tool_bytes_factor " + strconv.FormatInt(b.ToolBytesFactor, 10) + " out of range [0, 16]")
	}
	p.Bounds = usage.Bounds{
		PerRequest: b.PerRequestTokens, PerPrompt: b.PerPromptTokens, PerMessage: b.PerMessageTokens, PerText: b.PerTextTokens,
		ToolsPreamble: b.ToolsPreambleTokens, PerTool: b.PerToolTokens, ToolBytesFactor: b.ToolBytesFactor,
		Image: b.ImageTokens, Audio: b.AudioTokens, File: b.FileTokens,
	}.WithDefaults()
	ctx := c.ContextTokens
	if ctx.Default < 0 || ctx.Default > MaxContextTokens {
		return errors.New("context_tokens.default " + strconv.FormatInt(ctx.Default, 10) + " out of range [0, " + strconv.Itoa(MaxContextTokens) + "]")
	}
	p.Context = ContextLimits{Default: ctx.Default, Models: map[string]int64{}}
	if p.Context.Default == 0 {
		p.Context.Default = DefaultContextTokens
	}
	for m, n := range ctx.Models {
		if m == "" || m == "*" || len(m) > 256 {
			return errors.New("context_tokens.models: key " + strconv.Quote(m) + " must be a model name or prefix* of 1 to 256 bytes")
		}
		if n < 1 || n > MaxContextTokens {
			return errors.New("context_tokens.models[" + strconv.Quote(m) + "] " + strconv.FormatInt(n, 10) + " out of range [1, " + strconv.Itoa(MaxContextTokens) + "]")
		}
		p.Context.Models[m] = n
	}
	for i, u := range c.UnmeteredPaths {
		pp, err := ParsePathPattern(u)
		if err != nil {
			return config.Wrap("unmetered_paths["+strconv.Itoa(i)+"]: ", err, "")
		}
		p.UnmeteredPaths = append(p.UnmeteredPaths, pp)
	}
	r := c.SettleRetry
	if r.MaxEntries < 0 || r.MaxEntries > 1<<16 {
		return errors.New("settle_retry.max_entries " + strconv.Itoa(r.MaxEntries) + " out of range [0, " + strconv.Itoa(1<<16) + "]")
	}
	p.SettleQueueEntries = DefaultSettleQueueEntries
	if r.MaxEntries > 0 {
		p.SettleQueueEntries = r.MaxEntries
	}
	var err error
	if p.SettleRetryInterval, err = r.Interval.Within("settle_retry.interval", DefaultSettleRetryInterval, time.Millisecond, time.Minute); err != nil {
		return err
	}
	if p.Lease, err = c.Lease.Compile(DefaultLeaseMax); err != nil {
		return err
	}
	if p.Lease.Enabled && p.ClampMaxTokens {
		// A clamp sizes the output to the keystore's exact remaining
		// budget, which a lease held here would hide.
		return errors.New("lease.enabled and strict.clamp_max_tokens cannot be combined: a clamp needs the keystore's exact remaining budget")
	}
	return nil
}

// DefaultLeaseMax bounds the tokens one Envoy holds on one counter unless
// lease.max says otherwise.
const DefaultLeaseMax = 100_000

// ContextLimits is the compiled context_tokens.
type ContextLimits struct {
	Default int64
	Models  map[string]int64
}

// For is the context window of a model: an exact entry, the longest
// matching "prefix*" entry, else Default.
func (c ContextLimits) For(model string) int64 {
	if n, ok := c.Models[model]; ok {
		return n
	}
	best, bestLen := c.Default, -1
	for k, n := range c.Models {
		prefix, ok := strings.CutSuffix(k, "*")
		if ok && len(prefix) > bestLen && strings.HasPrefix(model, prefix) {
			best, bestLen = n, len(prefix)
		}
	}
	return best
}

// PathPattern is one unmetered_paths entry: an exact path, or a prefix
// when it ends in "*". It is matched against the raw request path (query
// cut off), so a percent-encoded variant never matches a plain pattern.
type PathPattern struct {
	Path   string
	Prefix bool
}

// ParsePathPattern validates an unmetered_paths entry.
func ParsePathPattern(s string) (PathPattern, error) {
	p, prefix := strings.CutSuffix(s, "*")
	if !strings.HasPrefix(p, "/") || len(s) > 1024 || strings.ContainsAny(p, "*?#% \t") {
		return PathPattern{}, errors.New(strconv.Quote(s) + ": want an absolute path without query or escapes, optionally ending in *")
	}
	return PathPattern{Path: p, Prefix: prefix}, nil
}

// Match reports whether a request path (query included or not) matches.
func (pp PathPattern) Match(path string) bool {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if pp.Prefix {
		return strings.HasPrefix(path, pp.Path)
	}
	return path == pp.Path
}

// Unmetered decides a POST whose path is not a metered API, once its quota
// is known: nil lets it pass (no token quota applies, or the path is
// allowed in unmetered_paths), else the 403 to answer. A client could
// otherwise reach token-consuming endpoints (/v1/responses, /v1/audio/*,
// /v1/images/*, percent-encoded spellings of metered paths) uncounted.
func (p *Policy) Unmetered(path string, q *Quota) *apierror.Error {
	if q == nil {
		return nil
	}
	for _, pp := range p.UnmeteredPaths {
		if pp.Match(path) {
			return nil
		}
	}
	return apierror.New(403, CodeUnmeteredPath,
		"this endpoint is not metered and a token quota applies to the request; the gateway meters POST /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/messages")
}

// Violation says why an upstream's usage was not believed.
type Violation string

// Usage violations.
const (
	ViolationInvalid    Violation = "invalid"      // a field was negative, fractional, not a number or absurd
	ViolationPrompt     Violation = "prompt"       // prompt tokens above the prompt bound
	ViolationCompletion Violation = "completion"   // completion tokens above the output bound
	ViolationTotal      Violation = "total"        // total above prompt bound + output bound
	ViolationDetails    Violation = "inconsistent" // cached above prompt or reasoning above completion
)

// Bound is the most a request can legitimately use, as usage: its prompt
// bound and its output bound.
func (pl *Plan) Bound() usage.Usage {
	return usage.Usage{
		PromptTokens:     pl.PromptBound,
		CompletionTokens: pl.CompletionBound,
		TotalTokens:      pl.PromptBound + pl.CompletionBound,
	}
}

// Check distrusts an upstream's usage: within [0, bound] it comes back as
// it is (v empty); otherwise it is replaced by the plan's Bound and v says
// what was violated. A misbehaving or hostile upstream can then never
// charge more than the request could cost, nor less than nothing, and
// metric counters never jump by absurd amounts.
func (pl *Plan) Check(u usage.Usage) (usage.Usage, Violation) {
	var v Violation
	switch {
	case u.Invalid:
		v = ViolationInvalid
	case u.PromptTokens > pl.PromptBound:
		v = ViolationPrompt
	case u.CompletionTokens > pl.CompletionBound:
		v = ViolationCompletion
	case u.TotalTokens > pl.PromptBound+pl.CompletionBound:
		v = ViolationTotal
	case u.CachedTokens > u.PromptTokens || u.CacheWriteTokens > u.PromptTokens || u.ReasoningTokens > u.CompletionTokens:
		v = ViolationDetails
	default:
		return u, ""
	}
	return pl.Bound(), v
}

// setBounds fills the plan's bounds: the prompt bound (never above the
// model's context per prompt) and the output bound, which is the reserved
// output when the forwarded body caps the output at it, else the context
// per choice.
func (p *Policy) setBounds(pl *Plan, req *usage.Request) {
	ctx := p.Context.For(pl.Model)
	if pl.Model != pl.BodyModel {
		if _, ok := p.Context.Models[pl.Model]; !ok {
			ctx = p.Context.For(pl.BodyModel)
		}
	}
	inputs := int64(max(req.Prompt.Inputs, 1))
	pl.PromptBound = min(p.Bounds.Prompt(req, p.Estimator), ctx*inputs)
	if pl.OutputEnforced {
		pl.CompletionBound = pl.OutputReserve
	} else {
		pl.CompletionBound = ctx * pl.Choices
	}
}

// Unbounded is strict mode's 400 for inputs it refuses to guess.
func Unbounded(kinds []string) *apierror.Error {
	e := apierror.New(400, CodeUnboundedInput, "strict token quotas cannot bound the tokens of "+
		strings.Join(kinds, ", ")+" in this request; the gateway refuses them")
	return e
}

// ClampOutput is the largest output cap per choice, at least
// MinOutputTokens and below the plan's, whose charge fits avail; ok is
// false when none does (or clamping cannot help: a prompt-only quota).
func (p *Policy) ClampOutput(pl *Plan, avail int64) (perChoice int64, ok bool) {
	if !p.Strict || !p.ClampMaxTokens || pl.Quota == nil || pl.Quota.Metric == usage.MetricPrompt || pl.Choices < 1 {
		return 0, false
	}
	fits := func(out int64) bool {
		return pl.Charge(usage.Usage{PromptTokens: pl.PromptEstimate, CompletionTokens: out * pl.Choices,
			TotalTokens: pl.PromptEstimate + out*pl.Choices}) <= avail
	}
	lo, hi := p.MinOutputTokens, pl.OutputPerChoice-1
	if hi < lo || !fits(lo) {
		return 0, false
	}
	for lo < hi { // the largest lo that fits; the charge grows with the output
		mid := lo + (hi-lo+1)/2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, true
}

// Clamp lowers the plan's output to perChoice (from ClampOutput): the
// reservation shrinks and the forwarded body (base: the body as it goes
// upstream now) caps the output at it. The rewritten body is returned.
func (p *Policy) Clamp(pl *Plan, base []byte, perChoice int64) ([]byte, error) {
	out, err := usage.SetMaxOutput(pl.API, base, perChoice)
	if err != nil {
		return nil, err
	}
	pl.OutputPerChoice = perChoice
	pl.OutputReserve = perChoice * pl.Choices
	pl.CompletionBound = pl.OutputReserve
	pl.OutputEnforced = true
	pl.Amount = pl.Charge(usage.Usage{PromptTokens: pl.PromptEstimate, CompletionTokens: pl.OutputReserve,
		TotalTokens: pl.PromptEstimate + pl.OutputReserve})
	return out, nil
}
