package policy

import (
	"errors"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/reqview"
)

// threatPatterns are the threat-protection sets, in the spirit of Apigee's
// RegularExpressionProtection examples: each set is a list of RE2
// expressions (linear time whatever the input). They look for attack
// syntax, not for words: "explain SELECT * FROM users" in a query parameter
// is refused, the same sentence in a prompt is not checked by default.
func threatPatterns() map[string][]string {
	return map[string][]string{
		"sqli": {
			`(?i)\bunion\b[\s/*+]+(?:all[\s/*+]+)?select\b`,
			`(?i)\bselect\b[\s\S]{1,200}?\bfrom\b`,
			`(?i)\b(?:insert[\s/*+]+into|delete[\s/*+]+from|drop[\s/*+]+(?:table|database|schema)|truncate[\s/*+]+table|alter[\s/*+]+table)\b`,
			`(?i)\bupdate\b[\s/*+]+\w+[\s/*+]+set\b`,
			`(?i)['"]\s*(?:or|and)\s+['"]?\w+['"]?\s*(?:=|like|<|>)\s*['"]?\w+`,
			`(?i)['"]\s*(?:;|--|#|/\*)`,
			`(?i);\s*(?:drop|delete|shutdown|exec|insert|update)\b`,
			`(?i)\b(?:sleep|benchmark|pg_sleep)\s*\(\s*\d+`,
			`(?i)\bwaitfor\s+delay\b`,
			`(?i)\bexec(?:ute)?\s+(?:xp|sp)_\w+`,
		},
		"xss": {
			`(?i)<\s*/?\s*(?:script|iframe|object|embed|applet|meta|base|form)\b`,
			`(?i)\bjavascript\s*:`,
			`(?i)\bvbscript\s*:`,
			`(?i)<[^>]*\bon[a-z]{3,20}\s*=`,
			`(?i)<\s*(?:img|svg|video|audio|body|input|link)\b[^>]*\b(?:src|href|on[a-z]+)\s*=`,
			`(?i)\bdocument\s*\.\s*(?:cookie|location|write|domain)\b`,
			`(?i)\beval\s*\(`,
			`(?i)data\s*:\s*text/html`,
		},
		"ssi": {
			`(?i)<!--\s*#\s*(?:include|exec|echo|config|set|printenv|fsize|flastmod|if|elif|else|endif)\b`,
		},
	}
}

// threatSet is one compiled set.
type threatSet struct {
	name string
	res  []*regexp.Regexp
}

// Threat is a profile's compiled threat protection.
type Threat struct {
	sets    []threatSet
	path    bool
	query   bool
	headers []string
	fields  [][]string
	prompt  bool
}

func compileThreat(c *ThreatConfig) (*Threat, error) {
	t := &Threat{path: c.Path, query: c.Query, prompt: c.Prompt}
	sets := c.Sets
	if len(sets) == 0 {
		sets = []string{"sqli", "xss", "ssi"}
	}
	// The most specific set is tried first, so that an SSI directive is
	// named ssi even though its quote-and-dashes also look like SQL.
	rank := map[string]int{"ssi": 0, "xss": 1, "sqli": 2}
	sets = append([]string(nil), sets...)
	sort.SliceStable(sets, func(i, j int) bool { return rank[sets[i]] < rank[sets[j]] })
	all := threatPatterns()
	seen := map[string]bool{}
	for _, s := range sets {
		pats, ok := all[s]
		if !ok || seen[s] {
			return nil, errors.New("set " + strconv.Quote(s) + " is unknown or repeated (known: sqli, xss, ssi)")
		}
		seen[s] = true
		ts := threatSet{name: s}
		for _, p := range pats {
			ts.res = append(ts.res, regexp.MustCompile(p))
		}
		t.sets = append(t.sets, ts)
	}
	for i, h := range c.Headers {
		name, err := config.HeaderName("headers["+strconv.Itoa(i)+"]", h)
		if err != nil {
			return nil, err
		}
		t.headers = append(t.headers, name)
	}
	for _, f := range c.JSONFields {
		parts := strings.Split(f, ".")
		for _, p := range parts {
			if p == "" {
				return nil, errors.New("json_fields " + strconv.Quote(f) + ": empty path segment")
			}
		}
		if len(parts) > 16 {
			return nil, errors.New("json_fields " + strconv.Quote(f) + ": at most 16 segments")
		}
		t.fields = append(t.fields, parts)
	}
	if !t.path && !t.query && len(t.headers) == 0 && len(t.fields) == 0 && !t.prompt {
		return nil, errors.New("no place to check: set path, query, headers, json_fields or prompt")
	}
	return t, nil
}

func (t *Threat) onBody() bool { return t != nil && (len(t.fields) > 0 || t.prompt) }

