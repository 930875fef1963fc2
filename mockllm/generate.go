package mockllm

import (
	"hash/fnv"
	"math"
	"strings"
)

// vocabulary holds the words replies are made of. Every word has at most six
// letters, so each costs exactly one token under Tokens and a reply's
// completion_tokens equals the number of pieces streamed.
var vocabulary = [...]string{
	"the", "gate", "model", "token", "quota", "route", "key", "app",
	"stream", "reply", "fast", "small", "cloud", "envoy", "filter", "chain",
	"count", "limit", "window", "budget", "answer", "prompt", "vector", "data",
	"light", "river", "stone", "garden", "bridge", "signal", "orbit", "paper",
	"quiet", "bright", "simple", "steady", "north", "ocean", "forest", "spark",
	"is", "and", "of", "to", "in", "for", "with", "on",
	"we", "it", "all", "each", "every", "more", "less", "now",
	"then", "here", "there", "when", "where", "why", "how", "what",
}

// Reply length bounds, in tokens, when the client sets no smaller maximum.
const (
	minReplyTokens = 8
	maxReplyTokens = 32
)

// rng is a splitmix64 generator: tiny, fast and fully determined by its seed.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// seedOf hashes the parts that make a request distinct, so equal requests
// get equal replies and different prompts get different ones.
func seedOf(parts ...string) uint64 {
	h := fnv.New64a()
	var sep [1]byte
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write(sep[:])
	}
	return h.Sum64()
}

// seedWith mixes an integer (choice index, client seed) into a seed.
func seedWith(seed uint64, v int64) uint64 {
	g := rng{s: seed ^ uint64(v)*0xd1b54a32d192ed03}
	return g.next()
}

// reply is one generated completion: its pieces (one token each) and why it
// stopped.
type reply struct {
	pieces []string
	finish string // "stop" or "length"
}

// text joins the pieces.
func (r reply) text() string { return strings.Join(r.pieces, "") }

// generate makes the deterministic reply for seed. Its natural length is
// between minReplyTokens and maxReplyTokens; maxTokens > 0 cuts it short
// with finish reason "length", as real servers do.
func generate(seed uint64, maxTokens int) reply {
	g := rng{s: seed}
	natural := minReplyTokens + int(g.next()%uint64(maxReplyTokens-minReplyTokens+1))
	n := natural
	finish := "stop"
	if maxTokens > 0 && maxTokens < natural {
		n, finish = maxTokens, "length"
	}
	pieces := make([]string, 0, n)
	for i := 0; i < n; i++ {
		if i == natural-1 {
			pieces = append(pieces, ".")
			break
		}
		w := vocabulary[g.next()%uint64(len(vocabulary))]
		if i == 0 {
			w = strings.ToUpper(w[:1]) + w[1:]
		} else {
			w = " " + w
		}
		pieces = append(pieces, w)
	}
	return reply{pieces: pieces, finish: finish}
}

// embed makes a deterministic unit vector of dim components for text.
func embed(model, text string, dim int) []float32 {
	g := rng{s: seedOf("embedding", model, text)}
	v := make([]float32, dim)
	var norm float64
	for i := range v {
		// Uniform in [-1, 1).
		x := float64(g.next()>>11)/float64(1<<53)*2 - 1
		v[i] = float32(x)
		norm += x * x
	}
	norm = math.Sqrt(norm)
	if norm == 0 {
		return v
	}
	for i := range v {
		v[i] = float32(float64(v[i]) / norm)
	}
	return v
}
