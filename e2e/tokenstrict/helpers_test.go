// Package tokenstrict tests strict token quotas (the tokencount filter,
// build/tokencount.wasm, with strict.enabled) in real Envoy with two
// workers, in front of the real counter engine (`tollgate serve` with an
// embedded store) and an upstream that reports the worst usage a request
// permits: 64 concurrent streams never overshoot the budget (with and
// without clamp_max_tokens, with case-variant smuggling attempts), hostile
// usage is charged the bound, unmetered endpoints are refused, and a
// keystore restart in the middle of 32 streams loses no charge. It is a
// package of its own so that each e2e package stays under a minute.
package tokenstrict

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tollgate/tollgate/internal/jsontest"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/filters/tokencount/meter"
)

func TestMain(m *testing.M) { os.Exit(keystoretest.Main(m)) }

// chatBody is a chat request without its closing brace (so cases can add
// members), with max_tokens 256.
const chatBody = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a concise assistant for an online bookshop. Answer in at most three sentences."},{"role":"user","content":"Do you ship to Canada, and how long does delivery usually take?"}],"max_tokens":256`

// keystore is one `tollgate serve` on loopback with an embedded store.
type keystore struct {
	*keystoretest.Server
	dataAddr string
}

func startKeystore(t testing.TB) *keystore {
	t.Helper()
	s := keystoretest.Start(t, keystoretest.Options{Args: []string{"--log-level", "warn"}})
	return &keystore{Server: s, dataAddr: s.DataAddr()}
}

// used asks the counter engine for a team's counter without counting
// (consume n=0).
func (k *keystore) used(t testing.TB, team string, limit int64) int64 {
	t.Helper()
	body := fmt.Sprintf(`{"items":[{"key":{"app":%q,"product":%q,"kind":"tokens"},"spec":{"limit":%d,"interval":1,"timeUnit":"hour","window":"calendar"},"n":0}]}`,
		team, meter.DefaultStaticProduct, limit)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+k.dataAddr+meter.PathConsume, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode, "%s", b)
	return jsontest.Get(b, "results.0.used").Int()
}

// waitUsed polls the counter until cond holds (bounded).
func (k *keystore) waitUsed(t testing.TB, team string, limit int64, what string, cond func(int64) bool) int64 {
	t.Helper()
	var got int64
	envoytest.Eventually(t, 30*time.Second, func() bool {
		got = k.used(t, team, limit)
		return cond(got)
	}, "counter of %s: %s (last %d)", team, what, got)
	return got
}

func statsTags() []envoytest.StatsTag {
	var out []envoytest.StatsTag
	for _, st := range meter.StatsTags() {
		out = append(out, envoytest.StatsTag{Name: st.Name, Regex: st.Regex})
	}
	return out
}

// reply is a response read to its end.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func send(t testing.TB, c *http.Client, req *http.Request) reply {
	t.Helper()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true},
	}
}
