package route

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/reqview"
)

func TestExtractModel(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		want     string
		wantCode string
	}{
		{"simple", `{"model":"gpt-4o","messages":[]}`, "gpt-4o", ""},
		{"leading whitespace", " \n\t{\"messages\":[],\"model\" : \"m\"}\n", "m", ""},
		{"escaped value", `{"model":"gemma\u002d3"}`, "gemma-3", ""},
		{"escaped key", `{"mod\u0065l":"m"}`, "", CodeInvalidModel},
		{"case variant key", `{"model":"gemma","Model":"llama"}`, "", reqview.CodeAmbiguousJSON},
		{"lone case variant", `{"Model":"llama"}`, "", CodeInvalidModel},
		{"max_tokens variant", `{"model":"m","max_tokens":1,"Max_tokens":40}`, "", reqview.CodeAmbiguousJSON},
		{"deep content", `{"model":"m","messages":[{"role":"user","content":` + strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat(`}`, 5000) + `}]}`, "", reqview.CodeTooDeep},
		{"nested model ignored", `{"tools":[{"model":"x"}],"model":"m"}`, "m", ""},
		{"slash", `{"model":"\/gcs\/google"}`, "/gcs/google", ""},
		{"empty body", ``, "", CodeInvalidJSON},
		{"garbage", `model=gpt`, "", CodeInvalidJSON},
		{"truncated", `{"model":"m"`, "", CodeInvalidJSON},
		{"trailing garbage", `{"model":"m"} x`, "", CodeInvalidJSON},
		{"array", `[{"model":"m"}]`, "", CodeInvalidJSON},
		{"string", `"m"`, "", CodeInvalidJSON},
		{"no model", `{"messages":[]}`, "", CodeMissingModel},
		{"null model", `{"model":null}`, "", CodeMissingModel},
		{"empty model", `{"model":""}`, "", CodeMissingModel},
		{"number model", `{"model":4}`, "", CodeInvalidModel},
		{"object model", `{"model":{"name":"m"}}`, "", CodeInvalidModel},
		{"duplicate model", `{"model":"a","model":"b"}`, "", reqview.CodeAmbiguousJSON},
		{"duplicate via escape", `{"model":"a","mod\u0065l":"b"}`, "", reqview.CodeAmbiguousJSON},
		{"long model", `{"model":"` + strings.Repeat("m", 257) + `"}`, "", CodeInvalidModel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bm, err := ExtractModel([]byte(tt.body), reqview.Limits{})
			if tt.wantCode != "" {
				require.NotNil(t, err)
				assert.Equal(t, tt.wantCode, err.Code)
				assert.Equal(t, 400, err.Status)
				assert.NotEmpty(t, err.Message)
				return
			}
			require.Nil(t, err)
			assert.Equal(t, tt.want, bm.Name)
			tok := tt.body[bm.Start:bm.End]
			var s string
			require.NoError(t, json.Unmarshal([]byte(tok), &s), "token %q", tok)
			assert.Equal(t, tt.want, s)
		})
	}
}

func TestReplaceModelKeepsEverythingElse(t *testing.T) {
	body := loadFixture(t, "chat.json")
	bm, aerr := ExtractModel(body, reqview.Limits{})
	require.Nil(t, aerr)
	require.Equal(t, "gemma", bm.Name)

	out := ReplaceModel(body, bm, "/gcs/google/gemma-3-1b-it")
	require.True(t, json.Valid(out))
	var before, after map[string]any
	require.NoError(t, json.Unmarshal(body, &before))
	require.NoError(t, json.Unmarshal(out, &after))
	assert.Equal(t, "/gcs/google/gemma-3-1b-it", after["model"])
	before["model"] = after["model"]
	assert.Equal(t, before, after, "only the model changed")
	assert.Equal(t, len(body)-len(`"gemma"`)+len(`"/gcs/google/gemma-3-1b-it"`), len(out))
	assert.Equal(t, string(body[:bm.Start]), string(out[:bm.Start]), "bytes before the model are kept")
}

func TestIsJSONContentType(t *testing.T) {
	tests := []struct {
		ct   string
		want bool
	}{
		{"application/json", true},
		{"Application/JSON; charset=utf-8", true},
		{" application/json ;charset=UTF-8", true},
		{"application/vnd.api+json", true},
		{"", false},
		{"text/plain", false},
		{"application/x-www-form-urlencoded", false},
		{"multipart/form-data; boundary=x", false},
		{"application/jsonp", false},
		{"text/json+json", false},
	}
	for _, tt := range tests {
		t.Run(tt.ct, func(t *testing.T) {
			assert.Equal(t, tt.want, IsJSONContentType(tt.ct))
		})
	}
}

func FuzzExtractModel(f *testing.F) {
	f.Add(loadFixture(f, "chat.json"), "x")
	f.Add([]byte(`{"model":"m"}`), "/gcs/google/gemma-3-1b-it")
	f.Add([]byte(` {"a":[1,{"model":2}],"model":"\u00e9"} `), "quote\"and\\slash")
	f.Add([]byte(`{"model":"a","model":"b"}`), "")
	f.Fuzz(func(t *testing.T, body []byte, replacement string) {
		bm, aerr := ExtractModel(body, reqview.Limits{})
		if aerr != nil {
			require.GreaterOrEqual(t, aerr.Status, 400)
			require.NotEmpty(t, aerr.Code)
			return
		}
		require.True(t, json.Valid(body))
		require.NotEmpty(t, bm.Name)
		out := ReplaceModel(body, bm, replacement)
		require.True(t, json.Valid(out), "rewritten body is valid JSON")
		again, aerr := ExtractModel(out, reqview.Limits{})
		if replacement == "" {
			require.NotNil(t, aerr)
			return
		}
		if len(replacement) > maxModelLen {
			require.NotNil(t, aerr)
			return
		}
		require.Nil(t, aerr)
		// json.Marshal turns invalid UTF-8 into U+FFFD; compare with that.
		want, _ := json.Marshal(replacement)
		var ws string
		require.NoError(t, json.Unmarshal(want, &ws))
		require.Equal(t, ws, again.Name)
		require.Equal(t, len(body)-(bm.End-bm.Start)+len(want), len(out))
	})
}
