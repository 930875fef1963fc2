// Package scrape reads the few metrics the endpoint picker needs from a
// model server's Prometheus text exposition (GET /metrics) of vLLM, SGLang,
// TensorRT-LLM (trtllm-serve) or Triton's TensorRT-LLM backend. The parser
// is incremental (Write chunks as they arrive, in any split), needs no
// regular expressions, never recurses, bounds every line and label, and
// skips every family it does not need without decoding it.
package scrape

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// Engine names a model-server family, as llm-d's pod label
// llm-d.ai/engine-type does.
type Engine uint8

// Engines whose metric names the parser knows.
const (
	VLLM Engine = iota
	SGLang
	TRTLLM
	Triton
)

// ParseEngine reads an engine name ("" is vLLM, the default).
func ParseEngine(s string) (Engine, error) {
	switch strings.ToLower(s) {
	case "", "vllm":
		return VLLM, nil
	case "sglang":
		return SGLang, nil
	case "trtllm", "trtllm-serve", "tensorrt-llm":
		return TRTLLM, nil
	case "triton":
		return Triton, nil
	}
	return 0, errors.New("unknown engine " + strconv.Quote(s) + " (want vllm, sglang, trtllm or triton)")
}

// Limits of the parser.
const (
	// MaxLine bounds one exposition line; longer lines are skipped whole.
	MaxLine = 16 << 10
	// MaxLoras bounds the adapter names kept from a LoRA info series.
	MaxLoras = 64
	// MaxBytes bounds a whole exposition; later bytes are ignored.
	MaxBytes = 4 << 20
)

// ErrTruncated reports an exposition longer than MaxBytes (what came
// before still counts).
var ErrTruncated = errors.New("scrape: exposition exceeds the size limit")

// Snapshot is what the picker knows about one endpoint from one scrape.
type Snapshot struct {
	// Waiting and Running are the requests queued and in the batch.
	Waiting, Running float64
	// KVUsage is the KV-cache utilisation, 0..1.
	KVUsage float64
	// BlockSize and NumBlocks describe the KV cache (0 when unknown).
	BlockSize, NumBlocks int
	// RunningLoras are the adapters active (resident) on the server.
	RunningLoras []string
	// WaitingLoras are adapters of waiting requests.
	WaitingLoras []string
	// MaxLoras is the server's adapter slot count (0 when unknown).
	MaxLoras int
	// Has flags which of the above were present.
	Has Field
}

// Field flags the Snapshot fields a scrape found.
type Field uint8

// Fields of a Snapshot.
const (
	HasWaiting Field = 1 << iota
	HasRunning
	HasKV
	HasCacheConfig
	HasLora
)

// Complete reports whether the queue and KV figures the scorers need are present.
func (s *Snapshot) Complete() bool {
	return s.Has&(HasWaiting|HasKV) == HasWaiting|HasKV
}

// family is what a metric name contributes.
type family uint8

const (
	famNone family = iota
	famWaiting
	famRunning
	famKV
	famKVLegacy // vllm:gpu_cache_usage_perc, read only when the newer name is absent
	famCacheConfig
	famLora
	famBlockSize
	famNumBlocks
	famTritonRequests
	famTritonBlocks
)

// names maps each engine's metric names to families.
var names = [...]map[string]family{
	VLLM: {
		"vllm:num_requests_waiting": famWaiting, "vllm:num_requests_running": famRunning,
		"vllm:kv_cache_usage_perc": famKV, "vllm:gpu_cache_usage_perc": famKVLegacy,
		"vllm:cache_config_info": famCacheConfig, "vllm:lora_requests_info": famLora,
	},
	SGLang: {
		"sglang:num_queue_reqs": famWaiting, "sglang:num_running_reqs": famRunning,
		"sglang:token_usage": famKV, "sglang:cache_config_info": famCacheConfig,
	},
	TRTLLM: {
		"trtllm_num_requests_waiting": famWaiting, "trtllm_num_requests_running": famRunning,
		"trtllm_kv_cache_utilization": famKV, "trtllm_kv_cache_tokens_per_block": famBlockSize,
		"trtllm_kv_cache_max_blocks": famNumBlocks,
	},
	Triton: {
		"nv_trt_llm_request_metrics": famTritonRequests, "nv_trt_llm_kv_cache_block_metrics": famTritonBlocks,
	},
}

