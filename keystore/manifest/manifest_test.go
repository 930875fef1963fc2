package manifest

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/keystore/model"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(name)
	require.NoError(t, err)
	return raw
}

func TestParseValid(t *testing.T) {
	docs, err := Parse("valid.yaml", read(t, "testdata/valid.yaml"))
	require.NoError(t, err)
	require.Len(t, docs, 3)

	set := docs[0]
	assert.Equal(t, KindOperationSet, set.Kind)
	assert.Equal(t, "apioperationset/openai-inference", set.Ref())
	assert.Equal(t, Position{File: "valid.yaml", Line: 3, Column: 7}, set.Pos)
	require.NotNil(t, set.OperationSet)
	assert.Equal(t, []string{"POST"}, set.OperationSet.Operations[1].Methods, "methods are upper-cased")
	assert.Equal(t, &model.Quota{Limit: 600, Interval: 1, TimeUnit: "minute", Window: "calendar"}, set.OperationSet.Operations[2].RequestQuota)

	chat := docs[1].Product
	require.NotNil(t, chat)
	assert.Equal(t, "chat", chat.Name)
	assert.Equal(t, []string{"openai-inference"}, chat.OperationSets)
	assert.Equal(t, []string{"gemma-3-1b-it", "llama-*"}, chat.AllowedModels)
	assert.Equal(t, &model.Quota{Limit: 60, Interval: 1, TimeUnit: "minute", Window: "calendar"}, chat.RequestQuota)
	assert.Equal(t, &model.Quota{Limit: 100000, Interval: 1, TimeUnit: "hour", Window: "rolling", Counted: "total"}, chat.TokenQuota)
	assert.Equal(t, map[string]string{"tier": "free"}, chat.Attributes)
	assert.Equal(t, "everything", docs[2].Name)
}

func TestParseExampleProducts(t *testing.T) {
	docs, err := Parse("examples/products.yaml", read(t, "../../examples/products.yaml"))
	require.NoError(t, err)
	var products []string
	for _, d := range docs {
		if d.Product != nil {
			products = append(products, d.Name)
		}
	}
	assert.Contains(t, products, "chat")
}

func TestParseInvalidReportsEveryProblem(t *testing.T) {
	_, err := Parse("invalid.yaml", read(t, "testdata/invalid.yaml"))
	var errs Errors
	require.True(t, errors.As(err, &errs), "%v", err)
	want := []string{
		`invalid.yaml:4:9: metadata.name: "Bad Name" is not a valid name`,
		`invalid.yaml:7:13: spec.operations[0].path: "v1/chat" must start with '/'`,
		`invalid.yaml:8:23: spec.operations[0].methods[1]: "G T" is not an HTTP method`,
		`invalid.yaml:9:19: spec.allowedModels[0]: "a*b": '*' may only end the pattern`,
		`invalid.yaml:11:12: spec.requestQuota.limit: must be between 1`,
		`invalid.yaml:12:15: spec.requestQuota.timeUnit: must be one of minute, hour, day, month, got "week"`,
		`invalid.yaml:16:14: spec.tokenQuota.counted: must be one of total, prompt, completion, cost, got "bytes"`,
		`invalid.yaml:23:3: spec.operations: an operation set needs at least one operation`,
	}
	require.Len(t, errs, len(want), err.Error())
	for i, w := range want {
		assert.True(t, strings.HasPrefix(errs[i].Error(), w), "got  %s\nwant %s", errs[i].Error(), w)
	}
}

