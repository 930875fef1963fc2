package usagelog

import (
	"github.com/tollgate/tollgate/shared/keystoreconf"
	"github.com/tollgate/tollgate/shared/proxywasm"
)

// ProxyHost is Host on proxy-wasm: a callout to the keystore cluster with
// the data-plane token.
type ProxyHost struct {
	keystore keystoreconf.Keystore
	path     string
}

// NewProxyHost returns the sender's host for a keystore; call it from OnPluginStart.
func NewProxyHost(ks keystoreconf.Keystore, set Settings) (*ProxyHost, error) {
	return &ProxyHost{keystore: ks, path: set.Path}, nil
}

// Post implements Host.
func (h *ProxyHost) Post(body []byte, done func(failed bool, status int)) error {
	headers := h.keystore.AppendAuth([][2]string{
		{":method", "POST"},
		{":path", h.path},
		{":authority", h.keystore.Authority},
		{"content-type", "application/json"},
	})
	_, err := proxywasm.DispatchHttpCall(h.keystore.Cluster, headers, body, nil, h.keystore.Timeout, func(r *proxywasm.CallResponse) {
		done(r.Failed, r.Status)
	})
	return err
}
