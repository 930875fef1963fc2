package envoytest

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// WorkerClients returns n HTTP clients, each pinned to its own keep-alive TCP
// connection to the listener. When n is at most the worker count, every client
// talks to a different Envoy worker (hence a different Wasm VM), so tests can
// exercise cross-worker shared data; beyond that connections spread evenly.
//
// The listener balances connections exactly (to the worker with the fewest),
// and the harness checks each connection's worker with the per-worker
// downstream_cx_total stats, so call it before starting concurrent traffic.
// Should a connection drop, the client dials a new one, which the exact
// balancer hands to the worker that lost it.
func (e *Envoy) WorkerClients(t testing.TB, n int) []*http.Client {
	t.Helper()
	workers := e.cfg.Concurrency
	if workers <= 0 {
		workers = DefaultConcurrency
	}
	used := map[int]bool{}
	var spare []net.Conn
	t.Cleanup(func() {
		for _, c := range spare {
			c.Close()
		}
	})
	clients := make([]*http.Client, 0, n)
	// Bounded: each extra dial evens out the load by one connection.
	for attempts := 0; len(clients) < n; attempts++ {
		if attempts > n+8*workers {
			t.Fatalf("envoytest: could not spread %d connections over %d workers", n, workers)
		}
		conn, worker := e.dialWorker(t, workers)
		if n <= workers && used[worker] {
			spare = append(spare, conn) // keep it open so the balancer moves on
			continue
		}
		used[worker] = true
		clients = append(clients, pinnedClient(t, conn))
	}
	return clients
}

// dialWorker opens one connection and returns it with the index of the worker
// that accepted it.
func (e *Envoy) dialWorker(t testing.TB, workers int) (net.Conn, int) {
	t.Helper()
	before := make([]uint64, workers)
	for w := range workers {
		v, err := e.WorkerStat(w, "downstream_cx_total")
		if err != nil {
			t.Fatalf("%v", err)
		}
		before[w] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", e.ListenerAddr())
	if err != nil {
		t.Fatalf("envoytest: dial listener: %v", err)
	}
	worker := -1
	Eventually(t, 10*time.Second, func() bool {
		changed := 0
		for w := range workers {
			v, err := e.WorkerStat(w, "downstream_cx_total")
			if err != nil {
				t.Fatalf("%v", err)
			}
			if v != before[w] {
				changed++
				worker = w
			}
		}
		if changed > 1 {
			t.Fatalf("envoytest: other connections arrived while pinning a worker client")
		}
		return changed == 1
	}, "no worker accepted the connection")
	return conn, worker
}

// pinnedClient is an HTTP/1.1 client whose transport uses conn for its first
// (and, while it lives, only) connection.
func pinnedClient(t testing.TB, conn net.Conn) *http.Client {
	var mu sync.Mutex
	first := conn
	tr := &http.Transport{
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			c := first
			first = nil
			mu.Unlock()
			if c != nil {
				return c, nil
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		mu.Lock()
		if first != nil {
			first.Close()
		}
		mu.Unlock()
	})
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}
