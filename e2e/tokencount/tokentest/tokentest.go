// Package tokentest holds what the tokencount e2e packages share: the
// counter engine (`tollgate serve`) they meter against, read without
// counting, the Prometheus labels of the filter's metrics, and a client
// that reads answers to their end.
package tokentest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/internal/jsontest"
)

// ChatBody is the recorded chat request the usage package's fixtures
// answer (43 prompt tokens; max_tokens 256), without its closing brace so
// that tests can add members.
const ChatBody = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a concise assistant for an online bookshop. Answer in at most three sentences."},{"role":"user","content":"Do you ship to Canada, and how long does delivery usually take?"}],"max_tokens":256`

// UsedTimeout bounds WaitUsed.
const UsedTimeout = 30 * time.Second

// Keystore is one `tollgate serve` on loopback with an embedded store in a
// temporary directory; its data plane serves /v1/quota/*.
type Keystore struct {
	*keystoretest.Server
}

// StartKeystore starts a keystore that logs warnings only; t stops it.
func StartKeystore(t testing.TB) *Keystore {
	t.Helper()
	return &Keystore{keystoretest.Start(t, keystoretest.Options{Args: []string{"--log-level", "warn"}})}
}

// Used asks the counter engine for the tokens counter of a static-quota
// team (hourly calendar window of the given limit) without counting
// (consume n=0).
func (k *Keystore) Used(t testing.TB, team string, limit int64) int64 {
	t.Helper()
	body := fmt.Sprintf(`{"items":[{"key":{"app":%q,"product":%q,"kind":"tokens"},"spec":{"limit":%d,"interval":1,"timeUnit":"hour","window":"calendar"},"n":0}]}`,
		team, meter.DefaultStaticProduct, limit)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+k.DataAddr()+meter.PathConsume, strings.NewReader(body))
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

// WaitUsed polls a team's counter until cond holds (at most UsedTimeout).
func (k *Keystore) WaitUsed(t testing.TB, team string, limit int64, what string, cond func(int64) bool) int64 {
	t.Helper()
	var got int64
	envoytest.Eventually(t, UsedTimeout, func() bool {
		got = k.Used(t, team, limit)
		return cond(got)
	}, "counter of %s: %s (last %d)", team, what, got)
	return got
}

// StatsTags are the filter's metric labels in the harness's form.
func StatsTags() []envoytest.StatsTag {
	var out []envoytest.StatsTag
	for _, st := range meter.StatsTags() {
		out = append(out, envoytest.StatsTag{Name: st.Name, Regex: st.Regex})
	}
	return out
}

// Reply is a response read to its end.
type Reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// Send does req and reads the whole answer.
func Send(t testing.TB, c *http.Client, req *http.Request) Reply {
	t.Helper()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return Reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// NewClient keeps up to conns idle connections and never asks for
// compressed answers (the filter strips accept-encoding anyway).
func NewClient(conns int) *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true},
	}
}
