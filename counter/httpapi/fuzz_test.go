package httpapi

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/tollgate/tollgate/counter"
)

func slogTo(w interface{ Write([]byte) (int, error) }) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

// FuzzDecode feeds arbitrary bodies to every decoder: each either returns a
// fully valid request or a 4xx error naming the problem, and never panics.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"consume.json", "reserve.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{`{"items":[{"id":"x","actual":1}]}`, `{"items":[{"id":"x"}]}`, `null`, `{"items":[{"spec":{"timeUnit":"x"}}]}`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(apiErr *Error) {
			if apiErr != nil && (apiErr.Status != 400 || apiErr.Code == "" || apiErr.Message == "") {
				t.Fatalf("bad error %+v for %q", apiErr, body)
			}
		}
		c, err := DecodeConsume(body)
		check(err)
		if err == nil {
			validItems(t, c.Items)
		}
		r, err := DecodeReserve(body)
		check(err)
		if err == nil {
			validItems(t, r.Items)
			if r.TTLMs < 0 {
				t.Fatalf("negative ttl accepted")
			}
		}
		s, err := DecodeSettle(body)
		check(err)
		if err == nil {
			for _, it := range s.Items {
				if it.ID == "" || it.Actual == nil || *it.Actual < 0 {
					t.Fatalf("invalid settle item accepted: %+v", it)
				}
			}
		}
		rl, err := DecodeRelease(body)
		check(err)
		if err == nil && (len(rl.Items) == 0 || rl.Items[0].ID == "") {
			t.Fatalf("invalid release accepted: %+v", rl)
		}
	})
}

func validItems(t *testing.T, items []counter.Request) {
	t.Helper()
	if len(items) == 0 || len(items) > counter.MaxBatch {
		t.Fatalf("batch of %d accepted", len(items))
	}
	for _, it := range items {
		if err := it.Validate(); err != nil {
			t.Fatalf("invalid item accepted: %v", err)
		}
	}
}
