package httpapi

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/counter"
)

func slogTo(w interface{ Write([]byte) (int, error) }) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

// FuzzDecode feeds arbitrary bodies to every decoder: each either returns a
// fully valid request or a 4xx error naming the problem, and never panics.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"consume.json", "reserve.json", "lease.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{`{"items":[{"id":"x","actual":1}]}`, `{"items":[{"id":"x"}]}`, `null`, `{"items":[{"spec":{"timeUnit":"x"}}]}`, "\xff",
		`{"items":[{"key":{"app":"a","kind":"tokens"},"spec":{"limit":5,"interval":1,"timeUnit":"minute"},"used":1,"want":3,"min":4,"ttl_ms":-1}]}`} {
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
		l, err := DecodeLease(body)
		check(err)
		if err == nil {
			validLeases(t, l.Items)
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

// validLeases checks that every lease item the decoder passed on is valid,
// and that every rejected one says why and where.
func validLeases(t *testing.T, items []LeaseItem) {
	t.Helper()
	if len(items) == 0 || len(items) > counter.MaxBatch {
		t.Fatalf("batch of %d accepted", len(items))
	}
	for i, it := range items {
		if it.Err != nil {
			if it.Err.Code == "" || it.Err.Message == "" || !strings.HasPrefix(it.Err.Param, fmt.Sprintf("items[%d]", i)) {
				t.Fatalf("item error without code, message or param: %+v", it.Err)
			}
			continue
		}
		if err := it.Req.Validate(); err != nil {
			t.Fatalf("invalid lease item accepted: %v", err)
		}
	}
}
