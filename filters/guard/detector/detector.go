// Package detector holds the guard filter's built-in sensitive-data
// detectors. Each one pairs an RE2 candidate pattern (linear time, no
// ReDoS) with a validation step that real data passes and look-alikes fail:
// Luhn for payment cards, mod-97 for IBANs, check letters and digits for
// national identifiers, address parsing for IPs, the keystore's CRC for
// Tollgate keys. Patterns compile once per configuration (Compile); the
// package holds no global state.
package detector

import (
	"errors"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/shared/config"
)

// Need is a set of byte classes a text must contain before a detector's
// pattern is worth running: a cheap prefilter so that ordinary prose costs
// one pass over its bytes and no regular-expression work.
type Need uint8

// Byte classes for Need.
const (
	NeedDigit Need = 1 << iota
	NeedUpper
	NeedAt
	NeedDot
	NeedDash
	NeedUnderscore
	NeedColon
)

// Stats is what one pass over a text learns for the prefilters.
type Stats struct {
	// Classes are the byte classes present.
	Classes Need
	// Digits counts ASCII digits.
	Digits int
}

// Scan returns the Stats of s.
func Scan(s string) Stats {
	var n Need
	d := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			n |= NeedDigit
			d++
		case c >= 'A' && c <= 'Z':
			n |= NeedUpper
		case c == '@':
			n |= NeedAt
		case c == '.':
			n |= NeedDot
		case c == '-':
			n |= NeedDash
		case c == '_':
			n |= NeedUnderscore
		case c == ':':
			n |= NeedColon
		}
	}
	return Stats{Classes: n, Digits: d}
}

// Classes returns the byte classes present in s.
func Classes(s string) Need { return Scan(s).Classes }

// Possible reports whether text with these stats could hold a match: the
// byte classes, the digit count and the length all allow one.
func (d *Detector) Possible(st Stats, n int) bool {
	return n >= d.MinLen && st.Classes&d.Need == d.Need && st.Digits >= d.MinDigits
}

// Detector is one compiled built-in detector.
type Detector struct {
	// Name identifies the detector in configurations, metrics and logs.
	Name string
	// Placeholder replaces a masked match, e.g. "[EMAIL]".
	Placeholder string
	// Need are the byte classes a text must hold for a match to be possible.
	Need Need
	// MinLen is the shortest possible match.
	MinLen int
	// MinDigits is the fewest ASCII digits a match holds.
	MinDigits int
	// Hints, when set, are literals one of which every match contains.
	Hints []string
	re    *regexp.Regexp
	valid func(s string, text string, start, end int) bool
}

// Find calls emit for every validated match in text, left to right, with
// byte offsets. A candidate that fails validation is skipped.
func (d *Detector) Find(text string, st Stats, emit func(start, end int)) {
	if !d.Possible(st, len(text)) {
		return
	}
	if len(d.Hints) > 0 {
		hit := false
		for _, h := range d.Hints {
			if strings.Contains(text, h) {
				hit = true
				break
			}
		}
		if !hit {
			return
		}
	}
	for _, m := range d.re.FindAllStringIndex(text, -1) {
		if d.valid == nil || d.valid(text[m[0]:m[1]], text, m[0], m[1]) {
			emit(m[0], m[1])
		}
	}
}

// spec is the uncompiled form of a detector.
type spec struct {
	placeholder string
	need        Need
	minLen      int
	minDigits   int
	hints       []string
	pattern     string
	valid       func(s, text string, start, end int) bool
}

