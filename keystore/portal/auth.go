package portal

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters (RFC 9106's second recommended option: 64 MiB, 3 passes).
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 2
	argonKeyLen  = 32
	argonSaltLen = 16
	// MinPasswordLen rejects short passwords at sign-up.
	MinPasswordLen = 12
	// MaxPasswordLen bounds the work one sign-in can ask of argon2.
	MaxPasswordLen = 256
)

// hashParams lets tests use cheaper parameters; production uses the constants.
type hashParams struct {
	time, memory uint32
	threads      uint8
}

var defaultHash = hashParams{argonTime, argonMemory, argonThreads}

// hashPassword returns an encoded argon2id hash
// ($argon2id$v=19$m=...,t=...,p=...$salt$key, the PHC string format).
func hashPassword(p hashParams, password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// checkPassword compares password with an encoded hash in constant time.
func checkPassword(encoded, password string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false, errors.New("unsupported password hash")
	}
	var p hashParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil {
		return false, fmt.Errorf("password hash parameters: %w", err)
	}
	if p.memory > 1<<20 || p.time > 16 || p.threads == 0 {
		return false, errors.New("password hash parameters out of range")
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("password hash salt: %w", err)
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false, errors.New("password hash key malformed")
	}
	got := argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// randomToken returns n random bytes, base64url-encoded (session ids, CSRF tokens, invites).
func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// tokenID is how a secret token is stored: its SHA-256, so a copy of the
// storage does not hand out live sessions or invites.
func tokenID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// limiter bounds sign-in attempts per client address with a fixed window;
// it forgets addresses whose window has passed.
type limiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	seen   map[string]*attempts
}

type attempts struct {
	start time.Time
	n     int
}

// maxTrackedClients bounds the limiter's memory.
const maxTrackedClients = 100000

func newLimiter(max int, window time.Duration) *limiter {
	return &limiter{max: max, window: window, seen: map[string]*attempts{}}
}

// allow counts one attempt by client at now and reports whether it may proceed.
func (l *limiter) allow(client string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.seen[client]
	if a == nil || now.Sub(a.start) >= l.window {
		if len(l.seen) >= maxTrackedClients {
			for k, v := range l.seen {
				if now.Sub(v.start) >= l.window {
					delete(l.seen, k)
				}
			}
			if len(l.seen) >= maxTrackedClients {
				return false
			}
		}
		a = &attempts{start: now}
		l.seen[client] = a
	}
	a.n++
	return a.n <= l.max
}
