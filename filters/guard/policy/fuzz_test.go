package policy_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/tollgate/tollgate/filters/guard/policy"
)

// FuzzStreamMaskerSplit: an SSE answer fed in any split gives the same
// bytes as the whole answer fed at once, and every event stays valid JSON.
func FuzzStreamMaskerSplit(f *testing.F) {
	f.Add("write to bob@example.com now", uint8(1), uint8(3))
	f.Add("card 4111 1111 1111 1111\nok", uint8(7), uint8(2))
	f.Add("SSN 536-22-1234", uint8(5), uint8(5))
	c := profile(f, load(f), "guarded", "")
	f.Fuzz(func(t *testing.T, answer string, piece, split uint8) {
		if !json.Valid([]byte(`"`+answer+`"`)) && !validUTF8(answer) {
			return
		}
		up := []byte(chatStream(answer, int(piece)%9+1))
		now := time.Unix(0, 0)
		whole := c.NewStreamMasker(time.Hour)
		want := append(append([]byte(nil), whole.Feed(up, now)...), whole.Finish(now)...)
		m := c.NewStreamMasker(time.Hour)
		var got []byte
		n := int(split)%13 + 1
		for i := 0; i < len(up); i += n {
			got = append(got, m.Feed(up[i:min(len(up), i+n)], now)...)
		}
		got = append(got, m.Finish(now)...)
		if !bytes.Equal(got, want) {
			t.Fatalf("split %d: %q\n!= whole %q", n, got, want)
		}
		for _, block := range bytes.Split(bytes.TrimSuffix(got, []byte("\n\n")), []byte("\n\n")) {
			data := bytes.TrimPrefix(block, []byte("data: "))
			if string(data) != "[DONE]" && !json.Valid(data) {
				t.Fatalf("invalid event %q", block)
			}
		}
	})
}

func validUTF8(s string) bool { return bytes.Equal([]byte(s), bytes.ToValidUTF8([]byte(s), nil)) }

// FuzzCheckBody: any body is refused with an error or passes, and a
// rewritten body is valid JSON.
func FuzzCheckBody(f *testing.F) {
	f.Add(`{"model":"m","messages":[{"role":"user","content":"4111111111111111"}]}`)
	f.Add(`{"model":"m","prompt":["a@b.co","x"],"user":"1' or '1'='1"}`)
	c := profile(f, load(f), "guarded", "")
	f.Fuzz(func(t *testing.T, body string) {
		r := c.CheckBody([]byte(body), 1<<16)
		if r.Body != nil && !json.Valid(r.Body) {
			t.Fatalf("rewritten body is not JSON: %q", r.Body)
		}
	})
}

// FuzzVerdict: moderation answers and cached verdicts never panic, and a
// decoded verdict encodes back to the same bytes.
func FuzzVerdict(f *testing.F) {
	f.Add([]byte(`{"results":[{"flagged":true,"categories":{"hate":true},"category_scores":{"hate":0.9}}]}`))
	f.Add([]byte("flag 0.5 violence"))
	use := &policy.ModerationUse{Request: true, Thresholds: map[string]float64{"*": 0.5}}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = policy.ParseVerdict(200, b, use)
		_, _ = policy.ParseVerdict(200, b, &policy.ModerationUse{Request: true})
		if v, ok := policy.DecodeVerdict(b); ok {
			if v2, ok2 := policy.DecodeVerdict(v.Encode()); !ok2 || v2 != v {
				t.Fatalf("verdict %+v does not round-trip", v)
			}
		}
	})
}

// FuzzCheckHeaders: any path, query and header value is decided without
// panicking, and a refusal names a known set.
func FuzzCheckHeaders(f *testing.F) {
	f.Add("/v1/chat/completions?q=1%27%20OR%20%271%27%3D%271", "<img src=x onerror=alert(1)>")
	f.Add("/v1/%3C!--%23exec%20cmd=%22ls%22--%3E?a=%zz&b", "")
	c := profile(f, load(f), "guarded", "")
	f.Fuzz(func(t *testing.T, path, note string) {
		e, ds := c.CheckHeaders(path, func(k string) string {
			if k == "x-client-note" {
				return note
			}
			return ""
		})
		if e == nil {
			return
		}
		switch e.Code {
		case "guard_sqli", "guard_xss", "guard_ssi":
		default:
			t.Fatalf("unexpected code %q", e.Code)
		}
		if len(ds) != 1 || ds[0].Action != "block" {
			t.Fatalf("decisions %+v", ds)
		}
	})
}

// FuzzParse: any configuration is compiled or refused with an error, never
// a panic.
func FuzzParse(f *testing.F) {
	f.Add(`{"default":{"request":{"detectors":{"secrets":"block"}}}}`)
	f.Add(`{"products":{"p":{"threat":{"query":true,"json_fields":["a.*.b"]},"response":{"deny":[{"name":"x","pattern":"a+","action":"mask"}]}}}}`)
	f.Fuzz(func(t *testing.T, cfg string) {
		_, _ = policy.Parse([]byte(cfg))
	})
}