// Parser accumulates one exposition. The zero value is not usable: use New.
type Parser struct {
	engine   Engine
	names    map[string]family
	line     []byte
	skipping bool // inside a line longer than MaxLine
	total    int
	snap     Snapshot
	legacyKV float64
	hasLeg   bool
	loraTS   float64
	err      error
	labels   [8]label // scratch for one sample's labels
}

// label is one name="value" pair of a sample.
type label struct{ name, value string }

// New returns a parser for engine.
func New(engine Engine) *Parser {
	p := &Parser{engine: engine, names: names[VLLM], loraTS: math.Inf(-1)}
	if int(engine) < len(names) {
		p.names = names[engine]
	}
	return p
}

// Write feeds the next bytes of the exposition; it never fails (bad lines
// are skipped) except past MaxBytes.
func (p *Parser) Write(b []byte) (int, error) {
	n := len(b)
	if p.total+len(b) > MaxBytes {
		b = b[:max(0, MaxBytes-p.total)]
		p.err = ErrTruncated
	}
	p.total += len(b)
	for len(b) > 0 {
		i := indexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if !p.skipping {
			if len(p.line)+len(chunk) > MaxLine {
				p.skipping = true
				p.line = p.line[:0]
			} else {
				p.line = append(p.line, chunk...)
			}
		}
		if i < 0 {
			break
		}
		if !p.skipping {
			p.sample(p.line)
		}
		p.line, p.skipping = p.line[:0], false
		b = b[i+1:]
	}
	return n, p.err
}

// Finish ends the exposition (a last line without a newline counts) and
// returns the snapshot.
func (p *Parser) Finish() (Snapshot, error) {
	if len(p.line) > 0 && !p.skipping {
		p.sample(p.line)
	}
	p.line = p.line[:0]
	s := p.snap
	if s.Has&HasKV == 0 && p.hasLeg {
		s.KVUsage, s.Has = p.legacyKV, s.Has|HasKV
	}
	return s, p.err
}

// Parse reads a whole exposition.
func Parse(engine Engine, text []byte) (Snapshot, error) {
	p := New(engine)
	_, _ = p.Write(text)
	return p.Finish()
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// sample handles one line: comments and unknown families are skipped
// after reading only the name.
func (p *Parser) sample(line []byte) {
	i := 0
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	if i == len(line) || line[i] == '#' {
		return
	}
	start := i
	for i < len(line) && isNameByte(line[i]) {
		i++
	}
	fam, ok := p.names[string(line[start:i])] // no allocation for a map lookup by converted bytes
	if !ok || fam == famNone {
		return
	}
	nl := 0
	if i < len(line) && line[i] == '{' {
		var ok bool
		i, nl, ok = p.readLabels(line, i+1)
		if !ok {
			return
		}
	}
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	vs := i
	for i < len(line) && line[i] != ' ' && line[i] != '\t' {
		i++
	}
	v, err := strconv.ParseFloat(string(line[vs:i]), 64)
	if err != nil || math.IsNaN(v) {
		return
	}
	p.apply(fam, p.labels[:nl], v)
}

// isNameByte reports a byte of a metric name ([a-zA-Z0-9_:]).
func isNameByte(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// readLabels reads `name="value",...}` from i; it keeps at most
// len(p.labels) labels (further ones are checked and dropped).
func (p *Parser) readLabels(line []byte, i int) (next, n int, ok bool) {
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == ',') {
			i++
		}
		if i >= len(line) {
			return 0, 0, false
		}
		if line[i] == '}' {
			return i + 1, n, true
		}
		ns := i
		for i < len(line) && isNameByte(line[i]) {
			i++
		}
		name := line[ns:i]
		if len(name) == 0 || i+1 >= len(line) || line[i] != '=' || line[i+1] != '"' {
			return 0, 0, false
		}
		i += 2
		var val strings.Builder
		for {
			if i >= len(line) {
				return 0, 0, false
			}
			c := line[i]
			if c == '"' {
				i++
				break
			}
			if c == '\\' {
				if i+1 >= len(line) {
					return 0, 0, false
				}
				switch line[i+1] {
				case 'n':
					val.WriteByte('\n')
				case '\\', '"':
					val.WriteByte(line[i+1])
				default:
					return 0, 0, false
				}
				i += 2
				continue
			}
			val.WriteByte(c)
			i++
		}
		if n < len(p.labels) {
			p.labels[n] = label{name: string(name), value: val.String()}
			n++
		}
	}
}

