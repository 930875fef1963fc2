// Package detector holds the guard filter's built-in sensitive-data
// detectors. Each one pairs an RE2 candidate pattern (linear time, no
// ReDoS) with a validation step that real data passes and look-alikes fail:
// Luhn for payment cards, mod-97 for IBANs, check letters and digits for
// national identifiers, address parsing for IPs, the keystore's CRC for
// Tollgate keys. Patterns compile once per configuration (Compile); the
// package holds no global state.
package detector

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
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

// Classes returns the byte classes present in s.
func Classes(s string) Need {
	var n Need
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			n |= NeedDigit
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
	return n
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
	re     *regexp.Regexp
	valid  func(s string, text string, start, end int) bool
}

// Find calls emit for every validated match in text, left to right, with
// byte offsets. A candidate that fails validation is skipped.
func (d *Detector) Find(text string, cls Need, emit func(start, end int)) {
	if len(text) < d.MinLen || cls&d.Need != d.Need {
		return
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
	pattern     string
	valid       func(s, text string, start, end int) bool
}

// specs lists the built-in detectors; it is a function so the package has
// no mutable globals.
func specs() map[string]spec {
	return map[string]spec{
		"email": {"[EMAIL]", NeedAt | NeedDot, 6,
			`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}`, validEmail},
		"phone": {"[PHONE]", NeedDigit, 10,
			`(?:\+|\(|\b)\d[\d ().\-]{6,20}\d\b`, validPhone},
		"payment_card": {"[PAYMENT_CARD]", NeedDigit, 13,
			`\b\d(?:[ \-]?\d){12,18}\b`, validCard},
		"iban": {"[IBAN]", NeedDigit | NeedUpper, 15,
			`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b`, validIBAN},
		"us_ssn": {"[US_SSN]", NeedDigit | NeedDash, 11,
			`\b\d{3}-\d{2}-\d{4}\b`, validSSN},
		"es_dni": {"[ES_DNI]", NeedDigit | NeedUpper, 9,
			`\b(?:\d{8}|[XYZ]-?\d{7})-?[A-Z]\b`, validDNI},
		"br_cpf": {"[BR_CPF]", NeedDigit | NeedDot | NeedDash, 14,
			`\b\d{3}\.\d{3}\.\d{3}-\d{2}\b`, validCPF},
		"ipv4": {"[IP_ADDRESS]", NeedDigit | NeedDot, 7,
			`\b\d{1,3}(?:\.\d{1,3}){3}\b`, validIPv4},
		"ipv6": {"[IP_ADDRESS]", NeedColon, 3,
			`[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}`, validIPv6},
		"aws_access_key": {"[AWS_ACCESS_KEY]", NeedUpper, 20,
			`\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z2-7]{16}\b`, nil},
		"google_api_key": {"[GOOGLE_API_KEY]", NeedUpper, 39,
			`\bAIza[0-9A-Za-z_\-]{35}\b`, nil},
		"github_token": {"[GITHUB_TOKEN]", NeedUnderscore, 40,
			`\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})\b`, nil},
		"gitlab_token": {"[GITLAB_TOKEN]", NeedDash, 26,
			`\bglpat-[A-Za-z0-9_\-]{20}\b`, nil},
		"slack_token": {"[SLACK_TOKEN]", NeedDash, 15,
			`\bxox[abposr]-[A-Za-z0-9\-]{10,250}\b`, nil},
		"private_key": {"[PRIVATE_KEY]", NeedDash | NeedUpper, 31,
			`-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----(?s:.*?)(?:-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----|\z)`, nil},
		"tollgate_key": {"[TOLLGATE_KEY]", NeedUnderscore, 41,
			`\btg_[0-9A-Za-z]{38}\b`, validTollgateKey},
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
		return nil, fmt.Errorf("unknown detector %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	re, err := regexp.Compile(sp.pattern)
	if err != nil {
		return nil, fmt.Errorf("detector %s: %w", name, err)
	}
	return &Detector{Name: name, Placeholder: sp.placeholder, Need: sp.need, MinLen: sp.minLen, re: re, valid: sp.valid}, nil
}
