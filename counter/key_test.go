package counter

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/window"
)

func TestKeyCanonical(t *testing.T) {
	cases := []struct {
		name string
		key  Key
		want string
	}{
		{"full", Key{App: "app1", Product: "gold", Operation: "chat", Kind: Requests}, "app1/gold/chat/requests"},
		{"no operation", Key{App: "app1", Product: "gold", Kind: Tokens}, "app1/gold//tokens"},
		{"app only", Key{App: "ip:10.0.0.1", Kind: Requests}, "ip:10.0.0.1///requests"},
		{"separators escaped", Key{App: "a/b", Product: "c|d", Operation: "{e} f%", Kind: "cost"}, "a%2Fb/c%7Cd/%7Be%7D%20f%25/cost"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, tc.key.Validate())
			assert.Equal(t, tc.want, tc.key.String())
			back, err := ParseKey(tc.want)
			require.NoError(t, err)
			assert.Equal(t, tc.key, back)
		})
	}
}

func TestKeyValidation(t *testing.T) {
	long := strings.Repeat("x", MaxKeyPart+1)
	cases := []struct {
		name    string
		key     Key
		wantErr string
	}{
		{"missing app", Key{Kind: Requests}, "app is required"},
		{"long app", Key{App: long, Kind: Requests}, "app is longer"},
		{"long product", Key{App: "a", Product: long, Kind: Requests}, "product is longer"},
		{"operation without product", Key{App: "a", Operation: "op", Kind: Requests}, "needs a product"},
		{"missing kind", Key{App: "a"}, "kind must be"},
		{"bad kind", Key{App: "a", Kind: "Tokens!"}, "may hold only"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.key.Validate()
			require.ErrorIs(t, err, ErrInvalidKey)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func TestReservationIDRoundTrip(t *testing.T) {
	k := Key{App: "a b", Product: "p", Operation: "o", Kind: Tokens}
	s := window.Spec{Limit: 1000, Interval: 1, Unit: window.Minute, Kind: window.Rolling}
	tok, err := newToken()
	require.NoError(t, err)
	id := encodeID(k, s, tok)
	assert.NotContains(t, id, "=")
	k2, s2, tok2, err := decodeID(id)
	require.NoError(t, err)
	assert.Equal(t, k, k2)
	assert.Equal(t, s, s2)
	assert.Equal(t, tok, tok2)
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"app1/gold/chat/requests", "a%2Fb///tokens", "%zz///x", "////", "a/b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			return
		}
		if k.Validate() != nil {
			t.Fatalf("ParseKey(%q) returned an invalid key", s)
		}
		again, err := ParseKey(k.String())
		if err != nil || again != k {
			t.Fatalf("canonical round trip of %q: %+v %v", s, again, err)
		}
	})
}

func FuzzDecodeReservationID(f *testing.F) {
	f.Add(encodeID(Key{App: "a", Kind: Tokens}, window.Spec{Limit: 5, Interval: 1, Unit: window.Day, Kind: window.Calendar}, strings.Repeat("ab", 12)))
	f.Add("")
	f.Add("YWJj")
	f.Fuzz(func(t *testing.T, id string) {
		k, s, tok, err := decodeID(id)
		if err != nil {
			return
		}
		if k.Validate() != nil || s.Validate() != nil || len(tok) != 24 {
			t.Fatalf("decodeID(%q) accepted invalid parts", id)
		}
	})
}
