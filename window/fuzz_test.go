package window

import (
	"encoding/json"
	"testing"
	"time"
)

func FuzzParseCompact(f *testing.F) {
	for _, s := range []string{"100/1minute/calendar", "0/12month/flexi", "5/3seconds/rolling", "1//", "-1/1day/calendar"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseCompact(s)
		if err != nil {
			return
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("ParseCompact(%q) returned an invalid spec: %v", s, err)
		}
		again, err := ParseCompact(spec.String())
		if err != nil || again != spec {
			t.Fatalf("round trip of %q: %v %v", s, again, err)
		}
		// Every valid spec gives a non-empty window containing the instant.
		at := time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)
		start, end := spec.CalendarWindow(at)
		if at.Before(start) || !at.Before(end) {
			t.Fatalf("%v: window [%v,%v) misses %v", spec, start, end, at)
		}
		if !spec.FlexiEnd(at).After(at) {
			t.Fatalf("%v: flexi end not after start", spec)
		}
	})
}

func FuzzSpecJSON(f *testing.F) {
	for _, s := range []string{
		`{"limit":100,"interval":1,"timeUnit":"minute","window":"calendar"}`,
		`{"limit":1,"interval":3,"timeUnit":"months","window":"flexi"}`,
		`{"limit":-1}`, `{"timeUnit":7}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Spec
		if err := json.Unmarshal(b, &s); err != nil {
			return
		}
		if s.Validate() != nil {
			return
		}
		if _, err := json.Marshal(s); err != nil {
			t.Fatalf("valid spec %v does not marshal: %v", s, err)
		}
		cur, old := s.RollingFrame(time.Unix(1_700_000_000, 0))
		if old > cur {
			t.Fatalf("%v: oldest %d after current %d", s, old, cur)
		}
	})
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"30pm", "5ps", "100ph", "0ps", "1e3pm", "ps", "１pm"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if r.Count < 1 || r.Count > MaxRateCount || r.Interval() <= 0 {
			t.Fatalf("ParseRate(%q) = %+v", s, r)
		}
		again, err := ParseRate(r.String())
		if err != nil || again != r {
			t.Fatalf("round trip of %q: %+v %v", s, again, err)
		}
	})
}
