package policy

import (
	"errors"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/reqview"
	"github.com/tollgate/tollgate/window"
)

// Item is one entry of a /v1/quota/consume batch.
type Item struct {
	Key   counter.Key
	Spec  window.Spec
	N     int64
	Force bool
}

// EncodeConsume writes a /v1/quota/consume body (docs/counter.md). Key
// parts come from Plan, which keeps them free of characters JSON would
// need to escape beyond quotes and backslashes; those are escaped anyway.
func EncodeConsume(items []Item, atomic bool) []byte {
	b := make([]byte, 0, 32+len(items)*160)
	b = append(b, `{"atomic":`...)
	b = strconv.AppendBool(b, atomic)
	b = append(b, `,"items":[`...)
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = appendCounter(b, it.Key, it.Spec)
		b = append(b, `,"n":`...)
		b = strconv.AppendInt(b, it.N, 10)
		if it.Force {
			b = append(b, `,"force":true`...)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// LeaseItem names a check's counter for shared/lease: its item's "key"
// and "spec" members.
func LeaseItem(c Check) string { return string(appendCounter(make([]byte, 0, 160), c.Key, c.Spec)) }

// appendCounter writes the "key" and "spec" members of an item.
func appendCounter(b []byte, key counter.Key, spec window.Spec) []byte {
	b = append(b, `"key":{"app":`...)
	b = appendString(b, key.App)
	if key.Product != "" {
		b = append(b, `,"product":`...)
		b = appendString(b, key.Product)
	}
	if key.Operation != "" {
		b = append(b, `,"operation":`...)
		b = appendString(b, key.Operation)
	}
	b = append(b, `,"kind":`...)
	b = appendString(b, string(key.Kind))
	b = append(b, `},"spec":{"limit":`...)
	b = strconv.AppendInt(b, spec.Limit, 10)
	b = append(b, `,"interval":`...)
	b = strconv.AppendInt(b, int64(spec.Interval), 10)
	b = append(b, `,"timeUnit":"`...)
	b = append(b, spec.Unit.String()...)
	b = append(b, `","window":"`...)
	b = append(b, spec.Kind.String()...)
	return append(b, `"}`...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// Result is one item of a consume answer.
type Result struct {
	Allowed    bool
	Limit      int64
	Used       int64
	Remaining  int64
	ResetAfter time.Duration
	RetryAfter time.Duration
}

// State turns a result received at now into a counter state.
func (r Result) State(now time.Time) State {
	return State{Allowed: r.Allowed, Limit: r.Limit, Remaining: r.Remaining, Reset: now.Add(r.ResetAfter), RetryAfter: r.RetryAfter}
}

// ErrKeystore marks every answer that is not a usable consume result; the
// filter applies its failure mode.
var ErrKeystore = errors.New("keystore answer unusable")

// DecodeConsume reads the keystore's answer to a consume of want items.
func DecodeConsume(status int, body []byte, want int) ([]Result, error) {
	// The answer is read with the same strict, non-recursive view as client bodies.
	doc, perr := reqview.Parse(body, reqview.Limits{MaxBytes: maxAnswerBytes, MaxDepth: 16})
	if status != 200 {
		msg := ""
		if perr == nil {
			msg = doc.Root().Get("error").Get("code").Str()
		}
		if msg == "" {
			msg = "no error code"
		}
		return nil, config.Wrap("", ErrKeystore, ": status "+strconv.Itoa(status)+" ("+clip(msg)+")")
	}
	if perr != nil {
		return nil, config.Wrap("", ErrKeystore, ": body is not JSON")
	}
	res := doc.Root().Get("results")
	if res.Kind() != reqview.Array {
		return nil, config.Wrap("", ErrKeystore, ": no results array")
	}
	if n := res.Len(); n != want {
		return nil, config.Wrap("", ErrKeystore, ": "+strconv.Itoa(n)+" results for "+strconv.Itoa(want)+" items")
	}
	out := make([]Result, want)
	var err error
	res.Elems(func(i int, r reqview.Value) bool {
		num := func(field string) int64 {
			n, ok := r.Get(field).Int()
			if !ok || n < 0 || n > window.MaxLimit {
				if err == nil {
					err = config.Wrap("", ErrKeystore, ": results["+strconv.Itoa(i)+"]."+field+" is not a count")
				}
				return 0
			}
			return n
		}
		allowed, ok := r.Get("allowed").Bool()
		if !ok {
			err = config.Wrap("", ErrKeystore, ": results["+strconv.Itoa(i)+"].allowed is not a boolean")
			return false
		}
		out[i] = Result{Allowed: allowed, Limit: num("limit"), Used: num("used"), Remaining: num("remaining"),
			ResetAfter: time.Duration(num("reset_after_ms")) * time.Millisecond,
			RetryAfter: time.Duration(num("retry_after_ms")) * time.Millisecond}
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// maxAnswerBytes bounds a keystore answer the filter will parse.
const maxAnswerBytes = 1 << 20

func clip(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

// CalloutHeaders are the headers of a consume callout.
func (k Keystore) CalloutHeaders() [][2]string {
	h := [][2]string{{":method", "POST"}, {":path", k.Path}, {":authority", k.Authority}, {"content-type", "application/json"}}
	return k.AppendAuth(append(h, k.Headers...))
}
