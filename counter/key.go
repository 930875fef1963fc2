// Package counter is Tollgate's backend-neutral quota engine: it counts
// requests and tokens per key in calendar, rolling and flexi windows, with
// consume, and with reserve / settle / release for usage that is only known
// after the fact (token quotas).
//
// The Engine does all validation and time arithmetic (package window) and
// hands precomputed, atomic operations to a Backend: memstore keeps them in
// process memory with snapshots to disk, redisstore runs them as Lua scripts
// on a shared Redis so that many engine instances keep exact counts.
package counter

import (
	"errors"
	"net/url"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/shared/config"
)

// Kind names what a counter counts; any short lower-case word is allowed so
// that token quotas can count prompt, completion or weighted-cost units.
type Kind string

// Well-known counter kinds.
const (
	// Requests counts requests (request quotas).
	Requests Kind = "requests"
	// Tokens counts total tokens (token quotas).
	Tokens Kind = "tokens"
)

// MaxKeyPart is the longest allowed app, product or operation, in bytes.
const MaxKeyPart = 256

// ErrInvalidKey marks every validation failure of a Key.
var ErrInvalidKey = errors.New("invalid counter key")

// Key identifies one counter: the app (or any caller identity such as a
// client IP), the product, optionally the operation, and what is counted.
type Key struct {
	// App is the consuming identity: an app id, or e.g. "ip:10.0.0.1".
	App string `json:"app"`
	// Product is the API product the quota belongs to; may be empty.
	Product string `json:"product,omitempty"`
	// Operation is set when an operation set carries its own quota.
	Operation string `json:"operation,omitempty"`
	// Kind is what is counted: requests, tokens, …
	Kind Kind `json:"kind"`
}

// Validate reports the first problem with the key, wrapping ErrInvalidKey.
func (k Key) Validate() error {
	if k.App == "" {
		return config.Wrap("", ErrInvalidKey, ": app is required")
	}
	for _, p := range []struct{ name, v string }{{"app", k.App}, {"product", k.Product}, {"operation", k.Operation}} {
		if len(p.v) > MaxKeyPart {
			return config.Wrap("", ErrInvalidKey, ": "+p.name+" is longer than "+strconv.Itoa(MaxKeyPart)+" bytes")
		}
	}
	if k.Operation != "" && k.Product == "" {
		return config.Wrap("", ErrInvalidKey, ": operation "+strconv.Quote(k.Operation)+" needs a product")
	}
	if len(k.Kind) == 0 || len(k.Kind) > 32 {
		return config.Wrap("", ErrInvalidKey, ": kind must be 1 to 32 characters")
	}
	for _, c := range k.Kind {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return config.Wrap("", ErrInvalidKey, ": kind "+strconv.Quote(string(k.Kind))+" may hold only a-z, 0-9, _ and -")
		}
	}
	return nil
}

// String returns the canonical form "app/product/operation/kind" with each
// part path-escaped, so distinct keys never share a string and the result
// holds no '/', '|', '{', '}', space or control character inside a part.
func (k Key) String() string {
	var b strings.Builder
	b.Grow(len(k.App) + len(k.Product) + len(k.Operation) + len(k.Kind) + 3)
	b.WriteString(url.PathEscape(k.App))
	b.WriteByte('/')
	b.WriteString(url.PathEscape(k.Product))
	b.WriteByte('/')
	b.WriteString(url.PathEscape(k.Operation))
	b.WriteByte('/')
	b.WriteString(string(k.Kind))
	return b.String()
}

// ParseKey reads the canonical form written by Key.String.
func ParseKey(s string) (Key, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 4 {
		return Key{}, config.Wrap("", ErrInvalidKey, ": "+strconv.Quote(s)+" is not app/product/operation/kind")
	}
	var k Key
	var err error
	if k.App, err = url.PathUnescape(parts[0]); err != nil {
		return Key{}, config.Wrap2(ErrInvalidKey, ": app: ", err)
	}
	if k.Product, err = url.PathUnescape(parts[1]); err != nil {
		return Key{}, config.Wrap2(ErrInvalidKey, ": product: ", err)
	}
	if k.Operation, err = url.PathUnescape(parts[2]); err != nil {
		return Key{}, config.Wrap2(ErrInvalidKey, ": operation: ", err)
	}
	k.Kind = Kind(parts[3])
	if err := k.Validate(); err != nil {
		return Key{}, err
	}
	return k, nil
}
