package model

import "strings"

// RequestPath strips the query string and fragment from an HTTP :path, since
// operations match on the path alone.
func RequestPath(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return p[:i]
	}
	return p
}

// hasDotSegment reports "." or ".." segments, literal or percent-encoded, and
// encoded separators ("..%2f.." is a dot segment once the upstream decodes
// it), which an upstream could resolve to a path outside the matched prefix.
func hasDotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	lower := strings.ToLower(p)
	return strings.Contains(lower, "%2e") || strings.Contains(lower, "%2f") || strings.Contains(p, "\\") || strings.Contains(lower, "%5c")
}

// MatchPath reports whether the request path (query already stripped) matches
// an operation pattern:
//   - "/v1/models" matches exactly that path;
//   - "/v1/models/**" matches "/v1/models" and every path below "/v1/models/";
//   - "/v1/mod*" matches every path starting with "/v1/mod".
//
// Wildcard patterns never match paths with dot segments ("/./", "/../",
// percent-encoded dots), encoded slashes or backslashes, so traversal cannot
// escape a prefix.
func MatchPath(pattern, path string) bool {
	if path == "" || path[0] != '/' {
		return false
	}
	if !strings.HasSuffix(pattern, "*") {
		return pattern == path
	}
	if hasDotSegment(path) {
		return false
	}
	if base, ok := strings.CutSuffix(pattern, "/**"); ok {
		if base == "" {
			return true
		}
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return strings.HasPrefix(path, strings.TrimSuffix(pattern, "*"))
}

// MatchMethod reports whether method is allowed by the list; an empty list or "*" allows any method.
func MatchMethod(methods []string, method string) bool {
	if len(methods) == 0 {
		return true
	}
	for _, m := range methods {
		if m == "*" || strings.EqualFold(m, method) {
			return true
		}
	}
	return false
}

// MatchModel reports whether model matches one of the patterns: exact names,
// "prefix*" patterns, or "*" for any. An empty list allows any model.
func MatchModel(patterns []string, model string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(model, prefix) {
				return true
			}
		} else if p == model {
			return true
		}
	}
	return false
}
