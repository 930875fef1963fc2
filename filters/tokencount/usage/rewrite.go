package usage

import (
	"sort"
	"strconv"

	"github.com/tollgate/tollgate/shared/reqview"
)

// IncludeUsage makes a streamed /v1/chat/completions or /v1/completions
// request ask the upstream for a final usage chunk, by setting
// stream_options.include_usage to true. clientAsked reports whether the
// client had already asked for it; when it had not, the filter must remove
// the usage chunk again (IsUsageOnlyChunk) before the client sees it.
// Requests that are not streamed, or already ask, come back unchanged
// (out is body). Other stream_options fields are kept. The body is read
// through the canonical request view; its refusals come back as errors.
func IncludeUsage(api API, body []byte) (out []byte, clientAsked bool, err error) {
	if api != APIChatCompletions && api != APICompletions {
		return body, false, nil
	}
	rv, err := reqview.ParseRequest(body, reqview.Limits{MaxBytes: len(body) + 1})
	if err != nil {
		return nil, false, ViewError(err)
	}
	if !rv.Stream {
		return body, false, nil
	}
	if rv.IncludeUsage {
		return body, true, nil
	}
	so := rv.StreamOptions
	switch so.Kind() {
	case reqview.Invalid:
		return insertMember(body, rv.Root(), `"stream_options":{"include_usage":true}`), false, nil
	case reqview.Null:
		return splice(body, []edit{{so, `{"include_usage":true}`}}), false, nil
	}
	if iu := so.Get("include_usage"); iu.Exists() {
		return splice(body, []edit{{iu, "true"}}), false, nil // false or null
	}
	return insertMember(body, so, `"include_usage":true`), false, nil
}

// edit replaces one value of a body by new text.
type edit struct {
	v    reqview.Value
	text string
}

// splice applies edits (of distinct values) to a copy of body.
func splice(body []byte, edits []edit) []byte {
	sort.Slice(edits, func(a, b int) bool {
		sa, _ := edits[a].v.Span()
		sb, _ := edits[b].v.Span()
		return sa < sb
	})
	out := make([]byte, 0, len(body)+32)
	last := 0
	for _, e := range edits {
		start, end := e.v.Span()
		out = append(out, body[last:start]...)
		out = append(out, e.text...)
		last = end
	}
	return append(out, body[last:]...)
}

// insertMember adds member (`"key":value`) first in the object obj of body.
func insertMember(body []byte, obj reqview.Value, member string) []byte {
	start, _ := obj.Span() // obj's '{'
	out := make([]byte, 0, len(body)+len(member)+1)
	out = append(out, body[:start+1]...)
	out = append(out, member...)
	if obj.Len() > 0 {
		out = append(out, ',')
	}
	return append(out, body[start+1:]...)
}

// OutputKeys are the body members that cap an API's output per choice, the
// one SetMaxOutput inserts first. (Embeddings generate no output.)
func OutputKeys(api API) []string {
	switch api {
	case APIChatCompletions:
		return []string{"max_completion_tokens", "max_tokens"}
	case APICompletions, APIAnthropicMessages:
		return []string{"max_tokens"}
	}
	return nil
}

// SetMaxOutput caps a request's output per choice at n: every output-cap
// member the body has (OutputKeys; a null one too) gets the value n, and a
// body with none gets the first key inserted first in its object. The body
// is read through the canonical request view (so no case or escape
// variant of the keys can hide a second cap); the result is a new slice.
func SetMaxOutput(api API, body []byte, n int64) ([]byte, error) {
	if len(OutputKeys(api)) == 0 {
		return body, nil
	}
	rv, err := reqview.ParseRequest(body, reqview.Limits{MaxBytes: len(body) + 1})
	if err != nil {
		return nil, ViewError(err)
	}
	return SetMaxOutputView(api, rv, n), nil
}

// SetMaxOutputView is SetMaxOutput on a body already parsed (its spans).
func SetMaxOutputView(api API, rv *reqview.Request, n int64) []byte {
	body := rv.Doc.Body()
	keys := OutputKeys(api)
	if len(keys) == 0 {
		return body
	}
	val := strconv.FormatInt(n, 10)
	var edits []edit
	for _, k := range keys {
		if v := rv.Root().Get(k); v.Exists() {
			edits = append(edits, edit{v, val})
		}
	}
	if len(edits) == 0 {
		return insertMember(body, rv.Root(), `"`+keys[0]+`":`+val)
	}
	return splice(body, edits)
}
