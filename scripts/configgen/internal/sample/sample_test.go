package sample

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/config"
)

func TestDecodeEveryForm(t *testing.T) {
	doc := `{
	  "cluster": "ks", "token": "tok", "region": "eu",
	  "name": "n", "level": "high", "count": -3, "big": 18446744073709551615, "ratio": 0.5,
	  "on": false, "wait": "250ms", "when": "2026-01-02T15:04:05Z",
	  "tags": ["a", "b"], "groups": [["x"], [], ["y", "z"]],
	  "labels": {"k": "v"}, "lists": {"l": [1, 2]},
	  "child": {"id": 1, "note": "c"}, "kids": [{"id": 2}, null], "by_name": {"k": {"id": 3}},
	  "maybe": {"note": "m"}, "Untagged": "u"
	}`
	var r Root
	require.NoError(t, config.Decode([]byte(doc), &r))
	assert.Equal(t, "ks", r.Cluster)
	assert.Equal(t, "tok", r.Token.Reveal())
	assert.Equal(t, "eu", r.Region)
	assert.Equal(t, Level("high"), r.Level)
	assert.Equal(t, Count(-3), r.Count)
	assert.Equal(t, uint64(18446744073709551615), r.Big)
	assert.Equal(t, 0.5, r.Ratio)
	require.NotNil(t, r.On)
	assert.False(t, *r.On)
	assert.Equal(t, config.Duration(250*time.Millisecond), r.Wait)
	assert.True(t, r.When.Equal(time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)))
	assert.Equal(t, []string{"a", "b"}, r.Tags)
	assert.Equal(t, [][]string{{"x"}, {}, {"y", "z"}}, r.Groups)
	assert.Equal(t, map[string]string{"k": "v"}, r.Labels)
	assert.Equal(t, map[string][]int64{"l": {1, 2}}, r.Lists)
	assert.Equal(t, Child{ID: 1, Note: "c"}, r.Child)
	require.Len(t, r.Kids, 2)
	assert.Equal(t, &Child{ID: 2}, r.Kids[0])
	assert.Nil(t, r.Kids[1])
	assert.Equal(t, map[string]*Child{"k": {ID: 3}}, r.ByName)
	assert.Equal(t, &Child{Note: "m"}, r.Maybe)
	assert.Equal(t, "u", r.Untagged)
	assert.Empty(t, r.Unexported())
}

func TestDecodeRefusals(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"unknown field", `{"nmae": "x"}`, `unknown field "nmae"`},
		{"case variant", `{"Name": "x"}`, `unknown field "Name"`},
		{"go name of a tagged field", `{"Tags": []}`, `unknown field "Tags"`},
		{"lower-case untagged", `{"untagged": "x"}`, `unknown field "untagged"`},
		{"skipped field", `{"Skipped": "x"}`, `unknown field "Skipped"`},
		{"unknown nested", `{"child": {"id": 1, "x": 2}}`, `child: unknown field "x"`},
		{"unknown in slice element", `{"kids": [{}, {"y": 1}]}`, `kids[1]: unknown field "y"`},
		{"unknown in map value", `{"by_name": {"k": {"z": 1}}}`, `by_name["k"]: unknown field "z"`},
		{"unknown in embedded's place", `{"timeout_ms": 5}`, `unknown field "timeout_ms"`},
		{"wrong type", `{"name": 1}`, "name: cannot unmarshal number, want a string"},
		{"wrong element type", `{"groups": [["x", 2]]}`, "groups[0][1]: cannot unmarshal number"},
		{"wrong map element", `{"lists": {"l": ["1"]}}`, `lists["l"][0]: cannot unmarshal string`},
		{"overflow of a named int32", `{"count": 2147483648}`, "count: number 2147483648 overflows"},
		{"negative uint", `{"big": -1}`, "big: number -1 is out of range"},
		{"fraction for an int", `{"count": 1.5}`, "count: cannot unmarshal number 1.5"},
		{"exponent for an int", `{"child": {"id": 1e3}}`, "child.id: cannot unmarshal number 1e3"},
		{"bad duration", `{"wait": 5}`, "wait: cannot unmarshal number 5"},
		{"bad time", `{"when": "yesterday"}`, `when: "yesterday" is not an RFC 3339 time`},
		{"object for a list", `{"tags": {}}`, "tags: cannot unmarshal object, want an array"},
		{"duplicate key", `{"name": "a", "name": "b"}`, `duplicate key "name"`},
		{"keys differing in case", `{"child": {"id": 1, "ID": 2}}`, "differ only in case"},
		{"token of the wrong type", `{"token": 5}`, "token: cannot unmarshal number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Root
			err := config.Decode([]byte(tt.doc), &r)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestNullKeepsOrClears(t *testing.T) {
	var r Root
	require.NoError(t, config.Decode([]byte(`{"name": "a", "tags": ["x"], "maybe": {}}`), &r))
	require.NoError(t, config.Decode([]byte(`{"name": null, "tags": null, "maybe": null}`), &r))
	assert.Equal(t, "a", r.Name, "null leaves a scalar as it was")
	assert.Nil(t, r.Tags, "null clears a slice")
	assert.Nil(t, r.Maybe, "null clears a pointer")
}

// FuzzDecode: any document decodes or is refused, never a panic.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"kids": [{"id": 1}], "lists": {"a": [1]}, "groups": [[]], "when": "2026-01-02T15:04:05Z"}`))
	f.Add([]byte(`{"by_name": {"k": null}, "maybe": null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Root
		_ = config.Decode(b, &r)
	})
}
