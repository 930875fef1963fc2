package usagelog

import (
	"errors"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/keystoreconf"
	"github.com/tollgate/tollgate/shared/proxywasm"
)

// QueueName is the shared queue every VM of a vm_id reports into.
const QueueName = "tollgate.usage"

// ProxyHost is Host on proxy-wasm: a shared queue of this vm_id and a
// callout to the keystore cluster with the data-plane token.
type ProxyHost struct {
	queue    uint32
	keystore keystoreconf.Keystore
	path     string
}

// NewProxyHost registers (or finds) the shared queue; call it from OnPluginStart.
func NewProxyHost(ks keystoreconf.Keystore, set Settings) (*ProxyHost, error) {
	q, err := proxywasm.RegisterSharedQueue(QueueName)
	if err != nil {
		return nil, config.Wrap("register shared queue "+QueueName+": ", err, "")
	}
	return &ProxyHost{queue: q, keystore: ks, path: set.Path}, nil
}

// Enqueue implements Host.
func (h *ProxyHost) Enqueue(rec []byte) error { return proxywasm.EnqueueSharedQueue(h.queue, rec) }

// Dequeue implements Host.
func (h *ProxyHost) Dequeue() ([]byte, bool, error) {
	rec, err := proxywasm.DequeueSharedQueue(h.queue)
	if errors.Is(err, proxywasm.ErrEmpty) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return rec, true, nil
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
