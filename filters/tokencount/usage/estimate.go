package usage

import "math"

// Estimator turns a parsed request into a prompt-token estimate and a
// reservation. The zero value uses the documented defaults below.
//
// Accounting follows OpenAI's cookbook for chat models: every message costs
// 3 tokens on top of its role and content, a "name" costs 1 more, and every
// reply is primed with 3 tokens. Text uses the TextTokens heuristic,
// token-id prompts count exactly, images and audio follow their vendors'
// documented rules and are never counted by payload length.
type Estimator struct {
	// PerMessage is the framing cost of one chat message (default 3).
	PerMessage int64
	// PerName is the extra cost of a message "name" (default 1).
	PerName int64
	// ReplyPriming is added once per chat request (default 3).
	ReplyPriming int64
	// DefaultMaxOutput is the output reserved per choice when the client
	// sets no maximum (default 4096).
	DefaultMaxOutput int64
	// MaxOutputCap, when > 0, caps the per-choice output reserved even if
	// the client asks for more (the upstream's own limit applies anyway).
	MaxOutputCap int64
	// UnknownImageWidth and UnknownImageHeight size an OpenAI image whose
	// header could not be read, such as a remote URL (default 1024 × 1024,
	// which costs 765 tokens at high detail).
	UnknownImageWidth, UnknownImageHeight int
	// UnknownAnthropicImageTokens prices an Anthropic image of unknown size
	// (default 1600, Anthropic's documented maximum per image).
	UnknownAnthropicImageTokens int64
	// AudioTokensPerSecond prices audio input (default 10: OpenAI's
	// documented 1 token per 100 ms of user audio).
	AudioTokensPerSecond float64
	// UnknownAudioSeconds is the duration assumed when an audio payload's
	// header cannot be read (default 30).
	UnknownAudioSeconds float64
	// FileTokens prices one attached document such as a PDF (default 1500).
	FileTokens int64
}

// Documented defaults of Estimator.
const (
	DefaultPerMessage                  = 3
	DefaultPerName                     = 1
	DefaultReplyPriming                = 3
	DefaultMaxOutput                   = 4096
	DefaultUnknownImageSide            = 1024
	DefaultUnknownAnthropicImageTokens = 1600
	DefaultAudioTokensPerSecond        = 10
	DefaultUnknownAudioSeconds         = 30
	DefaultFileTokens                  = 1500
)

// withDefaults fills unset fields with the documented defaults.
func (e Estimator) withDefaults() Estimator {
	if e.PerMessage <= 0 {
		e.PerMessage = DefaultPerMessage
	}
	if e.PerName <= 0 {
		e.PerName = DefaultPerName
	}
	if e.ReplyPriming <= 0 {
		e.ReplyPriming = DefaultReplyPriming
	}
	if e.DefaultMaxOutput <= 0 {
		e.DefaultMaxOutput = DefaultMaxOutput
	}
	if e.UnknownImageWidth <= 0 || e.UnknownImageHeight <= 0 {
		e.UnknownImageWidth, e.UnknownImageHeight = DefaultUnknownImageSide, DefaultUnknownImageSide
	}
	if e.UnknownAnthropicImageTokens <= 0 {
		e.UnknownAnthropicImageTokens = DefaultUnknownAnthropicImageTokens
	}
	if e.AudioTokensPerSecond <= 0 {
		e.AudioTokensPerSecond = DefaultAudioTokensPerSecond
	}
	if e.UnknownAudioSeconds <= 0 {
		e.UnknownAudioSeconds = DefaultUnknownAudioSeconds
	}
	if e.FileTokens <= 0 {
		e.FileTokens = DefaultFileTokens
	}
	return e
}

// PromptTokens estimates the prompt tokens of a request.
func (e Estimator) PromptTokens(req *Request) int64 {
	e = e.withDefaults()
	p := &req.Prompt
	t := p.TextTokens + p.TokenIDs + int64(p.Files)*e.FileTokens
	if req.API == APIChatCompletions || req.API == APIAnthropicMessages {
		t += int64(p.Messages)*e.PerMessage + int64(p.Names)*e.PerName + e.ReplyPriming
	}
	for _, img := range p.Images {
		t += e.ImageTokens(img)
	}
	for _, a := range p.Audio {
		t += e.AudioTokens(a)
	}
	return t
}

// MaxOutput is the output reserved per choice: the client's cap, else the
// configured default, never above MaxOutputCap; 0 for embeddings.
func (e Estimator) MaxOutput(req *Request) int64 {
	if req.API == APIEmbeddings {
		return 0
	}
	e = e.withDefaults()
	out := e.DefaultMaxOutput
	if req.MaxOutputSet {
		out = req.MaxOutput
	}
	if e.MaxOutputCap > 0 {
		out = min(out, e.MaxOutputCap)
	}
	return out
}

// Reservation is what the filter reserves before forwarding: the prompt
// estimate plus the maximum output of every choice of every prompt.
func (e Estimator) Reservation(req *Request) (prompt, output int64) {
	prompt = e.PromptTokens(req)
	inputs := int64(max(req.Prompt.Inputs, 1))
	if req.API != APICompletions {
		inputs = 1 // several chat messages still produce one reply
	}
	return prompt, e.MaxOutput(req) * max(req.N, 1) * inputs
}

// ImageTokens prices one image by its vendor's documented rule.
//
// OpenAI (GPT-4o family): detail "low" costs 85. Otherwise ("high", and
// "auto", which may choose high) the image is scaled to fit 2048 × 2048,
// then down so its shorter side is at most 768, and costs 85 plus 170 per
// 512 px tile covering it. Anthropic: width × height / 750 after scaling
// the long edge down to 1568 px, at most 1600.
func (e Estimator) ImageTokens(img ImagePart) int64 {
	e = e.withDefaults()
	if img.Rule == ImageAnthropic {
		if img.Width <= 0 || img.Height <= 0 {
			return e.UnknownAnthropicImageTokens
		}
		w, h := fit(float64(img.Width), float64(img.Height), 1568)
		return min(int64(math.Ceil(w*h/750)), 1600)
	}
	if img.Detail == "low" {
		return 85
	}
	w, h := float64(img.Width), float64(img.Height)
	if w <= 0 || h <= 0 {
		w, h = float64(e.UnknownImageWidth), float64(e.UnknownImageHeight)
	}
	w, h = fit(w, h, 2048)
	if s := min(w, h); s > 768 {
		w, h = w*768/s, h*768/s
	}
	tiles := int64(math.Ceil(w/512)) * int64(math.Ceil(h/512))
	return 85 + 170*tiles
}

// fit scales w × h down (never up) so that its longer side is at most side.
func fit(w, h, side float64) (float64, float64) {
	if l := max(w, h); l > side {
		return w * side / l, h * side / l
	}
	return w, h
}

// AudioTokens prices audio input by duration.
func (e Estimator) AudioTokens(a AudioPart) int64 {
	e = e.withDefaults()
	s := a.Seconds
	if !a.Known || s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		s = e.UnknownAudioSeconds
	}
	return int64(math.Ceil(s * e.AudioTokensPerSecond))
}
