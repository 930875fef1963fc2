package wasmhost

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSmoke(t *testing.T) {
	h := newHost(t, Config{Upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("x-backend", "1")
		fmt.Fprintf(w, "echo:%s", b)
	})})
	vm := newVM(t, h)
	req := httptest.NewRequest("POST", "/hello", Chunks("aaaa", "bbbbbb", "cc"))
	req.Header.Set("x-t-rb", "pause")
	req.Header.Set("x-t-rb-rewrite", "prepend:PRE")
	resp, err := vm.Do(testCtx(t), req)
	require.NoError(t, err)
	for _, l := range vm.Logs() {
		t.Logf("%s %d %s", l.Level, l.Context, l.Message)
	}
	t.Logf("%d %v %q", resp.StatusCode, resp.Headers, resp.Body)
}
