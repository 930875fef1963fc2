//go:build !wasip1

package hosttest_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

// TestChainLinksShareOneReadOfTheBody: within one callback the links of a
// chain read a body buffer once (shared/proxywasm bodycache.go); what each
// link reads after another one's replace, append or partial read is what
// the host holds, every reader gets its own copy, and the upstream and the
// client get what the links wrote.
func TestChainLinksShareOneReadOfTheBody(t *testing.T) {
	var seen []string
	all := func(b proxywasm.Buffer) []byte {
		body, err := b.GetAll()
		require.NoError(t, err)
		return body
	}
	specs := []linkSpec{
		{name: "a", allow: true, b: behaviour{
			reqHdr: func(*linkStream) proxywasm.Action { return proxywasm.ActionPause },
			reqBody: func(_ *linkStream, _ []byte, eos bool) proxywasm.Action {
				if !eos {
					return proxywasm.ActionPause
				}
				body := all(proxywasm.RequestBody)
				seen = append(seen, "a "+string(body))
				body[0] = 'X' // a reader's copy is its own
				require.NoError(t, proxywasm.RequestBody.Replace(bytes.ToUpper(all(proxywasm.RequestBody))))
				head, err := proxywasm.RequestBody.Get(0, 3)
				require.NoError(t, err)
				size, err := proxywasm.RequestBody.Size()
				require.NoError(t, err)
				seen = append(seen, "a "+string(head)+" "+string(all(proxywasm.RequestBody))+" "+string(rune('0'+size)))
				require.NoError(t, proxywasm.RequestBody.Append([]byte("!")))
				seen = append(seen, "a "+string(all(proxywasm.RequestBody)))
				return proxywasm.ActionContinue
			},
		}},
		{name: "b", allow: true, b: behaviour{
			reqHdr: func(*linkStream) proxywasm.Action { return proxywasm.ActionPause },
			reqBody: func(_ *linkStream, _ []byte, eos bool) proxywasm.Action {
				if eos {
					seen = append(seen, "b "+string(all(proxywasm.RequestBody)))
				}
				return proxywasm.ActionContinue
			},
			rspBody: func(_ *linkStream, body []byte, _ bool) proxywasm.Action {
				if len(body) > 0 {
					require.NoError(t, proxywasm.ResponseBody.Replace(append(body, '.')))
				}
				return proxywasm.ActionContinue
			},
		}},
	}
	h, tr, _, err := startChain(t, specs, "", hosttest.Config{
		Upstream: func(*hosttest.Upstream) *hosttest.Response {
			return &hosttest.Response{Status: 200, Chunks: [][]byte{[]byte("ab"), []byte("cd")}}
		},
	})
	require.NoError(t, err)
	res := h.Do(hosttest.Request{Path: "/", Body: []byte("hello")})
	require.False(t, res.Paused)
	require.NotNil(t, res.Upstream)
	assert.Equal(t, "HELLO!", string(res.Upstream.Body))
	assert.Equal(t, []string{"a hello", "a HEL HELLO 5", "a HELLO!", "b HELLO!"}, seen)
	assert.Equal(t, "ab.cd.", string(res.Body), "b's rewrite of each chunk reaches the client")
	var rsp []string
	for _, e := range tr.events {
		if bytes.HasPrefix([]byte(e), []byte("a:rspb")) {
			rsp = append(rsp, e)
		}
	}
	assert.Equal(t, []string{`a:rspb "ab." false`, `a:rspb "cd." false`, `a:rspb "" true`}, rsp, "a reads each chunk as b left it")
}