func TestParseErrors(t *testing.T) {
	const head = "apiVersion: tollgate.dev/v1\nkind: APIProduct\nmetadata:\n  name: chat\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"bad yaml", "kind: [unclosed\n", "f.yaml:1: invalid YAML: did not find expected ',' or ']'"},
		{"tab indentation", "kind: APIProduct\n\tspec: 1\n", "f.yaml:2: invalid YAML: found a tab character"},
		{"duplicate key", "kind: a\nkind: b\n", `f.yaml:2:1: duplicate key "kind" (first at line 1)`},
		{"duplicate nested key", head + "spec:\n  operations: [{path: /, path: /x}]\n", `f.yaml:6:26: duplicate key "path" (first at line 6)`},
		{"not a mapping", "- a\n- b\n", "f.yaml:1:1: document must be a mapping"},
		{"unknown top field", head + "spec: {operations: [{path: /}]}\nstatus: {}\n", `f.yaml:6:1: document: unknown field "status" (allowed: apiVersion, kind, metadata, spec)`},
		{"missing apiVersion", "kind: APIProduct\nmetadata: {name: x}\nspec: {}\n", `f.yaml:1:1: missing "apiVersion"`},
		{"wrong apiVersion", "apiVersion: v1\nkind: APIProduct\nmetadata: {name: x}\nspec: {}\n", `f.yaml:1:13: apiVersion "v1" is not supported; use "tollgate.dev/v1"`},
		{"wrong kind", "apiVersion: tollgate.dev/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {}\n", `f.yaml:2:7: kind "Deployment" is not supported`},
		{"kind not a string", "apiVersion: tollgate.dev/v1\nkind: [a]\nmetadata: {name: x}\nspec: {}\n", `f.yaml:2:7: kind must be a string`},
		{"missing metadata", "apiVersion: tollgate.dev/v1\nkind: APIProduct\nspec: {}\n", `f.yaml:1:1: missing "metadata" with a name`},
		{"missing name", "apiVersion: tollgate.dev/v1\nkind: APIProduct\nmetadata: {labels: {a: b}}\nspec: {}\n", `f.yaml:3:11: metadata: missing "name"`},
		{"unknown metadata", "apiVersion: tollgate.dev/v1\nkind: APIProduct\nmetadata: {name: x, namespace: y}\nspec: {operations: [{path: /}]}\n", `f.yaml:3:21: metadata: unknown field "namespace"`},
		{"missing spec", head, `f.yaml:1:1: missing "spec"`},
		{"unknown spec field", head + "spec:\n  operations: [{path: /}]\n  quota: {limit: 1}\n", `f.yaml:7:3: spec: unknown field "quota" (allowed: displayName, description, operations, operationSets, allowedModels, requestQuota, tokenQuota, attributes)`},
		{"unknown nested field", head + "spec:\n  operations:\n    - path: /\n      verb: GET\n", `f.yaml:8:7: spec.operations[0]: unknown field "verb" (allowed: path, methods, requestQuota, tokenQuota)`},
		{"name in spec", head + "spec:\n  name: other\n  operations: [{path: /}]\n", `f.yaml:6:3: spec: unknown field "name"`},
		{"timestamps in spec", head + "spec:\n  createdAt: 2020-01-01\n  operations: [{path: /}]\n", `f.yaml:6:3: spec: unknown field "createdAt"`},
		{"operations not a list", head + "spec:\n  operations: {path: /}\n", `f.yaml:6:15: spec.operations must be a list, got a mapping`},
		{"methods not a list", head + "spec:\n  operations: [{path: /, methods: GET}]\n", `f.yaml:6:35: spec.operations[0].methods must be a list, got a string`},
		{"limit not an integer", head + "spec:\n  operations: [{path: /}]\n  requestQuota: {limit: ten, timeUnit: minute}\n", `f.yaml:7:25: spec.requestQuota.limit must be an integer, got a string`},
		{"limit float", head + "spec:\n  operations: [{path: /}]\n  requestQuota: {limit: 1.5, timeUnit: minute}\n", `f.yaml:7:25: spec.requestQuota.limit must be an integer, got a number`},
		{"limit overflow", head + "spec:\n  operations: [{path: /}]\n  requestQuota: {limit: 99999999999999999999, timeUnit: minute}\n", `f.yaml:7:25: spec.requestQuota.limit: "99999999999999999999" is out of range`},
		{"attributes not strings", head + "spec:\n  operations: [{path: /}]\n  attributes: {a: [1]}\n", `f.yaml:7:19: spec.attributes.a must be a string, got a list`},
		{"path is a mapping", head + "spec:\n  operations: [{path: {a: b}}]\n", `f.yaml:6:23: spec.operations[0].path must be a string, got a mapping`},
		{"no operations", head + "spec:\n  description: x\n", `f.yaml:6:3: spec.operations: a product needs at least one operation`},
		{"alias", head + "spec:\n  operations: &ops [{path: /}]\n---\n" + strings.Replace(head, "chat", "b", 1) + "spec:\n  operations: *ops\n", `f.yaml:13:15: YAML aliases (*ops) are not supported`},
		{"merge key", head + "spec:\n  <<: {description: x}\n  operations: [{path: /}]\n", `f.yaml:6:3: YAML merge keys (<<) are not supported`},
		{"duplicate document", head + "spec: {operations: [{path: /}]}\n---\n" + head + "spec: {operations: [{path: /}]}\n", `f.yaml:8:7: apiproduct/chat is defined twice (first at line 2)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tt.yaml))
			require.Error(t, err)
			var errs Errors
			require.True(t, errors.As(err, &errs))
			assert.True(t, strings.HasPrefix(errs[0].Error(), tt.want), "got  %s\nwant %s", err.Error(), tt.want)
		})
	}
}

func TestParseEdgeCases(t *testing.T) {
	docs, err := Parse("empty.yaml", nil)
	require.NoError(t, err)
	assert.Empty(t, docs)
	docs, err = Parse("only-separators.yaml", []byte("---\n---\n# comment\n"))
	require.NoError(t, err)
	assert.Empty(t, docs)

	_, err = Parse("big.yaml", make([]byte, MaxBytes+1))
	require.ErrorContains(t, err, "larger than")

	docs, err = Parse("f.yaml", []byte("apiVersion: tollgate.dev/v1\nkind: APIProduct\nmetadata: {name: x}\nspec:\n  operations: [{path: /, requestQuota: null}]\n  allowedModels: null\n"))
	require.NoError(t, err)
	assert.Nil(t, docs[0].Product.Operations[0].RequestQuota)
}

func TestPositionString(t *testing.T) {
	assert.Equal(t, "f", Position{File: "f"}.String())
	assert.Equal(t, "f:3", Position{File: "f", Line: 3}.String())
	assert.Equal(t, "f:3:4", Position{File: "f", Line: 3, Column: 4}.String())
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/valid.yaml", "testdata/invalid.yaml", "../../examples/pools.yaml", "../../cmd/tollgate/testdata/invalid-pools.yaml"} {
		raw, err := os.ReadFile(name)
		require.NoError(f, err)
		f.Add(raw)
	}
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("apiVersion: tollgate.dev/v1\nkind: APIProduct\nmetadata: {name: x}\nspec: {operations: [{path: /, methods: [GET]}], requestQuota: {limit: 0x10, timeUnit: day}}\n"))
	f.Add([]byte("--- !!binary\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := Parse("fuzz.yaml", data)
		if err != nil {
			var errs Errors
			require.True(t, errors.As(err, &errs), "errors are always positioned: %v", err)
			require.NotEmpty(t, errs)
			for _, e := range errs {
				require.Equal(t, "fuzz.yaml", e.Pos.File)
				require.NotEmpty(t, e.Msg)
			}
			return
		}
		// Whatever parses cleanly is valid by the model's own rules.
		for _, d := range docs {
			switch {
			case d.Product != nil:
				require.NoError(t, d.Product.Validate().Err())
				require.Equal(t, d.Name, d.Product.Name)
			case d.OperationSet != nil:
				require.NoError(t, d.OperationSet.Validate().Err())
			case d.Pool != nil:
				require.NoError(t, d.Pool.Validate().Err())
				require.Equal(t, d.Name, d.Pool.Name)
			default:
				t.Fatalf("document %s has no body", d.Ref())
			}
		}
	})
}

func TestParseReportsTypeAndValueErrorsTogether(t *testing.T) {
	src := "apiVersion: tollgate.dev/v1\nkind: APIProduct\nmetadata: {name: x}\nspec:\n" +
		"  operations: [{path: nope, verb: GET}]\n" +
		"  requestQuota: {limit: lots, timeUnit: week}\n" +
		"  allowedModels: {a: b}\n"
	_, err := Parse("f.yaml", []byte(src))
	var errs Errors
	require.True(t, errors.As(err, &errs))
	got := make([]string, len(errs))
	for i, e := range errs {
		got[i] = e.Error()
	}
	assert.Equal(t, []string{
		`f.yaml:5:23: spec.operations[0].path: "nope" must start with '/'`,
		`f.yaml:5:29: spec.operations[0]: unknown field "verb" (allowed: path, methods, requestQuota, tokenQuota)`,
		`f.yaml:6:25: spec.requestQuota.limit must be an integer, got a string`,
		`f.yaml:6:41: spec.requestQuota.timeUnit: must be one of minute, hour, day, month, got "week"`,
		`f.yaml:7:18: spec.allowedModels must be a list, got a mapping`,
	}, got, "type errors do not hide value errors, and pruned fields add no noise")
}
