// Package analyticstest gives tests the keystore's usage endpoint over a
// real analytics store, so filters that report usage records are checked
// against what the keystore stores, not against a fake.
package analyticstest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/tollgate/tollgate/keystore/analytics"
	"github.com/tollgate/tollgate/keystore/store"
)

// Keystore serves POST /v1/usage into a fresh analytics store (embedded, in
// a temporary directory closed when t ends) and everything else with rest
// (nil: 404). A batch that fails to decode is a 400, a record the store
// refuses a 500, so a test never passes on records the keystore would drop.
func Keystore(t testing.TB, rest http.Handler) (http.Handler, *analytics.Store) {
	t.Helper()
	b, err := store.OpenBackend(context.Background(), store.BackendOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("analyticstest: open backend: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("analyticstest: close backend: %v", err)
		}
	})
	st, err := analytics.Open(b, analytics.Config{})
	if err != nil {
		t.Fatalf("analyticstest: open analytics: %v", err)
	}
	mux := http.NewServeMux()
	if rest != nil {
		mux.Handle("/", rest)
	}
	mux.HandleFunc("POST /v1/usage", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		batch, err := analytics.DecodeBatch(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ack, err := st.Ingest(r.Context(), batch.Records)
		if err != nil || ack.Invalid > 0 {
			http.Error(w, fmt.Sprint(err, ack.Errors), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	})
	return mux, st
}