// match returns the first set that matches s ("" for none).
func (t *Threat) match(s string) string {
	for _, set := range t.sets {
		for _, re := range set.res {
			if re.MatchString(s) {
				return set.name
			}
		}
	}
	return ""
}

// ThreatHit is a threat-protection match: the set and where it was found
// (never the matched text).
type ThreatHit struct {
	Set   string
	Where string // "path", "query.<name>", "header.<name>", a JSON path
}

// CheckHeaders checks the path, query parameters and configured headers.
func (t *Threat) CheckHeaders(path string, header func(string) string) (ThreatHit, bool) {
	if t == nil {
		return ThreatHit{}, false
	}
	p, q, _ := strings.Cut(path, "?")
	if t.path {
		for _, v := range decoded(p, url.PathUnescape) {
			if s := t.match(v); s != "" {
				return ThreatHit{s, "path"}, true
			}
		}
	}
	if t.query && q != "" {
		for _, kv := range strings.Split(q, "&") {
			k, v, _ := strings.Cut(kv, "=")
			name := k
			if dk, err := url.QueryUnescape(k); err == nil {
				name = dk
			}
			for _, s := range append(decoded(k, url.QueryUnescape), decoded(v, url.QueryUnescape)...) {
				if set := t.match(s); set != "" {
					return ThreatHit{set, "query." + safeName(name)}, true
				}
			}
		}
	}
	for _, h := range t.headers {
		if v := header(h); v != "" {
			if s := t.match(v); s != "" {
				return ThreatHit{s, "header." + h}, true
			}
		}
	}
	return ThreatHit{}, false
}

// decoded returns s and its percent-decoded form (twice decoded too, since
// double encoding is a classic evasion).
func decoded(s string, dec func(string) (string, error)) []string {
	out := []string{s}
	for i := 0; i < 2; i++ {
		d, err := dec(s)
		if err != nil || d == s {
			break
		}
		out = append(out, d)
		s = d
	}
	return out
}

// safeName keeps a parameter name printable and short for error messages.
func safeName(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return '_'
		}
		return r
	}, s)
}

// CheckBody checks the configured JSON fields of a parsed body (every
// string under a matched path, without recursion: containers found there
// are walked with an explicit stack bounded by the document).
func (t *Threat) CheckBody(root reqview.Value) (ThreatHit, bool) {
	if t == nil {
		return ThreatHit{}, false
	}
	type item struct {
		v     reqview.Value
		depth int
		path  string
	}
	for _, f := range t.fields {
		stack := []item{{root, 0, ""}}
		for len(stack) > 0 {
			it := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if it.depth == len(f) {
				var hit ThreatHit
				found := false
				walkStrings(it.v, it.path, func(p, s string) bool {
					if set := t.match(s); set != "" {
						hit, found = ThreatHit{set, p}, true
						return false
					}
					return true
				})
				if found {
					return hit, true
				}
				continue
			}
			seg := f[it.depth]
			switch it.v.Kind() {
			case reqview.Object:
				it.v.Members(func(k string, v reqview.Value) bool {
					if seg == "*" || k == seg {
						stack = append(stack, item{v, it.depth + 1, joinPath(it.path, k)})
					}
					return true
				})
			case reqview.Array:
				it.v.Elems(func(i int, v reqview.Value) bool {
					if seg == "*" || seg == strconv.Itoa(i) {
						stack = append(stack, item{v, it.depth + 1, it.path + "[" + strconv.Itoa(i) + "]"})
					}
					return true
				})
			}
		}
	}
	return ThreatHit{}, false
}

func joinPath(p, k string) string {
	if p == "" {
		return safeName(k)
	}
	return p + "." + safeName(k)
}

// walkStrings visits every string in v (v itself, or the members and
// elements of containers at any depth) with an explicit stack.
func walkStrings(v reqview.Value, path string, fn func(path, s string) bool) {
	type item struct {
		v    reqview.Value
		path string
	}
	stack := []item{{v, path}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		switch it.v.Kind() {
		case reqview.String:
			if !fn(it.path, it.v.Str()) {
				return
			}
		case reqview.Object:
			it.v.Members(func(k string, c reqview.Value) bool {
				stack = append(stack, item{c, joinPath(it.path, k)})
				return true
			})
		case reqview.Array:
			it.v.Elems(func(i int, c reqview.Value) bool {
				stack = append(stack, item{c, it.path + "[" + strconv.Itoa(i) + "]"})
				return true
			})
		}
	}
}

// CheckText checks one prompt text (only when the profile opts in).
func (t *Threat) CheckText(param, s string) (ThreatHit, bool) {
	if t == nil || !t.prompt {
		return ThreatHit{}, false
	}
	if set := t.match(s); set != "" {
		return ThreatHit{set, param}, true
	}
	return ThreatHit{}, false
}
