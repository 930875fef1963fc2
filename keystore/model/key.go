package model

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash/crc32"
	"io"

	"github.com/tollgate/tollgate/shared/config"
)

// Key format: "tg_" + 32 random base62 characters (about 190 bits from
// crypto/rand) + 6 base62 characters of the CRC-32 (IEEE) of everything
// before them. The checksum lets a filter reject typos and garbage without a
// keystore callout; it adds no secrecy.
const (
	KeyPrefix       = "tg_"
	keyRandomLen    = 32
	keyChecksumLen  = 6
	KeyLen          = len(KeyPrefix) + keyRandomLen + keyChecksumLen
	displayRandom   = 6
	base62          = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	idRandomLen     = 16
	keyIDPrefix     = "key_"
	hashHexLen      = 2 * sha256.Size
	maxUnbiasedByte = 256 - 256%62 // 248: bytes at or above are rejected to keep base62 digits uniform
)

// randomBase62 draws n uniformly distributed base62 characters from r.
func randomBase62(r io.Reader, n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4+8)
	for len(out) < n {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", config.Wrap("read random bytes: ", err, "")
		}
		for _, b := range buf {
			if int(b) < maxUnbiasedByte && len(out) < n {
				out = append(out, base62[int(b)%62])
			}
		}
	}
	return string(out), nil
}

func checksum62(s string) string {
	v := crc32.ChecksumIEEE([]byte(s))
	var out [keyChecksumLen]byte
	for i := keyChecksumLen - 1; i >= 0; i-- {
		out[i] = base62[v%62]
		v /= 62
	}
	return string(out[:])
}

// GenerateKey returns a new secret API key. Pass nil to use crypto/rand.
func GenerateKey(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	body, err := randomBase62(r, keyRandomLen)
	if err != nil {
		return "", config.Wrap("generate key: ", err, "")
	}
	s := KeyPrefix + body
	return s + checksum62(s), nil
}

// GenerateKeyID returns a public, random key identifier ("key_" + 16 base62),
// unrelated to the secret so it can be shown and logged freely.
func GenerateKeyID(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	body, err := randomBase62(r, idRandomLen)
	if err != nil {
		return "", config.Wrap("generate key id: ", err, "")
	}
	return keyIDPrefix + body, nil
}

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) {
			return false
		}
	}
	return true
}

// WellFormedKey reports whether s has the key format and a correct checksum.
// A malformed key can be rejected as unknown without any lookup.
func WellFormedKey(s string) bool {
	if len(s) != KeyLen || s[:len(KeyPrefix)] != KeyPrefix || !isBase62(s[len(KeyPrefix):]) {
		return false
	}
	cut := len(s) - keyChecksumLen
	return checksum62(s[:cut]) == s[cut:]
}

// ValidKeyID reports whether s looks like an id from GenerateKeyID.
func ValidKeyID(s string) bool {
	return len(s) == len(keyIDPrefix)+idRandomLen && s[:len(keyIDPrefix)] == keyIDPrefix && isBase62(s[len(keyIDPrefix):])
}

// HashKey is the only form in which a key is stored: the lower-case hex
// SHA-256 of the key's UTF-8 bytes, prefix included. Local mode configs hold
// this same value (e.g. `printf %s "$KEY" | sha256sum`).
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// ValidKeyHash reports whether s is 64 lower-case hex digits, the HashKey format.
func ValidKeyHash(s string) bool {
	if len(s) != hashHexLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) {
			return false
		}
	}
	return true
}

// DisplayPrefix is the part of a key safe to show in listings ("tg_" plus 6
// characters, about 36 of its 190 random bits) so people can tell keys apart.
func DisplayPrefix(key string) string {
	n := len(KeyPrefix) + displayRandom
	if len(key) < n {
		return ""
	}
	return key[:n]
}
