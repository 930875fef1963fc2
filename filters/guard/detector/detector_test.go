package detector_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/guard/detector"
	"github.com/tollgate/tollgate/keystore/model"
)

// find returns the matches of detector name in text.
func find(t *testing.T, name, text string) []string {
	t.Helper()
	d, err := detector.Compile(name)
	require.NoError(t, err)
	var out []string
	d.Find(text, detector.Scan(text), func(a, b int) { out = append(out, text[a:b]) })
	return out
}

func TestDetectors(t *testing.T) {
	key, err := model.GenerateKey(nil)
	require.NoError(t, err)
	bad := key[:len(key)-1] + string("ab"[0]+key[len(key)-1]%2)
	for _, tc := range []struct {
		name, detector, text string
		want                 []string
	}{
		{"email", "email", "write to jane.doe+tag@mail.example.co.uk today", []string{"jane.doe+tag@mail.example.co.uk"}},
		{"email double dot", "email", "a..b@example.com", nil},
		{"email no tld", "email", "user@localhost", nil},
		{"phone international", "phone", "call +44 20 7946 0958 now", []string{"+44 20 7946 0958"}},
		{"phone nanp", "phone", "ring (415) 555-0100.", []string{"(415) 555-0100"}},
		{"phone bare digits", "phone", "order 4155550100", nil},
		{"phone date", "phone", "on 2024-01-15 at noon", nil},
		{"card visa spaced", "payment_card", "card 4111 1111 1111 1111 exp", []string{"4111 1111 1111 1111"}},
		{"card amex", "payment_card", "378282246310005", []string{"378282246310005"}},
		{"card dashed mastercard", "payment_card", "5555-5555-5555-4444", []string{"5555-5555-5555-4444"}},
		{"card luhn fails", "payment_card", "4111 1111 1111 1112", nil},
		{"card mixed separators", "payment_card", "4111 1111-1111 1111", nil},
		{"card unknown issuer", "payment_card", "1234567812345670", nil},
		{"iban compact", "iban", "IBAN DE89370400440532013000.", []string{"DE89370400440532013000"}},
		{"iban grouped", "iban", "GB82 WEST 1234 5698 7654 32", []string{"GB82 WEST 1234 5698 7654 32"}},
		{"iban bad checksum", "iban", "DE89370400440532013001", nil},
		{"iban wrong length", "iban", "DE8937040044053201300", nil},
		{"ssn", "us_ssn", "SSN 536-22-1234", []string{"536-22-1234"}},
		{"ssn area 666", "us_ssn", "666-22-1234", nil},
		{"ssn area 9xx", "us_ssn", "912-22-1234", nil},
		{"ssn group 00", "us_ssn", "536-00-1234", nil},
		{"dni", "es_dni", "DNI 12345678Z", []string{"12345678Z"}},
		{"nie", "es_dni", "NIE X1234567L", []string{"X1234567L"}},
		{"dni bad letter", "es_dni", "12345678A", nil},
		{"cpf", "br_cpf", "CPF 529.982.247-25", []string{"529.982.247-25"}},
		{"cpf bad check", "br_cpf", "529.982.247-24", nil},
		{"cpf all same", "br_cpf", "111.111.111-11", nil},
		{"ipv4", "ipv4", "host 192.168.10.7:8080", []string{"192.168.10.7"}},
		{"ipv4 out of range", "ipv4", "300.1.1.1", nil},
		{"ipv4 version", "ipv4", "v1.2.3.4.5", nil},
		{"ipv6", "ipv6", "addr 2001:db8::8a2e:370:7334 up", []string{"2001:db8::8a2e:370:7334"}},
		{"ipv6 not a time", "ipv6", "at 12:30:45", nil},
		{"ipv6 not c++", "ipv6", "std::vector", nil},
		{"aws", "aws_access_key", "AKIAIOSFODNN7EXAMPLE", []string{"AKIAIOSFODNN7EXAMPLE"}},
		{"google", "google_api_key", "key=AIzaSyA1234567890abcdefghijklmnopqrstuv", []string{"AIzaSyA1234567890abcdefghijklmnopqrstuv"}},
		{"github", "github_token", "ghp_0123456789abcdefghijABCDEFGHIJ012345", []string{"ghp_0123456789abcdefghijABCDEFGHIJ012345"}},
		{"gitlab", "gitlab_token", "glpat-abcdefghij0123456789", []string{"glpat-abcdefghij0123456789"}},
		{"slack", "slack_token", "xoxb-123456789012-abcdef", []string{"xoxb-123456789012-abcdef"}},
		{"private key", "private_key", "x -----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY----- y",
			[]string{"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----"}},
		{"private key cut off", "private_key", "-----BEGIN PRIVATE KEY-----\nMIIB", []string{"-----BEGIN PRIVATE KEY-----\nMIIB"}},
		{"public key", "private_key", "-----BEGIN PUBLIC KEY-----", nil},
		{"tollgate key", "tollgate_key", "Bearer " + key, []string{key}},
		{"tollgate key bad checksum", "tollgate_key", bad, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, find(t, tc.detector, tc.text))
		})
	}
}

func TestCompileUnknown(t *testing.T) {
	_, err := detector.Compile("nope")
	require.ErrorContains(t, err, `unknown detector "nope"`)
	for _, n := range detector.Names() {
		_, err := detector.Compile(n)
		require.NoError(t, err, n)
	}
}

func TestChecksums(t *testing.T) {
	assert.True(t, detector.Luhn([]byte{7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3}))
	assert.False(t, detector.Luhn([]byte{7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 4}))
	assert.True(t, detector.IBANChecksum("GB82WEST12345698765432"))
	assert.False(t, detector.IBANChecksum("GB82WEST12345698765433"))
	assert.False(t, detector.IBANChecksum("GB8"))
}

func FuzzFind(f *testing.F) {
	for _, s := range []string{"4111 1111 1111 1111", "a@b.co", "+1 415 555 0100", "DE89370400440532013000", "2001:db8::1"} {
		f.Add(s)
	}
	dets := []*detector.Detector{}
	for _, n := range detector.Names() {
		d, err := detector.Compile(n)
		require.NoError(f, err)
		dets = append(dets, d)
	}
	f.Fuzz(func(t *testing.T, text string) {
		st := detector.Scan(text)
		for _, d := range dets {
			last := 0
			d.Find(text, st, func(a, b int) {
				if a < last || b <= a || b > len(text) {
					t.Fatalf("%s: bad span [%d,%d) after %d in %q", d.Name, a, b, last, text)
				}
				last = b
			})
		}
	})
}
