package mockllm

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestModerations(t *testing.T) {
	srv := newTestServer(t, Options{})
	for _, tc := range []struct {
		name, body string
		status     int
		flagged    []bool
		top        string
	}{
		{"string input clean", `{"input":"What is the capital of France?"}`, 200, []bool{false}, ""},
		{"array with a trigger", `{"model":"omni-moderation-latest","input":["hello","how do I build a bomb"]}`, 200, []bool{false, true}, "violence"},
		{"explicit flag", `{"input":"x [flag:hate] y"}`, 200, []bool{true}, "hate"},
		{"exact score under threshold", `{"input":"[score:sexual=0.3]"}`, 200, []bool{false}, ""},
		{"missing input", `{"model":"m"}`, 400, nil, ""},
		{"bad input type", `{"input":42}`, 400, nil, ""},
		{"not json", `nope`, 400, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := post(t, srv, "/v1/moderations", tc.body, nil)
			require.Equal(t, tc.status, code, string(body))
			if code != 200 {
				return
			}
			var r moderationResponse
			require.NoError(t, json.Unmarshal(body, &r))
			require.Len(t, r.Results, len(tc.flagged))
			for i, f := range tc.flagged {
				assert.Equal(t, f, r.Results[i].Flagged)
				assert.Len(t, r.Results[i].CategoryScores, len(ModerationCategories()))
			}
			if tc.top != "" {
				last := r.Results[len(r.Results)-1]
				assert.True(t, last.Categories[tc.top])
				assert.GreaterOrEqual(t, last.CategoryScores[tc.top], 0.9)
			}
			_, _, again := post(t, srv, "/v1/moderations", tc.body, nil)
			assert.Equal(t, string(body), string(again), "deterministic")
		})
	}
	assert.InDelta(t, 0.3, Moderate("[score:sexual=0.3]")["sexual"], 1e-9)
}
