package usage

// Bounds are the constants of the strict prompt bound: a number of tokens
// that the prompt of a request provably cannot exceed (for text), or that
// the operator configured as the most an item may cost (for inputs whose
// tokens do not follow from their bytes). The zero value takes the
// documented defaults below.
//
// Why bytes bound tokens: a byte-level BPE tokenizer (GPT-2, tiktoken,
// Llama 3, Qwen) starts from one token per byte and only ever merges, so a
// text never has more tokens than UTF-8 bytes. SentencePiece tokenizers
// with byte fallback (Llama 2, Mistral, Gemma) emit at most one token per
// byte too, plus possibly one "▁" dummy prefix per encoded text: PerText
// covers that prefix.
//
// What bytes do not cover is the chat template: the special tokens and the
// literal text it wraps around each message, and what it adds once per
// request (BOS, the generation prompt, default system prompts). PerMessage
// and PerRequest bound those; their defaults cover the ChatML (OpenAI,
// Qwen), Llama 3.x, Gemma and Mistral templates with margin, see
// docs/tokencount.md. A template that injects more (a long default system
// prompt) needs larger values.
type Bounds struct {
	// PerRequest covers what a chat template adds once per chat or
	// Anthropic request: BOS, the generation prompt, a default system
	// prompt (default 128).
	PerRequest int64
	// PerPrompt covers the special tokens (BOS, EOS) around each prompt of
	// /v1/completions and each input of /v1/embeddings, which no chat
	// template wraps (default 4).
	PerPrompt int64
	// PerMessage covers the framing of one chat message: the special
	// tokens and separators around its role and content (default 8).
	PerMessage int64
	// PerText covers a SentencePiece dummy prefix per text field (default 1).
	PerText int64
	// ToolsPreamble covers the instructions a template adds once when the
	// request defines tools (default 512).
	ToolsPreamble int64
	// PerTool covers the framing of one tool definition or tool call
	// (default 32).
	PerTool int64
	// ToolBytesFactor multiplies the JSON bytes of tool definitions, tool
	// calls and tool inputs, which templates re-serialise (json.dumps adds
	// a space after every ':' and ','; at most 4/3 of the compact bytes).
	// Default 2. Templates that indent nested schemas can exceed it.
	ToolBytesFactor int64
	// Image, Audio and File are the configured per-item maxima of inputs
	// whose tokens do not follow from their bytes (defaults 1600, 1500 and
	// 8000). An item never reserves less than its estimate.
	Image, Audio, File int64
}

// Documented defaults of Bounds.
const (
	DefaultBoundPerRequest      = 128
	DefaultBoundPerPrompt       = 4
	DefaultBoundPerMessage      = 8
	DefaultBoundPerText         = 1
	DefaultBoundToolsPreamble   = 512
	DefaultBoundPerTool         = 32
	DefaultBoundToolBytesFactor = 2
	DefaultBoundImage           = 1600
	DefaultBoundAudio           = 1500
	DefaultBoundFile            = 8000
)

// WithDefaults fills unset (zero or negative) fields with the defaults.
func (b Bounds) WithDefaults() Bounds {
	set := func(v *int64, def int64) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&b.PerRequest, DefaultBoundPerRequest)
	set(&b.PerPrompt, DefaultBoundPerPrompt)
	set(&b.PerMessage, DefaultBoundPerMessage)
	set(&b.PerText, DefaultBoundPerText)
	set(&b.ToolsPreamble, DefaultBoundToolsPreamble)
	set(&b.PerTool, DefaultBoundPerTool)
	set(&b.ToolBytesFactor, DefaultBoundToolBytesFactor)
	set(&b.Image, DefaultBoundImage)
	set(&b.Audio, DefaultBoundAudio)
	set(&b.File, DefaultBoundFile)
	return b
}

// Unbounded lists the kinds of input whose tokens do not follow from their
// bytes ("images", "audio", "files", "tools"), for strict mode's refusal;
// nil when there are none.
func (p *Prompt) Unbounded() []string {
	var kinds []string
	if len(p.Images) > 0 {
		kinds = append(kinds, "images")
	}
	if len(p.Audio) > 0 {
		kinds = append(kinds, "audio")
	}
	if p.Files > 0 {
		kinds = append(kinds, "files")
	}
	if p.HasTools || p.Tools > 0 || p.ToolBytes > 0 {
		kinds = append(kinds, "tools")
	}
	return kinds
}

// Prompt is the strict upper bound of a request's prompt tokens, summed
// over all its prompts (several for /v1/completions and /v1/embeddings
// batches): text bytes plus the framing constants, the whole JSON of every
// member the filter does not read (a template might render it), token ids
// exactly, and every image, audio input and file at max(configured
// maximum, estimate). A request with its own chat template has no bound
// (Prompt.Template): strict mode refuses it.
func (b Bounds) Prompt(req *Request, e Estimator) int64 {
	b = b.WithDefaults()
	e = e.withDefaults()
	p := &req.Prompt
	t := p.TextBytes + int64(p.Texts)*b.PerText + p.ExtraBytes + p.TokenIDs
	if req.API == APIChatCompletions || req.API == APIAnthropicMessages {
		t += b.PerRequest
	} else {
		t += int64(max(p.Inputs, 1)) * b.PerPrompt
	}
	t += int64(p.Messages) * b.PerMessage
	if p.HasTools {
		t += b.ToolsPreamble
	}
	t += int64(p.Tools)*b.PerTool + p.ToolBytes*b.ToolBytesFactor
	for _, img := range p.Images {
		t += max(b.Image, e.ImageTokens(img))
	}
	for _, a := range p.Audio {
		t += max(b.Audio, e.AudioTokens(a))
	}
	t += int64(p.Files) * max(b.File, e.FileTokens)
	return t
}
