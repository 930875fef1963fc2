package model

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// KeyRequest is the body of POST /admin/v1/apps/{app}/keys. All fields are
// optional: no products means all of the app's products, no expiry means the
// key lives until revoked.
type KeyRequest struct {
	Products []string `json:"products,omitempty"`
	// ExpiresIn is a Go duration ("720h") or a number of days ("30d").
	ExpiresIn string `json:"expiresIn,omitempty"`
	// ExpiresAt is an RFC 3339 timestamp.
	ExpiresAt string `json:"expiresAt,omitempty"`
}

// IssuedKey is the answer to a key creation: the stored record plus the
// secret, which is returned this one time and never again.
type IssuedKey struct {
	// Secret is the API key itself ("tg_..."), serialised as "key".
	Secret string `json:"key"`
	Key
}

// List is the envelope of every admin listing.
type List[T any] struct {
	Items []T `json:"items"`
}

// MaxKeyLifetime bounds key expiry so a typo cannot mint a practically eternal "expiring" key.
const MaxKeyLifetime = 10 * 366 * 24 * time.Hour

// ParseLifetime reads a key lifetime: a Go duration ("720h", "90m") or whole
// days ("30d"). It must be positive and at most MaxKeyLifetime.
func ParseLifetime(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" && !strings.ContainsAny(days, "hmsuµn.") {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > int(MaxKeyLifetime/(24*time.Hour)) {
			return 0, errors.New("lifetime " + strconv.Quote(s) + ": want a positive number of days up to " + strconv.Itoa(int(MaxKeyLifetime/(24*time.Hour))))
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		d, err = time.ParseDuration(s)
		if err != nil {
			return 0, errors.New("lifetime " + strconv.Quote(s) + ": want a duration such as 720h or 30d")
		}
	}
	if d <= 0 || d > MaxKeyLifetime {
		return 0, errors.New("lifetime " + strconv.Quote(s) + ": must be positive and at most " + MaxKeyLifetime.String())
	}
	return d, nil
}
