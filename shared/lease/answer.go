package lease

import (
	"errors"
	"strconv"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/reqview"
)

// ErrKeystore marks a lease callout the keystore did not answer usefully.
var ErrKeystore = errors.New("lease: keystore error")

// result is one item of the keystore's answer.
type result struct {
	id                      string
	held                    int64
	limit, remaining, reset int64
	validFor                int64
	lost                    bool
	err                     error
}

// parseAnswer reads the answer to a lease callout of n items.
func parseAnswer(failed bool, status int, body []byte, n int) ([]result, error) {
	if failed {
		return nil, config.Wrap("", ErrKeystore, ": no response")
	}
	if status != 200 {
		return nil, config.Wrap("", ErrKeystore, ": status "+strconv.Itoa(status))
	}
	doc, err := reqview.Parse(body, reqview.Limits{MaxBytes: len(body) + 1, MaxDepth: 16})
	if err != nil {
		return nil, config.Wrap("", ErrKeystore, ": the answer is not JSON")
	}
	rs := doc.Root().Get("results")
	if rs.Kind() != reqview.Array || rs.Len() != n {
		return nil, config.Wrap("", ErrKeystore, ": want "+strconv.Itoa(n)+" results")
	}
	out := make([]result, n)
	for i := range n {
		v := rs.Index(i)
		if e := v.Get("error"); e.Exists() {
			out[i].err = config.Wrap("", ErrKeystore, ": "+e.Get("code").Str()+": "+config.Clip(e.Get("message").Str(), 200))
			continue
		}
		held, ok1 := v.Get("held").Int()
		limit, ok2 := v.Get("limit").Int()
		if !ok1 || !ok2 || held < 0 || held > maxAmount || v.Get("id").Kind() != reqview.String {
			out[i].err = config.Wrap("", ErrKeystore, ": result "+strconv.Itoa(i)+" lacks id, held or limit")
			continue
		}
		num := func(key string) int64 {
			x, _ := v.Get(key).Int()
			return min(max(x, 0), 1<<62)
		}
		lost, _ := v.Get("lost").Bool()
		out[i] = result{id: v.Get("id").Str(), held: held, limit: max(limit, 0), remaining: num("remaining"),
			reset: num("reset"), validFor: num("valid_for_ms"), lost: lost}
		if out[i].id == "" {
			out[i].held = 0
		}
	}
	return out, nil
}
