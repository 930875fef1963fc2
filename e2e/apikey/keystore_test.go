package apikey

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/keystoretest"
)

func TestMain(m *testing.M) { os.Exit(keystoretest.Main(m)) }

// keystore is one `tollgate serve` process on loopback with an embedded
// store in a test directory.
type keystore struct {
	*keystoretest.Server
	dataAddr string
}

// startKeystore runs `tollgate serve` on the given addresses (port 0 picks
// free ports) and waits until it is ready.
func startKeystore(t testing.TB, dataDir, listen, adminListen string) *keystore {
	t.Helper()
	s := keystoretest.Start(t, keystoretest.Options{DataDir: dataDir, Listen: listen, AdminListen: adminListen,
		Args: []string{"--cache-ttl", "30s", "--negative-cache-ttl", "5s"}})
	return &keystore{Server: s, dataAddr: s.DataAddr()}
}

// stop ends the keystore process and waits for it.
func (k *keystore) stop() { k.Stop() }

// restart stops the keystore and starts a new process on the same data dir
// and ports, as an operator restarting the service would.
func (k *keystore) restart(t testing.TB) *keystore {
	t.Helper()
	k.Restart(t)
	return k
}

// cli runs an admin command against this keystore and returns its stdout.
func (k *keystore) cli(t testing.TB, args ...string) string {
	t.Helper()
	return k.CLI(t, args...)
}

// issuedKey is a key as `keys create -o json` prints it.
type issuedKey struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

// createKey issues a key for app through the CLI.
func (k *keystore) createKey(t testing.TB, app string) issuedKey {
	t.Helper()
	out := k.cli(t, "keys", "create", "--app", app, "-o", "json")
	var ik issuedKey
	require.NoError(t, json.Unmarshal([]byte(out), &ik), out)
	require.NotEmpty(t, ik.Key, out)
	require.NotEmpty(t, ik.ID, out)
	return ik
}
