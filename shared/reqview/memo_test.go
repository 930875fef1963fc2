package reqview

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemoParsesOnceAndOnlyWhereItProvesTheAnswer(t *testing.T) {
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	deep := []byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`)
	for _, tc := range []struct {
		name   string
		body1  []byte
		first  Limits
		second Limits
		body2  []byte
		same   bool // the second call returns the first call's view
		err2   bool
	}{
		{"same body and limits", body, Limits{}, Limits{}, body, true, false},
		{"an equal copy of the body", body, Limits{}, Limits{}, append([]byte(nil), body...), true, false},
		{"a replaced body", body, Limits{}, Limits{}, []byte(`{"model":"n"}`), false, false},
		{"a looser depth limit", body, Limits{MaxDepth: 8}, Limits{MaxDepth: 64}, body, true, false},
		{"a stricter depth limit parses again", deep, Limits{MaxDepth: 64}, Limits{MaxDepth: 3}, deep, false, true},
		{"a size limit the body exceeds parses again", body, Limits{}, Limits{MaxBytes: 10}, body, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Memo
			r1, err := m.ParseRequest(tc.body1, tc.first)
			require.NoError(t, err)
			r2, err := m.ParseRequest(tc.body2, tc.second)
			if tc.err2 {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.same, r1 == r2)
			want, err := ParseRequest(tc.body2, tc.second)
			require.NoError(t, err)
			assert.Equal(t, want.Model, r2.Model)
		})
	}
}

func TestMemoForgetsRefusalsAndResets(t *testing.T) {
	var m Memo
	_, err := m.ParseRequest([]byte(`{"model":`), Limits{})
	require.Error(t, err)
	good := []byte(`{"model":"m"}`)
	r1, err := m.ParseRequest(good, Limits{})
	require.NoError(t, err)
	m.Reset()
	r2, err := m.ParseRequest(good, Limits{})
	require.NoError(t, err)
	assert.NotSame(t, r1, r2)
	var nilMemo *Memo
	r3, err := nilMemo.ParseRequest(good, Limits{})
	require.NoError(t, err)
	assert.Equal(t, "m", r3.Model)
}

func TestMemoViewSurvivesTheCallerChangingItsBody(t *testing.T) {
	var m Memo
	body := []byte(`{"model":"alpha"}`)
	r1, err := m.ParseRequest(body, Limits{})
	require.NoError(t, err)
	copy(body[10:15], "omega") // the first caller rewrites its own slice in place
	assert.Equal(t, "alpha", r1.ModelValue.Str())
	r2, err := m.ParseRequest([]byte(`{"model":"omega"}`), Limits{})
	require.NoError(t, err)
	assert.Equal(t, "omega", r2.Model, "the changed body is another body")
}
