package policy

import (
	"encoding/binary"
	"math/bits"
	"time"

	"github.com/tollgate/tollgate/shared/cache"
)

// Hasher maps keys to their SHA-256 hashes (HashKey) and remembers the
// result under a SipHash-2-4 fingerprint keyed by a per-VM random secret, so
// a warm request costs one SipHash instead of one SHA-256 (several times
// cheaper in Wasm). Only fingerprints and hashes are held, never a key; and
// without the secret nobody can craft a key whose fingerprint collides with
// another key's (SipHash is a PRF), two independent 64-bit halves making
// the fingerprint 128 bits.
type Hasher struct {
	k [4]uint64 // two SipHash keys
	m *cache.Memo[string]
}

// hasherTTL bounds how long a fingerprint is remembered (the mapping never
// changes; this only lets idle entries go).
const hasherTTL = time.Hour

// NewHasher returns a Hasher with a secret from seed (32 random bytes) that
// remembers at most max keys.
func NewHasher(seed [32]byte, max int) *Hasher {
	h := &Hasher{m: cache.NewMemo[string](max)}
	for i := range h.k {
		h.k[i] = binary.LittleEndian.Uint64(seed[8*i:])
	}
	return h
}

type fingerprint [2]uint64

// Hash returns HashKey(key), from memory when the key was seen recently.
func (h *Hasher) Hash(key string, now time.Time) string {
	fp := fingerprint{sipHash24(h.k[0], h.k[1], key), sipHash24(h.k[2], h.k[3], key)}
	var buf [16]byte
	binary.LittleEndian.PutUint64(buf[:8], fp[0])
	binary.LittleEndian.PutUint64(buf[8:], fp[1])
	id := string(buf[:])
	if v, ok := h.m.Get(id, now); ok {
		return v
	}
	v := HashKey(key)
	h.m.Put(id, v, now.Add(hasherTTL), now)
	return v
}

// sipHash24 is SipHash-2-4 with 64-bit output (Aumasson and Bernstein).
func sipHash24(k0, k1 uint64, m string) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	n := len(m)
	for len(m) >= 8 {
		w := uint64(m[0]) | uint64(m[1])<<8 | uint64(m[2])<<16 | uint64(m[3])<<24 |
			uint64(m[4])<<32 | uint64(m[5])<<40 | uint64(m[6])<<48 | uint64(m[7])<<56
		v3 ^= w
		round()
		round()
		v0 ^= w
		m = m[8:]
	}
	last := uint64(n&0xff) << 56
	for i := len(m) - 1; i >= 0; i-- {
		last |= uint64(m[i]) << (8 * uint(i))
	}
	v3 ^= last
	round()
	round()
	v0 ^= last
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}
