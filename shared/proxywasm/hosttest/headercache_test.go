//go:build !wasip1

package hosttest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/proxywasm/hosttest"
)

// getOr reads a request header, "<absent>" when the host says it is not there.
func getOr(name string) string {
	v, err := proxywasm.RequestHeaders.Get(name)
	if err != nil {
		return "<absent>"
	}
	return v
}

// TestHeaderReadsWithinACallback: from the second access on, the binding
// answers header reads from one read of the map (shared/proxywasm
// headercache.go); what the plugin sees and what the upstream receives are
// the same as with a host call per access: writes are mirrored, removals of
// absent headers are no-ops, names are case-insensitive, a repeated header
// answers its first value.
func TestHeaderReadsWithinACallback(t *testing.T) {
	var seen []string
	p := &probe{onReq: func(*probeStream) proxywasm.Action {
		seen = append(seen, getOr(":path"), getOr("X-Multi"), getOr("x-absent"))
		_ = proxywasm.RequestHeaders.Remove("x-absent")
		_ = proxywasm.RequestHeaders.Remove("x-gone")
		seen = append(seen, getOr("x-gone"))
		_ = proxywasm.RequestHeaders.Replace("x-multi", "replaced")
		_ = proxywasm.RequestHeaders.Add("x-added", "a1")
		_ = proxywasm.RequestHeaders.Add("x-added", "a2")
		_ = proxywasm.RequestHeaders.Replace("x-new", "n")
		seen = append(seen, getOr("x-multi"), getOr("x-added"), getOr("x-new"))
		all, err := proxywasm.RequestHeaders.GetAll()
		require.NoError(t, err)
		_ = proxywasm.RequestHeaders.SetAll(append(all, [2]string{"x-set", "s"}))
		seen = append(seen, getOr("x-set"), getOr("x-new"))
		return proxywasm.ActionContinue
	}}
	h := start(t, p, hosttest.Config{})
	res := h.Do(hosttest.Request{Path: "/p", Headers: [][2]string{
		{"x-multi", "m1"}, {"x-gone", "g"}, {"x-multi", "m2"}, {"x-keep", "k"}}})
	require.Equal(t, 200, res.Status)
	assert.Equal(t, []string{"/p", "m1", "<absent>", "<absent>", "replaced", "a1", "n", "s", "n"}, seen)
	up := res.Upstream
	assert.Equal(t, "replaced", up.Header("x-multi"))
	assert.Equal(t, "", up.Header("x-gone"))
	assert.Equal(t, "k", up.Header("x-keep"))
	assert.Equal(t, "s", up.Header("x-set"))
	var added []string
	for _, kv := range up.Headers {
		if kv[0] == "x-added" {
			added = append(added, kv[1])
		}
		assert.NotEqual(t, "m2", kv[1], "a replaced header keeps one value")
	}
	assert.Equal(t, []string{"a1", "a2"}, added)
}

// TestHeaderReadsAreNotKeptAcrossCallbacks: a read in one callback is never
// answered from a copy made in another; the request map that Envoy frees
// once the headers continued reads as gone, as without the cache.
func TestHeaderReadsAreNotKeptAcrossCallbacks(t *testing.T) {
	var afterGet, afterAll error
	p := &probe{
		onReq: func(*probeStream) proxywasm.Action {
			_, _ = proxywasm.RequestHeaders.Get(":path")
			_, _ = proxywasm.RequestHeaders.Get(":method")
			return proxywasm.ActionContinue
		},
		onBdy: func(*probeStream, int, bool) proxywasm.Action {
			_, afterGet = proxywasm.RequestHeaders.Get(":path")
			_, afterAll = proxywasm.RequestHeaders.Get(":method")
			return proxywasm.ActionContinue
		},
	}
	h := start(t, p, hosttest.Config{})
	res := h.Do(hosttest.Request{Path: "/x", Body: []byte("b")})
	require.Equal(t, 200, res.Status)
	assert.ErrorIs(t, afterGet, proxywasm.ErrBadArgument)
	assert.ErrorIs(t, afterAll, proxywasm.ErrBadArgument, "a second read after the map is gone is not answered from an empty copy")
}

// TestHeaderReadsAfterResume: writes made after reads in one callback reach
// the upstream, and the response callback reads the response's own map.
func TestHeaderReadsAfterResume(t *testing.T) {
	var later string
	p := &probe{
		onReq: func(s *probeStream) proxywasm.Action {
			_, _ = proxywasm.RequestHeaders.Get(":path")
			_, _ = proxywasm.RequestHeaders.Get("x-v")
			_ = proxywasm.RequestHeaders.Replace("x-v", "2")
			return proxywasm.ActionContinue
		},
		onRsp: func(*probeStream) proxywasm.Action {
			v, _ := proxywasm.ResponseHeaders.Get("x-r")
			_, _ = proxywasm.ResponseHeaders.Get(":status")
			later = v
			return proxywasm.ActionContinue
		},
	}
	h := start(t, p, hosttest.Config{Upstream: func(*hosttest.Upstream) *hosttest.Response {
		return &hosttest.Response{Headers: [][2]string{{"x-r", "up"}}}
	}})
	res := h.Do(hosttest.Request{Headers: [][2]string{{"x-v", "1"}}})
	require.Equal(t, 200, res.Status)
	assert.Equal(t, "2", res.Upstream.Header("x-v"))
	assert.Equal(t, "up", later)
}
