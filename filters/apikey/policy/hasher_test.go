package policy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSipHashVectors checks the reference vectors of SipHash-2-4 (key
// 00 01 … 0f; messages 00 01 … of length 0 and 15).
func TestSipHashVectors(t *testing.T) {
	k0, k1 := uint64(0x0706050403020100), uint64(0x0f0e0d0c0b0a0908)
	msg := make([]byte, 15)
	for i := range msg {
		msg[i] = byte(i)
	}
	assert.Equal(t, uint64(0x726fdb47dd0e0e31), sipHash24(k0, k1, ""))
	assert.Equal(t, uint64(0xa129ca6149be45e5), sipHash24(k0, k1, string(msg)))
}

func TestHasher(t *testing.T) {
	h := NewHasher([32]byte{1, 2, 3}, 2)
	now := time.Unix(1e9, 0)
	for _, k := range []string{"foo", "bar", "foo", "a-much-longer-key-than-eight-bytes", "foo", ""} {
		assert.Equal(t, HashKey(k), h.Hash(k, now), k)
	}
	assert.LessOrEqual(t, h.m.Len(), 2, "bounded")
	other := NewHasher([32]byte{9}, 2)
	require.Equal(t, h.Hash("foo", now), other.Hash("foo", now), "the secret changes fingerprints, never hashes")
	assert.NotEqual(t, sipHash24(h.k[0], h.k[1], "foo"), sipHash24(other.k[0], other.k[1], "foo"))
}

// FuzzHasher: whatever the key, Hash equals HashKey, fresh or remembered.
func FuzzHasher(f *testing.F) {
	f.Add("tg_WLkuVCThxSP0D7IuxynEzMRfXmxFulT441t5TR", "x")
	f.Add("", "1234567")
	h := NewHasher([32]byte{7}, 4)
	now := time.Unix(1e9, 0)
	f.Fuzz(func(t *testing.T, a, b string) {
		require.Equal(t, HashKey(a), h.Hash(a, now))
		require.Equal(t, HashKey(b), h.Hash(b, now))
		require.Equal(t, HashKey(a), h.Hash(a, now))
	})
}

func BenchmarkHash(b *testing.B) {
	h := NewHasher([32]byte{1}, 16)
	now := time.Unix(1e9, 0)
	key := "tg_WLkuVCThxSP0D7IuxynEzMRfXmxFulT441t5TR"
	b.Run("sha256", func(b *testing.B) {
		for b.Loop() {
			_ = HashKey(key)
		}
	})
	b.Run("remembered", func(b *testing.B) {
		for b.Loop() {
			_ = h.Hash(key, now)
		}
	})
}
