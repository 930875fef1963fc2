package httpapi

import (
	"fmt"
	"io"
	"sync/atomic"
)

// endpoint indexes the per-endpoint metrics.
type endpoint int

const (
	epConsume endpoint = iota
	epReserve
	epSettle
	epRelease
	epLease
	numEndpoints
)

var endpointNames = [numEndpoints]string{"consume", "reserve", "settle", "release", "lease"}

// outcome indexes the per-item outcomes counted in metrics.
type outcome int

const (
	outAllowed outcome = iota
	outDenied
	outNotFound
	outBadRequest
	outBackendError
	outOK
	outLost
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"allowed", "denied", "not_found", "bad_request", "backend_error", "ok", "lost"}

// metrics counts decisions per endpoint and outcome, lock-free.
type metrics struct {
	items [numEndpoints][numOutcomes]atomic.Uint64
}

func (m *metrics) add(ep endpoint, o outcome, n int) { m.items[ep][o].Add(uint64(n)) }

// WriteMetrics writes the handler's counters in Prometheus text format, so
// the service that mounts the handler can expose them on its /metrics.
func (h *Handler) WriteMetrics(w io.Writer) error {
	if _, err := io.WriteString(w, "# HELP tollgate_quota_items_total Quota items handled by endpoint and outcome.\n# TYPE tollgate_quota_items_total counter\n"); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	for ep := endpoint(0); ep < numEndpoints; ep++ {
		for o := outcome(0); o < numOutcomes; o++ {
			if _, err := fmt.Fprintf(w, "tollgate_quota_items_total{endpoint=%q,outcome=%q} %d\n",
				endpointNames[ep], outcomeNames[o], h.metrics.items[ep][o].Load()); err != nil {
				return fmt.Errorf("write metrics: %w", err)
			}
		}
	}
	return nil
}
