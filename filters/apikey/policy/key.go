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
// tried in configured order and the first non-empty key wins. With StripKey
// every configured carrier is scheduled for removal, whichever held the key
// and whether or not it held one: the key headers, the Authorization header
// when bearer keys are configured (whatever its scheme), and from the query
// every parameter named like a query source (in any letter case) and every
// parameter whose value is a well-formed Tollgate key, so that no credential
// reaches the upstream or an access log that records :path.
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
		case s.Bearer:
			v, ok := get("authorization")
			if !ok {
				continue
			}
			key, _ = BearerToken(v)
		case s.Query != "":
			v, _, found := QueryParam(path, s.Query)
			if !found {
				continue
			}
			key = v
		}
		if x.Key == "" && key != "" {
			x.Key, x.Source = key, i
		}
	}
	if p.StripKey {
		x.RemoveHeaders = p.keyHeaders
		x.Path, x.PathChanged = p.scrubQuery(path)
	}
	return x
}

// scrubQuery removes key-carrying parameters from path's query (see Extract),
// keeping the others byte for byte in order.
func (p *Policy) scrubQuery(path string) (string, bool) {
	qi := strings.IndexByte(path, '?')
	if qi < 0 {
		return path, false
	}
	base, query := path[:qi], path[qi+1:]
	frag := ""
	if fi := strings.IndexByte(query, '#'); fi >= 0 {
		query, frag = query[:fi], query[fi:]
	}
	var kept []string
	changed := false
	for query != "" {
		var part string
		part, query, _ = strings.Cut(query, "&")
		if p.carriesKey(part) {
			changed = true
			continue
		}
		kept = append(kept, part)
	}
	if !changed {
		return path, false
	}
	if len(kept) > 0 {
		base += "?" + strings.Join(kept, "&")
	}
	return base + frag, true
}

// carriesKey reports whether one raw "name=value" query parameter is a key
// carrier: named like a query source, or (Tollgate key format) holding a key.
func (p *Policy) carriesKey(part string) bool {
	rawName, rawValue, _ := strings.Cut(part, "=")
	name, err := url.QueryUnescape(rawName)
	if err != nil {
		name = rawName
	}
	for _, s := range p.Sources {
		if s.Query != "" && strings.EqualFold(name, s.Query) {
			return true
		}
	}
	if p.KeyFormat != FormatTollgate {
		return false
	}
	v, err := url.QueryUnescape(rawValue)
	if err != nil {
		v = rawValue
	}
	return model.WellFormedKey(strings.TrimSpace(v))
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
		case p.clientMustNotSend(kv[0]) || containsHeader(x.RemoveHeaders, kv[0]):
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

// ReservedPrefix starts every header name Tollgate's filters set; a client
// never sends one (apikey in verify mode removes them all).
const ReservedPrefix = "x-tollgate-"

// clientMustNotSend reports an identity header, or in verify mode any header
// in the reserved x-tollgate- namespace, in any spelling an upstream might
// read as one: letter case and '_' for '-' (CGI, WSGI and some proxies map
// both to the same variable).
func (p *Policy) clientMustNotSend(name string) bool {
	if containsHeader(p.IdentityList, name) {
		return true
	}
	if p.Mode != ModeVerify || len(name) < len(ReservedPrefix) {
		return false
	}
	return sameHeader(name[:len(ReservedPrefix)], ReservedPrefix)
}

// containsHeader reports whether list holds name, compared as sameHeader does.
func containsHeader(list []string, name string) bool {
	for _, v := range list {
		if sameHeader(v, name) {
			return true
		}
	}
	return false
}

// sameHeader compares header names ignoring ASCII case and treating '_' as
// '-', the spellings upstream frameworks conflate.
func sameHeader(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if foldHeaderByte(a[i]) != foldHeaderByte(b[i]) {
			return false
		}
	}
	return true
}

func foldHeaderByte(c byte) byte {
	switch {
	case c == '_':
		return '-'
	case c >= 'A' && c <= 'Z':
		return c + 'a' - 'A'
	}
	return c
}
