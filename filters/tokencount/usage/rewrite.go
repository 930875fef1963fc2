package usage

import (
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// IncludeUsage makes a streamed /v1/chat/completions or /v1/completions
// request ask the upstream for a final usage chunk, by setting
// stream_options.include_usage to true. clientAsked reports whether the
// client had already asked for it; when it had not, the filter must remove
// the usage chunk again (IsUsageOnlyChunk) before the client sees it.
// Requests that are not streamed, or already ask, come back unchanged
// (out is body). Other stream_options fields are kept.
func IncludeUsage(api API, body []byte) (out []byte, clientAsked bool, err error) {
	if api != APIChatCompletions && api != APICompletions {
		return body, false, nil
	}
	if !gjson.ValidBytes(body) {
		return nil, false, bad("", "the body is not valid JSON")
	}
	root := gjson.Parse(unsafeString(body))
	if !root.IsObject() {
		return nil, false, bad("", "the body must be a JSON object")
	}
	var o object
	o.index(root)
	if k, dup := o.duplicate("stream", "stream_options"); dup {
		return nil, false, bad(k, "must not appear more than once")
	}
	stream, err := o.optBool("stream")
	if err != nil || !stream {
		return body, false, err
	}
	so := o.get("stream_options")
	switch {
	case !so.Exists() || so.Type == gjson.Null:
		out, err = sjson.SetRawBytes(body, "stream_options", []byte(`{"include_usage":true}`))
	case !so.IsObject():
		return nil, false, bad("stream_options", "must be an object")
	default:
		var sop object
		sop.index(so)
		if k, dup := sop.duplicate("include_usage"); dup {
			return nil, false, bad(k, "must not appear more than once")
		}
		asked, err := sop.optBool("include_usage")
		if err != nil {
			return nil, false, err
		}
		if asked {
			return body, true, nil
		}
		out, err = sjson.SetBytes(body, "stream_options.include_usage", true)
		if err != nil {
			return nil, false, bad("stream_options", err.Error())
		}
		return out, false, nil
	}
	if err != nil {
		return nil, false, bad("stream_options", err.Error())
	}
	return out, false, nil
}
