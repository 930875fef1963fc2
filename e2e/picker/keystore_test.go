package picker

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/mockllm"
)

// TestMain builds the tollgate CLI once, before any test runs.
func TestMain(m *testing.M) { os.Exit(keystoretest.Main(m)) }

// TestPoolsFromKeystore keeps the pools in the keystore: `tollgate pools
// apply -f` stores an InferencePool, the picker (pools_source: the keystore,
// with its data-plane token) fetches GET /v1/pools and routes to it, and an
// applied change reaches the running Envoy without a restart.
func TestPoolsFromKeystore(t *testing.T) {
	const dataToken = "picker-data-token-0123456789"
	sims := startSims(t, 2, same(mockllm.SimOptions{TimeScale: 0.05}))
	ks := keystoretest.Start(t, keystoretest.Options{DataToken: dataToken, Args: []string{"--log-level", "warn"}})
	manifest := func(ss ...*sim) string {
		var b strings.Builder
		b.WriteString("apiVersion: tollgate.dev/v1\nkind: InferencePool\nmetadata:\n  name: chat\nspec:\n  models: [m]\n  endpoints:\n")
		for _, s := range ss {
			fmt.Fprintf(&b, "    - {address: %q, engine: vllm, labels: {rack: r1}}\n", s.addr)
		}
		p := filepath.Join(t.TempDir(), "pools.yaml")
		require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o600))
		return p
	}
	assert.Equal(t, "inferencepool/chat created\n", ks.CLI(t, "pools", "apply", "-f", manifest(sims[0])))

	e := startEnvoy(t, sims, modeOriginalDst, `{"scrape_cluster":"sim","scrape_interval":"50ms","fallbacks":0,`+
		`"pools_source":{"cluster":"keystore","token":"`+dataToken+`","interval":"200ms"}}`,
		envoytest.Cluster{Name: "keystore", Addr: ks.DataAddr()})

	// onlyTo: six requests in a row are all served by s.
	onlyTo := func(s *sim) func() bool {
		return func() bool {
			for i := 0; i < 6; i++ {
				before := s.posts.Load()
				if r := chat(t, e, "m", "sys", "pool", 2, nil); r.status != 200 || s.posts.Load() != before+1 {
					return false
				}
			}
			return true
		}
	}
	envoytest.Eventually(t, 10*time.Second, onlyTo(sims[0]), "the applied pool (first server) never took effect")
	assert.Zero(t, sims[1].posts.Load(), "the server outside the pool got requests")

	assert.Equal(t, "inferencepool/chat configured\n", ks.CLI(t, "pools", "apply", "-f", manifest(sims[1])))
	envoytest.Eventually(t, 10*time.Second, onlyTo(sims[1]), "the changed pool (second server) never reached the running Envoy")

	assert.Equal(t, "inferencepool/chat unchanged\n", ks.CLI(t, "pools", "apply", "-f", manifest(sims[1])))
	require.True(t, onlyTo(sims[1])())

	// Deleting the last pool leaves no endpoint for the model: a clear 503, not a hang.
	ks.CLI(t, "pools", "delete", "chat")
	envoytest.Eventually(t, 10*time.Second, func() bool {
		r := chat(t, e, "m", "sys", "gone", 2, nil)
		return r.status == 503 && errorCode(t, r.body) == "no_endpoint_available"
	}, "a deleted pool still served")
	assert.Zero(t, stat(t, e, "tollgate_picker.decisions.pools_source_errors"), "every keystore answer was accepted")
	e.RequireNoCrash(t)
}
