package pick

import (
	"encoding/binary"
	"strconv"

	"github.com/tollgate/tollgate/shared/table"
)

// FNV-1a 64 constants.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// Blocks cuts a prompt into blocks of blockBytes and returns their chained
// hashes, seeded by the model: block i's hash covers the model and blocks
// 0..i, so equal hashes mean equal prefixes. texts yields the prompt's
// pieces in order (a separator byte is hashed between pieces); at most
// maxBlocks blocks are hashed, so a huge prompt costs no more than
// maxBlocks×blockBytes bytes of hashing. A partial last block is dropped,
// as model servers cache only full blocks.
func Blocks(model string, texts func(yield func(string) bool), blockBytes, maxBlocks int) []uint64 {
	seed := uint64(fnvOffset)
	for i := 0; i < len(model); i++ {
		seed = (seed ^ uint64(model[i])) * fnvPrime
	}
	out := make([]uint64, 0, 16)
	h, fill := seed, 0
	prev := seed
	add := func(c byte) bool {
		h = (h ^ uint64(c)) * fnvPrime
		fill++
		if fill == blockBytes {
			out = append(out, h)
			prev = h
			h = prev*fnvPrime ^ uint64(len(out)) // the next block starts from this one's hash
			fill = 0
			return len(out) < maxBlocks
		}
		return true
	}
	first := true
	if texts == nil {
		return nil
	}
	texts(func(s string) bool {
		if !first && !add(0) {
			return false
		}
		first = false
		for i := 0; i < len(s); i++ {
			if !add(s[i]) {
				return false
			}
		}
		return true
	})
	return out
}

// checkpoints are the block positions (0-based) the index records: every
// block up to 8, then every 8th. Chained hashes make a match at a position
// imply a match of everything before it, so the longest match is found
// with a handful of reads instead of one per block.
func checkpoints(n int) []int {
	var out []int
	for i := 0; i < n; i++ {
		if i < 8 || (i+1)%8 == 0 || i == n-1 {
			out = append(out, i)
		}
	}
	return out
}

// Index is the approximate prefix index: which endpoints recently served
// which prompt blocks. It lives in a shared table, so every worker of an
// Envoy shares one index; the table's bound and expiry make it a bounded,
// least-recently-used memory.
type Index struct {
	t   *table.Table
	ttl int64
}

// maxHolders bounds the endpoints remembered per block.
const maxHolders = 4

// NewIndex returns the index of a policy on st; call Init once per VM.
func (p *Policy) NewIndex(st table.Store) (*Index, error) {
	t, err := table.New(st, table.Options{Namespace: prefixNS, MaxEntries: max(p.IndexEntries, 64), Ways: 8, MaxValueLen: 512})
	if err != nil {
		return nil, err
	}
	return &Index{t: t, ttl: p.PrefixTTL.Milliseconds()}, nil
}

// Init creates the index's shared-data keys.
func (x *Index) Init() error { return x.t.Init() }

// holder is one endpoint that served a block, and when.
type holder struct {
	addr string
	at   int64
}

func decodeHolders(b []byte) []holder {
	var hs []holder
	r := reader{b: b}
	for len(r.b) > 0 && len(hs) < maxHolders {
		at := r.varint()
		a := r.str()
		if r.bad {
			return nil
		}
		hs = append(hs, holder{addr: a, at: at})
	}
	return hs
}

func encodeHolders(hs []holder) []byte {
	var b []byte
	for _, h := range hs {
		b = binary.AppendVarint(b, h.at)
		b = binary.AppendUvarint(b, uint64(len(h.addr)))
		b = append(b, h.addr...)
	}
	return b
}

func blockID(h uint64) string { return strconv.FormatUint(h, 36) }

// Match returns, for each endpoint that served a prefix of blocks, the
// fraction of blocks matched (0..1). It reads only checkpoint blocks and
// stops at the first checkpoint no endpoint holds.
func (x *Index) Match(blocks []uint64, nowMs int64) map[string]float64 {
	if len(blocks) == 0 {
		return nil
	}
	matched := map[string]int{}
	for _, i := range checkpoints(len(blocks)) {
		raw, _, ok, err := x.t.Get(blockID(blocks[i]), nowMs)
		if err != nil || !ok {
			break
		}
		hs := decodeHolders(raw)
		if len(hs) == 0 {
			break
		}
		// A chained hash held at checkpoint i means that endpoint served
		// this whole prefix up to block i.
		for _, h := range hs {
			matched[h.addr] = i + 1
		}
	}
	out := make(map[string]float64, len(matched))
	for a, n := range matched {
		out[a] = float64(n) / float64(len(blocks))
	}
	return out
}

// Record notes that addr now serves blocks (their checkpoints): it
// becomes their most recent holder.
func (x *Index) Record(blocks []uint64, addr string, nowMs int64) error {
	for _, i := range checkpoints(len(blocks)) {
		_, err := x.t.Update(blockID(blocks[i]), nowMs, func(old []byte, _ int64) ([]byte, int64, bool) {
			hs := decodeHolders(old)
			next := make([]holder, 0, maxHolders)
			next = append(next, holder{addr: addr, at: nowMs})
			for _, h := range hs {
				if h.addr != addr && len(next) < maxHolders && nowMs-h.at < x.ttl {
					next = append(next, h)
				}
			}
			return encodeHolders(next), nowMs + x.ttl, true
		})
		if err != nil {
			return err
		}
	}
	return nil
}
