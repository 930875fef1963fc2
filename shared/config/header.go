package config

import (
	"errors"
	"strconv"
	"strings"
)

// MaxHeaderNameLen bounds a configured header name.
const MaxHeaderNameLen = 128

// ErrHeaderName marks every refused header name, so callers and tests can
// tell it from other configuration errors.
var ErrHeaderName = errors.New("not an HTTP header name")

// HeaderName is the one check of a header name in a filter configuration:
// 1 to MaxHeaderNameLen characters of the RFC 9110 token alphabet (letters,
// digits and !#$%&'*+-.^_`|~), so "X-Team" and "x-team" are both accepted.
// It returns the name lower-cased, as Envoy stores header keys, so every
// filter reads and writes the same header whatever the spelling. Pseudo
// headers (":path") and anything with spaces or separators are refused;
// field names the setting in the error.
func HeaderName(field, name string) (string, error) {
	if name == "" {
		return "", Wrap(field+" is empty: ", ErrHeaderName, "")
	}
	if len(name) > MaxHeaderNameLen {
		return "", Wrap(field+" is longer than "+strconv.Itoa(MaxHeaderNameLen)+" bytes: ", ErrHeaderName, "")
	}
	for i := 0; i < len(name); i++ {
		if !tokenChar(name[i]) {
			return "", Wrap(field+" "+strconv.Quote(name)+": ", ErrHeaderName, " (want letters, digits and !#$%&'*+-.^_`|~)")
		}
	}
	return strings.ToLower(name), nil
}

// tokenChar reports whether c may appear in an RFC 9110 token.
func tokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
