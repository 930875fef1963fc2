package apikey

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

func TestZZDebugCost(t *testing.T) {
	ks := provision(t)
	key := ks.createKey(t, "demo")
	up := envoytest.NewUpstream(t, envoytest.WithRecordLimit(1))
	for _, cfg := range []string{`{"keystore": {"cluster": "keystore"}}`} {
		gw := startGateway(t, up, []envoytest.Cluster{{Name: "keystore", Addr: ks.dataAddr}}, cfg)
		for range 2000 {
			r := do(t, gw.Client(), "GET", gw.url("main", "/v1/models"), map[string]string{"x-api-key": key.Key})
			if r.StatusCode != 200 {
				t.Fatal(r.Body)
			}
		}
		s, _ := gw.AdminGet("/stats?filter=zzdebug")
		for _, l := range strings.Split(s, "\n") {
			t.Logf("%s: %s", cfg, l)
		}
	}
}
