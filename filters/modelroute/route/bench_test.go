package route

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tollgate/tollgate/shared/reqview"
)

// benchBody is a chat body of about size bytes whose bulk is one long tool
// description, like the multi-MB tool lists agents send.
func benchBody(model string, size int) []byte {
	head := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","description":"`
	tail := `"}}]}`
	return []byte(head + string(bytes.Repeat([]byte("x"), max(0, size-len(head)-len(tail)))) + tail)
}

// BenchmarkDecide measures the policy's cost per request (natively; the
// Wasm build runs the same code under V8).
func BenchmarkDecide(b *testing.B) {
	p := seedPolicy(b)
	p.MaxBodyBytes = 8 << 20
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{1 << 10, 1 << 20} {
		for _, model := range []string{"llama-3.1-8b", "gemma"} {
			body := benchBody(model, size)
			b.Run(fmt.Sprintf("%dKB/%s", size>>10, model), func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					if _, aerr := p.Decide(body, HeaderMap{}, rnd); aerr != nil {
						b.Fatal(aerr)
					}
				}
			})
		}
	}
}

// BenchmarkExtractModel measures the canonical request view's validating
// pass and model lookup on a 1 MiB body.
func BenchmarkExtractModel(b *testing.B) {
	body := benchBody("m", 1<<20)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := ExtractModel(body, reqview.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
