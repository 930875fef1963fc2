package manifest

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/keystore/model"
)

func TestParseExamplePools(t *testing.T) {
	docs, err := Parse("examples/pools.yaml", read(t, "../../examples/pools.yaml"))
	require.NoError(t, err)
	require.Len(t, docs, 2)
	llama := docs[0]
	assert.Equal(t, "inferencepool/llama-3-8b", llama.Ref())
	require.NotNil(t, llama.Pool)
	assert.Equal(t, []string{"sql-lora", "chat-lora"}, llama.Pool.Adapters)
	assert.Equal(t, model.PoolEndpoint{Address: "10.0.1.11:8000", Engine: "vllm", Labels: map[string]string{"zone": "eu-west-1b", "gpu": "h100"}},
		llama.Pool.Endpoints[1], "the engine defaults to vllm")
	assert.Equal(t, "[fd00:2::21]:30000", docs[1].Pool.Endpoints[1].Address)
}

func TestParsePoolErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"endpoints not a list", "spec:\n  endpoints: 10.0.0.1:80\n", "p.yaml:6:14: spec.endpoints must be a list, got a string"},
		{"port as a number", "spec:\n  endpoints: [{address: 10.0.0.1:80, labels: {rack: 7}}]\n", ""},
		{"labels not strings", "spec:\n  endpoints: [{address: \"10.0.0.1:80\", labels: {rack: [1]}}]\n", "spec.endpoints[0].labels.rack must be a string, got a list"},
		{"bad address", "spec:\n  endpoints: [{address: \"10.0.0.1:99999\"}]\n", "p.yaml:6:25: spec.endpoints[0].address: \"10.0.0.1:99999\" is not ip:port"},
		{"no endpoints", "spec:\n  models: [m]\n", "spec.endpoints: a pool needs at least one endpoint"},
		{"bad name", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := "pool"
			if tc.name == "bad name" {
				name, tc.yaml, tc.want = "Pool!", "spec:\n  endpoints: [{address: \"10.0.0.1:80\"}]\n", "metadata.name: \"Pool!\" is not a valid name"
			}
			doc := "apiVersion: tollgate.dev/v1\nkind: InferencePool\nmetadata:\n  name: " + name + "\n" + tc.yaml
			_, err := Parse("p.yaml", []byte(doc))
			if tc.want == "" {
				require.NoError(t, err, "YAML scalars read as strings where the field is one")
				return
			}
			var errs Errors
			require.True(t, errors.As(err, &errs), "%v", err)
			assert.Contains(t, errs.Error(), tc.want)
		})
	}
}
