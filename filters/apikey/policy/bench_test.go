package policy

import (
	"testing"

	"github.com/tollgate/tollgate/keystore/model"
)

// BenchmarkHeaderPhase is the policy work of one request's headers: key
// extraction with every carrier scrubbed, the path check and the upstream
// header rewrite (no key lookup).
func BenchmarkHeaderPhase(b *testing.B) {
	p, err := ParseConfig([]byte(`{"key_sources":[{"header":"x-api-key"},{"bearer":true},{"query":"key"}]}`))
	if err != nil {
		b.Fatal(err)
	}
	key, err := model.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	d := Decision{Outcome: Allowed, Pass: true, Pairs: [][2]string{{"x-tollgate-app", "demo"}, {"x-tollgate-product", "chat"}}}
	for _, c := range []struct{ name, path string }{
		{"plain path", "/v1/chat/completions"},
		{"query with key", "/v1/models/gemma-3-1b-it?a=1&key=" + key + "&b=2"},
	} {
		headers := [][2]string{
			{":method", "POST"}, {":path", c.path}, {":authority", "gw"}, {"content-type", "application/json"},
			{"x-api-key", key}, {"user-agent", "OpenAI/Go"}, {"accept", "application/json"}, {"x-request-id", "abc"},
		}
		get := func(name string) (string, bool) {
			for _, kv := range headers {
				if kv[0] == name {
					return kv[1], true
				}
			}
			return "", false
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				x := p.Extract(get, c.path)
				if CheckPath(x.Path) != "" {
					b.Fatal("path refused")
				}
				if _, changed := p.UpstreamHeaders(headers, x, d); !changed {
					b.Fatal("nothing changed")
				}
			}
		})
	}
}
