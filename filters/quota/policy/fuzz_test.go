package policy

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/tollgate/tollgate/counter"
)

func FuzzParseConfig(f *testing.F) {
	if raw, err := os.ReadFile("testdata/full.json"); err == nil {
		f.Add(raw)
	}
	f.Add([]byte(`{"key_sources":[{"client_ip":true}],"quotas":[{"limit":1,"timeUnit":"minute"}]}`))
	f.Add([]byte(`{"key_sources":[{"identity":true}],"rules":[{"path":"/x","quotas":[]}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := ParseConfig(raw)
		if err != nil {
			return
		}
		if len(p.Rules) == 0 || p.Rules[len(p.Rules)-1].Name != "default" {
			t.Fatal("a valid policy ends with the default rule")
		}
		for _, r := range p.Rules {
			if len(r.Keys) == 0 {
				t.Fatalf("rule %s has no key source", r.Name)
			}
			for _, s := range r.Quotas {
				if s.Validate() != nil {
					t.Fatalf("rule %s holds an invalid spec", r.Name)
				}
			}
		}
	})
}

func FuzzDecodeConsume(f *testing.F) {
	f.Add(200, []byte(`{"allowed":true,"results":[{"allowed":true,"limit":1,"used":1,"remaining":0,"reset":1,"reset_after_ms":10,"retry_after_ms":0}]}`), 1)
	f.Add(503, []byte(`{"error":{"code":"backend_unavailable"}}`), 1)
	f.Add(200, []byte(`{"results":[{"allowed":false,"limit":1e300}]}`), 1)
	f.Fuzz(func(t *testing.T, status int, body []byte, want int) {
		rs, err := DecodeConsume(status, body, want)
		if err != nil {
			return
		}
		if len(rs) != want {
			t.Fatalf("%d results for %d", len(rs), want)
		}
		for _, r := range rs {
			if r.Limit < 0 || r.Remaining < 0 || r.ResetAfter < 0 || r.RetryAfter < 0 {
				t.Fatalf("negative field in %+v", r)
			}
		}
	})
}

// FuzzPlan feeds arbitrary header values and client addresses through Plan
// and the wire encoding: every key must be valid for the counter API and
// every body valid JSON.
func FuzzPlan(f *testing.F) {
	p, err := ParseConfig([]byte(`{"key_sources":[{"identity":true},{"header":"x-user"},{"client_ip":true}],
		"quotas":[{"limit":5,"timeUnit":"minute"}],"spike_arrest":{"rate":"5ps"}}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("demo", "gold", "60/1minute/calendar;scope=gold:set:chat", "u1", "10.0.0.1:80")
	f.Add("", "", "", "we\"ird\x00", "[::1]:1")
	f.Add("a", "", "1/1second/rolling;scope=", "", "")
	f.Fuzz(func(t *testing.T, app, product, quota, user, addr string) {
		h := map[string]string{"x-tollgate-app": app, "x-tollgate-product": product, "x-tollgate-request-quota": quota, "x-user": user}
		pl := p.Plan(request("POST", "/v1/chat/completions", h, addr))
		if pl.Err != nil {
			return
		}
		items := make([]Item, 0, len(pl.Checks))
		for _, c := range pl.Checks {
			if err := (counter.Request{Key: c.Key, Spec: c.Spec, N: 1}).Validate(); err != nil {
				t.Fatalf("invalid check %+v: %v", c, err)
			}
			items = append(items, Item{Key: c.Key, Spec: c.Spec, N: 1})
		}
		if len(items) > 0 && !json.Valid(EncodeConsume(items, true)) {
			t.Fatal("invalid JSON body")
		}
	})
}