// get returns a label's value.
func get(ls []label, name string) (string, bool) {
	for _, l := range ls {
		if l.name == name {
			return l.value, true
		}
	}
	return "", false
}

// intLabel reads a non-negative integer label (Prometheus writes some as floats).
func intLabel(ls []label, name string) (int, bool) {
	s, ok := get(ls, name)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1<<31 || math.IsNaN(f) {
		return 0, false
	}
	return int(f), true
}

// apply folds one sample into the snapshot: queue and batch sizes add up
// over series (several models on one server), utilisation takes the largest.
func (p *Parser) apply(fam family, ls []label, v float64) {
	s := &p.snap
	switch fam {
	case famWaiting:
		s.Waiting += max(v, 0)
		s.Has |= HasWaiting
	case famRunning:
		s.Running += max(v, 0)
		s.Has |= HasRunning
	case famKV:
		s.KVUsage = max(s.KVUsage, clamp01(v))
		s.Has |= HasKV
	case famKVLegacy:
		p.legacyKV, p.hasLeg = max(p.legacyKV, clamp01(v)), true
	case famCacheConfig:
		bs, ok1 := intLabel(ls, "block_size")
		nb, ok2 := intLabel(ls, "num_gpu_blocks")
		if p.engine == SGLang {
			bs, ok1 = intLabel(ls, "page_size")
			nb, ok2 = intLabel(ls, "num_pages")
		}
		if ok1 && ok2 {
			s.BlockSize, s.NumBlocks = bs, nb
			s.Has |= HasCacheConfig
		}
	case famBlockSize:
		s.BlockSize = int(min(max(v, 0), 1<<31))
		if s.NumBlocks > 0 {
			s.Has |= HasCacheConfig
		}
	case famNumBlocks:
		s.NumBlocks = int(min(max(v, 0), 1<<31))
		if s.BlockSize > 0 {
			s.Has |= HasCacheConfig
		}
	case famLora:
		// The value is the series' timestamp: the newest one describes now.
		if v < p.loraTS {
			return
		}
		p.loraTS = v
		run, _ := get(ls, "running_lora_adapters")
		wait, _ := get(ls, "waiting_lora_adapters")
		s.RunningLoras, s.WaitingLoras = splitNames(run), splitNames(wait)
		s.MaxLoras, _ = intLabel(ls, "max_lora")
		s.Has |= HasLora
	case famTritonRequests:
		switch t, _ := get(ls, "request_type"); t {
		case "waiting":
			s.Waiting += max(v, 0)
			s.Has |= HasWaiting
		case "scheduled":
			s.Running += max(v, 0)
			s.Has |= HasRunning
		}
	case famTritonBlocks:
		switch t, _ := get(ls, "kv_cache_block_type"); t {
		case "fraction":
			s.KVUsage = max(s.KVUsage, clamp01(v))
			s.Has |= HasKV
		case "tokens_per":
			p.apply(famBlockSize, nil, v)
		case "max":
			p.apply(famNumBlocks, nil, v)
		}
	}
}

func clamp01(v float64) float64 { return min(max(v, 0), 1) }

// splitNames splits a comma list of adapter names, at most MaxLoras.
func splitNames(s string) []string {
	var out []string
	for len(s) > 0 && len(out) < MaxLoras {
		i := strings.IndexByte(s, ',')
		item := s
		if i >= 0 {
			item, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
