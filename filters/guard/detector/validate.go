package detector

import (
	"net/netip"
	"strings"

	"github.com/tollgate/tollgate/keystore/model"
)

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isWord(c byte) bool {
	return isDigit(c) || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_'
}

func digits(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			out = append(out, s[i]-'0')
		}
	}
	return out
}

func validEmail(s, _ string, _, _ int) bool {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || len(local) == 0 || len(local) > 64 || len(domain) > 253 {
		return false
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return false
	}
	for _, l := range strings.Split(domain, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
	}
	return true
}

// validPhone accepts international numbers written with a leading '+'
// (8 to 15 digits, E.164) and North American numbers (NANP: area code and
// exchange start with 2-9) written with at least one separator.
func validPhone(s, text string, start, end int) bool {
	if start > 0 && (isWord(text[start-1]) || text[start-1] == '+' || text[start-1] == '.' || text[start-1] == '-') {
		return false
	}
	if end < len(text) && (text[end] == '-' || text[end] == '.' && end+1 < len(text) && isDigit(text[end+1])) {
		return false
	}
	d := digits(s)
	if s[0] == '+' {
		return len(d) >= 8 && len(d) <= 15 && d[0] != 0
	}
	if len(d) == len(s) { // bare digits: too often something else
		return false
	}
	if len(d) == 11 && d[0] == 1 {
		d = d[1:]
	}
	return len(d) == 10 && d[0] >= 2 && d[3] >= 2
}

// validCard checks length, issuer prefix, consistent grouping and Luhn.
func validCard(s, text string, start, end int) bool {
	if start > 0 && (text[start-1] == '-' || text[start-1] == '.') || end < len(text) && text[end] == '-' {
		return false
	}
	var sep byte
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isDigit(c) {
			if sep != 0 && c != sep {
				return false
			}
			sep = c
		}
	}
	d := digits(s)
	if len(d) < 13 || len(d) > 19 || !knownIssuer(d) {
		return false
	}
	return Luhn(d)
}

// knownIssuer reports whether the number starts like a card of a major
// network (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro).
func knownIssuer(d []byte) bool {
	p2 := int(d[0])*10 + int(d[1])
	p4 := p2*100 + int(d[2])*10 + int(d[3])
	switch {
	case d[0] == 4:
		return true
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720:
		return true
	case p2 == 34 || p2 == 37, p2 == 36 || p2 == 38 || p2 == 39, p2 == 30:
		return true
	case p4 == 6011, p2 == 65, p4 >= 6440 && p4 <= 6499, p2 == 62, p2 == 35:
		return true
	case p2 == 50, p2 >= 56 && p2 <= 69:
		return true
	}
	return false
}

// Luhn reports whether the digits pass the Luhn (mod 10) check.
func Luhn(d []byte) bool {
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i])
		if (len(d)-1-i)%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// ibanLength returns the IBAN length of a country (0 when not listed).
func ibanLength(cc string) int {
	const table = "AD24AE23AL28AT20AZ28BA20BE16BG22BH22BR29CH21CR22CY28CZ24DE22DK18DO28EE20EG29ES24FI18FO18FR27GB22GE22GI23GL18GR27GT28HR21HU28IE22IL23IQ23IS26IT27JO30KW30KZ20LB28LC32LI21LT20LU20LV21MC27MD24ME22MK19MR27MT31MU30NL18NO15PK24PL28PS29PT25QA29RO24RS22SA24SC31SE24SI19SK24SM27TN24TR26UA29VA22VG24XK20"
	for i := 0; i+4 <= len(table); i += 4 {
		if table[i:i+2] == cc {
			return int(table[i+2]-'0')*10 + int(table[i+3]-'0')
		}
	}
	return 0
}

// validIBAN checks the country's length and the ISO 13616 mod-97 check.
func validIBAN(s, _ string, _, _ int) bool {
	c := strings.ReplaceAll(s, " ", "")
	n := ibanLength(c[:2])
	if n == 0 || len(c) != n {
		return false
	}
	return IBANChecksum(c)
}

// IBANChecksum reports whether a compact upper-case IBAN passes mod 97.
func IBANChecksum(c string) bool {
	if len(c) < 5 {
		return false
	}
	r := c[4:] + c[:4]
	rem := 0
	for i := 0; i < len(r); i++ {
		ch := r[i]
		switch {
		case isDigit(ch):
			rem = (rem*10 + int(ch-'0')) % 97
		case ch >= 'A' && ch <= 'Z':
			rem = (rem*100 + int(ch-'A') + 10) % 97
		default:
			return false
		}
	}
	return rem == 1
}

// validSSN applies the Social Security Administration's shape rules: no
// area 000, 666 or 900-999, no group 00, no serial 0000, and not one of the
// numbers published in advertising.
func validSSN(s, text string, start, end int) bool {
	if start > 0 && (text[start-1] == '-' || text[start-1] == '.') || end < len(text) && text[end] == '-' {
		return false
	}
	area, group, serial := s[0:3], s[4:6], s[7:11]
	if area == "000" || area == "666" || area[0] == '9' || group == "00" || serial == "0000" {
		return false
	}
	return s != "078-05-1120" && s != "219-09-9999"
}

// validDNI checks the control letter of a Spanish DNI or NIE.
func validDNI(s, _ string, _, _ int) bool {
	c := strings.ReplaceAll(s, "-", "")
	n := 0
	for i := 0; i < len(c)-1; i++ {
		ch := c[i]
		switch {
		case i == 0 && ch >= 'X' && ch <= 'Z':
			n = int(ch - 'X')
		case isDigit(ch):
			n = n*10 + int(ch-'0')
		default:
			return false
		}
	}
	return "TRWAGMYFPDXBNJZSQVHLCKE"[n%23] == c[len(c)-1]
}

// validCPF checks both check digits of a Brazilian CPF.
func validCPF(s, _ string, _, _ int) bool {
	d := digits(s)
	if len(d) != 11 {
		return false
	}
	same := true
	for _, v := range d[1:] {
		same = same && v == d[0]
	}
	if same {
		return false
	}
	check := func(n int) bool {
		sum := 0
		for i := 0; i < n; i++ {
			sum += int(d[i]) * (n + 1 - i)
		}
		return sum*10%11%10 == int(d[n])
	}
	return check(9) && check(10)
}

func validIPv4(s, text string, start, end int) bool {
	if start > 1 && text[start-1] == '.' && isDigit(text[start-2]) || end+1 < len(text) && text[end] == '.' && isDigit(text[end+1]) {
		return false // part of a longer dotted number (a version)
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4()
}

func validIPv6(s, text string, start, end int) bool {
	if start > 0 && (isWord(text[start-1]) || text[start-1] == ':' || text[start-1] == '.') ||
		end < len(text) && (isWord(text[end]) || text[end] == ':') {
		return false
	}
	groups, hex := 0, 0
	for _, g := range strings.Split(s, ":") {
		if g != "" {
			groups++
		}
		hex += len(g)
	}
	if groups < 2 || hex < 4 {
		return false
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6()
}

func validTollgateKey(s, _ string, _, _ int) bool { return model.WellFormedKey(s) }
