package masker_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/guard/detector"
	"github.com/tollgate/tollgate/filters/guard/masker"
)

// scanner builds a scanner of built-in detectors (name=action) and custom
// patterns (name=action=pattern).
func scanner(t testing.TB, builtins map[string]masker.Action, custom [][3]string, allow ...string) *masker.Scanner {
	t.Helper()
	var rules []masker.Rule
	for _, n := range detector.Names() {
		a, ok := builtins[n]
		if !ok {
			continue
		}
		d, err := detector.Compile(n)
		require.NoError(t, err)
		rules = append(rules, masker.Builtin(d, a))
	}
	for _, c := range custom {
		a, err := masker.ParseAction(c[1])
		require.NoError(t, err)
		r, err := masker.Custom(c[0], c[2], "", a)
		require.NoError(t, err)
		rules = append(rules, r)
	}
	s, err := masker.New(rules, allow, 0)
	require.NoError(t, err)
	return s
}

func allMask() map[string]masker.Action {
	m := map[string]masker.Action{}
	for _, n := range detector.Names() {
		m[n] = masker.ActionMask
	}
	return m
}

func TestMask(t *testing.T) {
	s := scanner(t, allMask(), nil)
	for _, tc := range []struct{ name, in, want string }{
		{"nothing", "Explain SELECT * FROM users WHERE id = 1;", "Explain SELECT * FROM users WHERE id = 1;"},
		{"email", "mail bob@example.com, please", "mail [EMAIL], please"},
		{"card", "my card is 4111 1111 1111 1111 thanks", "my card is [PAYMENT_CARD] thanks"},
		{"phone and email", "Call +1 415 555 0100\nor x@y.io", "Call [PHONE]\nor [EMAIL]"},
		{"iban grouped", "pay to GB82 WEST 1234 5698 7654 32 today", "pay to [IBAN] today"},
		{"pem", "key:\n-----BEGIN PRIVATE KEY-----\nMIIEvQ\nAbCd\n-----END PRIVATE KEY-----\nok", "key:\n[PRIVATE_KEY]\nok"},
		{"unicode", "café bob@example.com ☕", "café [EMAIL] ☕"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := s.NewReport()
			assert.Equal(t, tc.want, s.Mask(tc.in, &rep))
			assert.Equal(t, tc.want != tc.in, rep.Any())
		})
	}
}

func TestActionsAndAllow(t *testing.T) {
	s := scanner(t, map[string]masker.Action{"email": masker.ActionMask, "payment_card": masker.ActionBlock, "ipv4": masker.ActionLog},
		[][3]string{{"project", "mask", `(?i)project\s+falcon`}}, `support@tollgate\.test`)
	rep := s.NewReport()
	out := s.Mask("ask support@tollgate.test or bob@x.io about Project  Falcon on 10.0.0.1", &rep)
	assert.Equal(t, "ask support@tollgate.test or [EMAIL] about [PROJECT] on 10.0.0.1", out)
	assert.Equal(t, -1, rep.Block)
	names := map[string]int{}
	for i, r := range s.Rules() {
		names[r.Name] = rep.Counts[i]
	}
	assert.Equal(t, map[string]int{"email": 1, "payment_card": 0, "ipv4": 1, "project": 1}, names)

	rep = s.NewReport()
	s.Mask("card 4111111111111111", &rep)
	require.GreaterOrEqual(t, rep.Block, 0)
	assert.Equal(t, "payment_card", s.Rules()[rep.Block].Name)
}

func TestStreamHoldsOnlyUnfinishedSegment(t *testing.T) {
	s := scanner(t, allMask(), nil)
	st := s.NewStream()
	assert.Equal(t, "Hello ", st.Write("Hello wor"))
	assert.Equal(t, 3, st.Held())
	assert.Equal(t, "world, mail ", st.Write("ld, mail bo"))
	assert.Equal(t, "", st.Write("b@example.com"))
	assert.Equal(t, "[EMAIL] ", st.Write(" "))
	assert.Equal(t, 0, st.Held())
	assert.Equal(t, "", st.Flush())
}

func TestStreamBoundedHold(t *testing.T) {
	rules := []masker.Rule{}
	d, err := detector.Compile("email")
	require.NoError(t, err)
	rules = append(rules, masker.Builtin(d, masker.ActionMask))
	s, err := masker.New(rules, nil, 16)
	require.NoError(t, err)
	st := s.NewStream()
	out := st.Write(strings.Repeat("a", 100))
	assert.LessOrEqual(t, st.Held(), 16)
	assert.Equal(t, 100, len(out)+st.Held())
}

// FuzzStreamMatchesMask: the same text, split anywhere, streams to the same
// output and report as Mask gives on the whole.
func FuzzStreamMatchesMask(f *testing.F) {
	for _, s := range []string{
		"mail bob@example.com now", "card 4111 1111 1111 1111.", "+1 415 555 0100 and DE89370400440532013000",
		"-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n", "Project Falcon 10.1.2.3\n2001:db8::1 ",
	} {
		f.Add(s, uint16(3), uint16(7))
	}
	word := scanner(f, allMask(), nil)
	line := scanner(f, allMask(), [][3]string{{"project", "mask", `(?i)project\s+falcon`}, {"secret", "block", `s3cr3t`}}, `bob@example\.com`)
	f.Fuzz(func(t *testing.T, text string, a, b uint16) {
		for _, s := range []*masker.Scanner{word, line} {
			want := s.NewReport()
			whole := s.Mask(text, &want)
			st := s.NewStream()
			var got strings.Builder
			i := 0
			for step := 0; i < len(text); step++ {
				n := int(a)%7 + 1
				if step%2 == 1 {
					n = int(b)%5 + 1
				}
				j := min(len(text), i+n)
				got.WriteString(st.Write(text[i:j]))
				i = j
			}
			got.WriteString(st.Flush())
			if got.String() != whole {
				t.Fatalf("split %d/%d: stream %q != mask %q", a, b, got.String(), whole)
			}
			rep := st.Report()
			if !want.Any() {
				want = s.NewReport()
			}
			assert.Equal(t, want.Counts, rep.Counts)
			assert.Equal(t, want.Block, rep.Block)
		}
	})
}