// specs lists the built-in detectors; it is a function so the package has
// no mutable globals.
func specs() map[string]spec {
	return map[string]spec{
		"email": {placeholder: "[EMAIL]", need: NeedAt | NeedDot, minLen: 6, hints: []string{"@"},
			pattern: `[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}`, valid: validEmail},
		"phone": {placeholder: "[PHONE]", need: NeedDigit, minLen: 10, minDigits: 8,
			pattern: `(?:\+|\(|\b)\d[\d ().\-]{6,20}\d\b`, valid: validPhone},
		"payment_card": {placeholder: "[PAYMENT_CARD]", need: NeedDigit, minLen: 13, minDigits: 13,
			pattern: `\b\d(?:[ \-]?\d){12,18}\b`, valid: validCard},
		"iban": {placeholder: "[IBAN]", need: NeedDigit | NeedUpper, minLen: 15, minDigits: 2,
			pattern: `\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b`, valid: validIBAN},
		"us_ssn": {placeholder: "[US_SSN]", need: NeedDigit | NeedDash, minLen: 11, minDigits: 9,
			pattern: `\b\d{3}-\d{2}-\d{4}\b`, valid: validSSN},
		"es_dni": {placeholder: "[ES_DNI]", need: NeedDigit | NeedUpper, minLen: 9, minDigits: 7,
			pattern: `\b(?:\d{8}|[XYZ]-?\d{7})-?[A-Z]\b`, valid: validDNI},
		"br_cpf": {placeholder: "[BR_CPF]", need: NeedDigit | NeedDot | NeedDash, minLen: 14, minDigits: 11,
			pattern: `\b\d{3}\.\d{3}\.\d{3}-\d{2}\b`, valid: validCPF},
		"ipv4": {placeholder: "[IP_ADDRESS]", need: NeedDigit | NeedDot, minLen: 7, minDigits: 4,
			pattern: `\b\d{1,3}(?:\.\d{1,3}){3}\b`, valid: validIPv4},
		"ipv6": {placeholder: "[IP_ADDRESS]", need: NeedColon, minLen: 3, hints: []string{":"},
			pattern: `[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}`, valid: validIPv6},
		"aws_access_key": {placeholder: "[AWS_ACCESS_KEY]", need: NeedUpper, minLen: 20,
			hints:   []string{"AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "APKA"},
			pattern: `\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z2-7]{16}\b`},
		"google_api_key": {placeholder: "[GOOGLE_API_KEY]", need: NeedUpper, minLen: 39, hints: []string{"AIza"},
			pattern: `\bAIza[0-9A-Za-z_\-]{35}\b`},
		"github_token": {placeholder: "[GITHUB_TOKEN]", need: NeedUnderscore, minLen: 40, hints: []string{"gh", "github_pat_"},
			pattern: `\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})\b`},
		"gitlab_token": {placeholder: "[GITLAB_TOKEN]", need: NeedDash, minLen: 26, hints: []string{"glpat-"},
			pattern: `\bglpat-[A-Za-z0-9_\-]{20}\b`},
		"slack_token": {placeholder: "[SLACK_TOKEN]", need: NeedDash, minLen: 15, hints: []string{"xox"},
			pattern: `\bxox[abposr]-[A-Za-z0-9\-]{10,250}\b`},
		"private_key": {placeholder: "[PRIVATE_KEY]", need: NeedDash | NeedUpper, minLen: 31, hints: []string{"-----BEGIN "},
			pattern: `-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----(?s:.*?)(?:-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----|\z)`},
		"tollgate_key": {placeholder: "[TOLLGATE_KEY]", need: NeedUnderscore, minLen: 41, minDigits: 0, hints: []string{"tg_"},
			pattern: `\btg_[0-9A-Za-z]{38}\b`, valid: validTollgateKey},
	}
}

// Names lists the built-in detectors, sorted.
func Names() []string {
	s := specs()
	out := make([]string, 0, len(s))
	for n := range s {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Secrets lists the detectors of credentials, which a default policy blocks.
func Secrets() []string {
	return []string{"aws_access_key", "google_api_key", "github_token", "gitlab_token", "slack_token", "private_key", "tollgate_key"}
}

// Compile returns the built-in detector called name.
func Compile(name string) (*Detector, error) {
	sp, ok := specs()[name]
	if !ok {
		return nil, errors.New("unknown detector " + strconv.Quote(name) + " (known: " + strings.Join(Names(), ", ") + ")")
	}
	re, err := regexp.Compile(sp.pattern)
	if err != nil {
		return nil, config.Wrap("detector "+name+": ", err, "")
	}
	return &Detector{Name: name, Placeholder: sp.placeholder, Need: sp.need, MinLen: sp.minLen,
		MinDigits: sp.minDigits, Hints: sp.hints, re: re, valid: sp.valid}, nil
}
