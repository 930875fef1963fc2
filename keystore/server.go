package keystore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/counter"
)

// Default listen addresses: both APIs on loopback only.
const (
	DefaultListen      = "127.0.0.1:8420"
	DefaultAdminListen = "127.0.0.1:8421"
	// ShutdownTimeout bounds how long in-flight requests get after a stop signal.
	ShutdownTimeout = 10 * time.Second
)

func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Serve answers the data-plane API on data and the admin API on admin until
// ctx is cancelled, then shuts both down gracefully (in-flight requests get
// ShutdownTimeout). It closes the listeners. A listener failing stops both.
func (s *Service) Serve(ctx context.Context, data, admin net.Listener) error {
	servers := []*http.Server{newHTTPServer(s.data, s.log), newHTTPServer(s.admin, s.log)}
	listeners := []net.Listener{data, admin}
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		go func() {
			if err := srv.Serve(listeners[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", listeners[i].Addr(), err)
				return
			}
			errc <- nil
		}()
	}
	s.log.Info("keystore listening", "data", data.Addr().String(), "admin", admin.Addr().String(), "storage", s.cfg.Backend)

	var first error
	received := 0
	select {
	case <-ctx.Done():
	case first = <-errc:
		received++
	}
	s.log.Info("keystore shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
			if first == nil {
				first = fmt.Errorf("shutdown: %w", err)
			}
		}
	}
	for range len(servers) - received {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Listen opens both listeners, so callers can learn the ports before Serve
// (tests pass "127.0.0.1:0").
func Listen(ctx context.Context, dataAddr, adminAddr string) (data, admin net.Listener, err error) {
	var lc net.ListenConfig
	data, err = lc.Listen(ctx, "tcp", dataAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s (data plane): %w", dataAddr, err)
	}
	admin, err = lc.Listen(ctx, "tcp", adminAddr)
	if err != nil {
		data.Close()
		return nil, nil, fmt.Errorf("listen on %s (admin): %w", adminAddr, err)
	}
	return data, admin, nil
}

// Extension is a component that shares `tollgate serve` with the keystore —
// the quota counters: its handlers are mounted on the data-plane listener,
// its metrics appended to /metrics, and Close runs after shutdown.
type Extension struct {
	Mounts     []Mount
	Collectors []Collector
	Close      func() error
	// Counters, when set, is the quota counter engine behind the mounts, for
	// readers in the same process (the portal's "quota left now").
	Counters *counter.Engine
}
