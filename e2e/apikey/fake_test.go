package apikey

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// fakeKeystore answers POST /v1/verify from a table of key hashes and counts
// the calls per hash; hold makes it wait before answering, so callouts overlap.
type fakeKeystore struct {
	srv *httptest.Server

	mu    sync.Mutex
	calls map[string]int
	grant map[string]string // hash → verify answer body
	hold  chan struct{}     // when non-nil, answers wait until it is closed
}

func newFakeKeystore(t *testing.T) *fakeKeystore {
	t.Helper()
	f := &fakeKeystore{calls: map[string]int{}, grant: map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeKeystore) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	var req struct {
		KeyHash string `json:"key_hash"`
	}
	if r.URL.Path != "/v1/verify" || r.Method != http.MethodPost || json.Unmarshal(body, &req) != nil {
		http.Error(w, `{"error":{"message":"bad verify request"}}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.calls[req.KeyHash]++
	hold := f.hold
	answer, ok := f.grant[req.KeyHash]
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("content-type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"valid":false,"status":401,"reason":"unknown_key","message":"invalid API key","cache_ttl_seconds":5}`)
		return
	}
	_, _ = io.WriteString(w, answer)
}

func (f *fakeKeystore) callsFor(hash string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[hash]
}

func (f *fakeKeystore) setHold(ch chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold = ch
}

func (f *fakeKeystore) addr() string { return f.srv.Listener.Addr().String() }
