package policy

import (
	"strings"

	"github.com/tollgate/tollgate/shared/apierror"
)

// Path problems CheckPath reports; each is the reason in the 400's message.
const (
	PathNotAbsolute = "the path does not start with '/'"
	PathControl     = "the path holds a control character or NUL"
	PathBackslash   = "the path holds a backslash"
	PathBadEscape   = "the path holds a malformed percent escape"
	PathEncodedSep  = "the path holds a percent-encoded '/', '\\', '.', '%' or control character"
	PathDotSegment  = "the path holds a '.' or '..' segment"
)

// CheckPath judges a request :path (query and fragment ignored) the way the
// upstream will read it, and returns "" when grants may be matched on it as
// is, or why not. A grant is matched on the raw path, while an upstream
// decodes percent escapes and may resolve dot segments or treat '\' as '/':
// any form where the two could disagree — encoded separators, dots or
// percent signs, dot segments (also "..;param"), backslashes, control bytes,
// malformed escapes — is refused rather than normalised, so the gateway
// never authorises one path and forwards another.
func CheckPath(path string) string {
	p := path
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if p == "" || p[0] != '/' {
		return PathNotAbsolute
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c < 0x20 || c == 0x7f:
			return PathControl
		case c == '\\':
			return PathBackslash
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return PathBadEscape
			}
			d := unhex(p[i+1])<<4 | unhex(p[i+2])
			if d == '/' || d == '\\' || d == '.' || d == '%' || d < 0x20 || d == 0x7f {
				return PathEncodedSep
			}
			i += 2
		}
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if name, _, _ := strings.Cut(seg, ";"); name == "." || name == ".." {
			return PathDotSegment
		}
	}
	return ""
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// BadPath is the decision for a path CheckPath refused (reason is its answer):
// 400, before any key lookup.
func (p *Policy) BadPath(reason string) Decision {
	e := apierror.New(400, "invalid_path",
		"The request path is refused: "+reason+". Send the path in plain, normalised form.")
	e.Apigee = "protocol.http.InvalidPath"
	return Decision{Outcome: BadRequest, Error: e}
}
