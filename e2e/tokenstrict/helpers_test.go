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
	"os"
	"testing"

	"github.com/tollgate/tollgate/e2e/keystoretest"
	"github.com/tollgate/tollgate/e2e/tokencount/tokentest"
)

func TestMain(m *testing.M) { os.Exit(keystoretest.Main(m)) }

// chatBody is the shared recorded chat request (max_tokens 256).
const chatBody = tokentest.ChatBody
