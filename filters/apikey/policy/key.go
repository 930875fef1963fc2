package policy

import (
	"net/url"
	"strings"

	"github.com/tollgate/tollgate/keystore/model"
)

// Extraction is where a request's key was found and how to scrub it.
type Extraction struct {
	// Key is the key, "" when none was found. Never log or store it.
	Key string
	// Source is the index in Policy.Sources of where Key came from (-1: none).
	Source int
	// RemoveHeaders are the key-carrying headers to delete before the upstream.
	RemoveHeaders []string
	// Path is :path without key query parameters; PathChanged says whether it differs.
	Path        string
	PathChanged bool
}

// Extract finds the key in the request. get returns a request header's first
// value and whether it is present; path is the request's :path. Sources are
// tried in configured order and the first non-empty key wins; when StripKey
// is set every configured carrier present is scheduled for removal, whichever
// held the key, so no credential reaches the upstream.
func (p *Policy) Extract(get func(name string) (string, bool), path string) Extraction {
	x := Extraction{Source: -1, Path: path}
	for i, s := range p.Sources {
		var key string
		switch {
		case s.Header != "":
			v, ok := get(s.Header)
			if !ok {
				continue
			}
			key = strings.TrimSpace(v)
			if p.StripKey {
				x.RemoveHeaders = append(x.RemoveHeaders, s.Header)
			}
		case s.Bearer:
			v, ok := get("authorization")
			if !ok {
				continue
			}
			token, isBearer := BearerToken(v)
			if !isBearer {
				continue
			}
			key = token
			if p.StripKey {
				x.RemoveHeaders = append(x.RemoveHeaders, "authorization")
			}
		case s.Query != "":
			v, rest, found := QueryParam(x.Path, s.Query)
			if !found {
				continue
			}
			key = v
			if p.StripKey {
				x.Path, x.PathChanged = rest, true
			}
		}
		if x.Key == "" && key != "" {
			x.Key, x.Source = key, i
		}
	}
	return x
}

// BearerToken returns the token of an "Authorization: Bearer <token>" value;
// the scheme is case-insensitive (RFC 7235).
func BearerToken(v string) (string, bool) {
	v = strings.TrimSpace(v)
	scheme, token, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// QueryParam returns the first value of the query parameter name in path and
// the path with every occurrence of that parameter removed, other parameters
// kept byte for byte in order. found is false when the parameter is absent.
func QueryParam(path, name string) (value, rest string, found bool) {
	qi := strings.IndexByte(path, '?')
	if qi < 0 {
		return "", path, false
	}
	base, query := path[:qi], path[qi+1:]
	frag := ""
	if fi := strings.IndexByte(query, '#'); fi >= 0 {
		query, frag = query[:fi], query[fi:]
	}
	var kept []string
	for query != "" {
		var part string
		part, query, _ = strings.Cut(query, "&")
		rawName, rawValue, _ := strings.Cut(part, "=")
		n, err := url.QueryUnescape(rawName)
		if err != nil || n != name {
			kept = append(kept, part)
			continue
		}
		if !found {
			v, err := url.QueryUnescape(rawValue)
			if err != nil {
				v = rawValue // a malformed escape still counts as a (wrong) key
			}
			value = v
		}
		found = true
	}
	if !found {
		return "", path, false
	}
	rest = base
	if len(kept) > 0 {
		rest += "?" + strings.Join(kept, "&")
	}
	return value, rest + frag, true
}

// Screen reports whether key is worth a lookup: not too long and, with the
// tollgate key format, well formed with a correct checksum.
func (p *Policy) Screen(key string) bool {
	if key == "" || len(key) > MaxKeyLen {
		return false
	}
	if p.KeyFormat == FormatTollgate {
		return model.WellFormedKey(key)
	}
	return true
}

// HashKey is the cache and keystore identity of a key: lower-case hex SHA-256.
func HashKey(key string) string { return model.HashKey(key) }

// UpstreamHeaders computes the request headers to send on after a passing
// decision, from one snapshot of them: every identity header the client sent
// and (with strip_key) every key carrier removed, :path replaced when a query
// key was cut out, and the decision's identity headers added. changed is
// false when the result equals the snapshot, so the host need not be told.
// Order and repeated values of the other headers are kept.
func (p *Policy) UpstreamHeaders(headers [][2]string, x Extraction, d Decision) (out [][2]string, changed bool) {
	ids := d.Pairs
	if ids == nil && d.Pass {
		ids = d.Identity.Pairs(p.Identity)
	}
	out = make([][2]string, 0, len(headers)+len(ids))
	for _, kv := range headers {
		switch {
		case p.isIdentity(kv[0]) || contains(x.RemoveHeaders, kv[0]):
			changed = true
			continue
		case x.PathChanged && kv[0] == ":path":
			kv[1] = x.Path
			changed = true
		}
		out = append(out, kv)
	}
	if len(ids) > 0 {
		changed = true
		out = append(out, ids...)
	}
	return out, changed
}

func (p *Policy) isIdentity(name string) bool { return contains(p.IdentityList, name) }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
