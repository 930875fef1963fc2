package policy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/keystore/model"
)

// fullGrant sets every field the cache carries, with characters that need
// escaping.
func fullGrant() *Grant {
	return &Grant{
		KeyID: "key_1", App: "demo \"app\"\n", Developer: "dev@example.com", Products: []string{"chat", "émbed"},
		Entitlements: []model.Entitlement{{
			Product: "chat",
			Operations: []model.OperationGrant{
				{Path: "/v1/chat/completions", Methods: []string{"POST"},
					RequestQuota: &model.QuotaSpec{Limit: 10, Interval: 1, TimeUnit: "minute", Window: "rolling", Scope: "app"},
					TokenQuota:   &model.QuotaSpec{Limit: 1000, Interval: 1, TimeUnit: "hour", Counted: "total", Scope: "operation"}},
				{Path: "/v1/models/**", Methods: nil},
			},
			AllowedModels: []string{"gpt-*"},
			Attributes:    map[string]string{"tier": "gold", "x\\y": "1"},
		}, {Product: "empty"}},
		ExpiresAt: time.Date(2027, 3, 4, 5, 6, 7, 123456789, time.UTC),
	}
}

// TestAnswerRoundTrip: what Encode writes for the cache, DecodeAnswer reads
// back field for field (the JSON is written by hand, read by the generated
// decoder).
func TestAnswerRoundTrip(t *testing.T) {
	for _, g := range []*Grant{fullGrant(), {App: "minimal"}} {
		enc, err := Answer{Kind: Granted, Grant: g}.Encode()
		require.NoError(t, err)
		back, err := DecodeAnswer(enc)
		require.NoError(t, err, "%s", enc)
		require.Equal(t, Granted, back.Kind)
		assert.True(t, g.ExpiresAt.Equal(back.Grant.ExpiresAt))
		back.Grant.ExpiresAt = g.ExpiresAt
		assert.Equal(t, g, back.Grant, "%s", enc)
	}
	_, err := DecodeAnswer(append([]byte{byte(Granted)}, `{"a":"x","zz":1}`...))
	assert.ErrorIs(t, err, ErrBadEntry, "an unknown field in a cached grant is refused")
}

// BenchmarkAnswerRoundTrip is one cache write and one cache read of a
// granted answer (shared-data value encode and decode).
func BenchmarkAnswerRoundTrip(b *testing.B) {
	a := Answer{Kind: Granted, Grant: fullGrant()}
	b.ReportAllocs()
	for b.Loop() {
		enc, err := a.Encode()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecodeAnswer(enc); err != nil {
			b.Fatal(err)
		}
	}
}
