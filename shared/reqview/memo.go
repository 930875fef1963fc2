package reqview

import "bytes"

// Memo remembers one stream's last successful ParseRequest, so that the
// filters that read the same request body (several policies in one fused
// filter, or one filter reading it twice) parse it once. It is keyed on the
// exact bytes: a body a filter replaced parses afresh. A parse is reused
// only where it proves the answer under the new limits too: the body fits
// them and it was parsed with no deeper a nesting limit. Refusals are not
// remembered, so each filter refuses in its own words. The parsed view is
// shared and reads the memo's own copy of the body: callers must not change
// it. A nil *Memo parses every time.
type Memo struct {
	body []byte
	lim  Limits
	req  *Request
}

// ParseRequest is the package's ParseRequest through the memo.
func (m *Memo) ParseRequest(body []byte, lim Limits) (*Request, error) {
	if m == nil {
		return ParseRequest(body, lim)
	}
	lim = lim.withDefaults()
	if m.req != nil && len(body) <= lim.MaxBytes && m.lim.MaxDepth <= lim.MaxDepth && bytes.Equal(m.body, body) {
		return m.req, nil
	}
	// The view is parsed from the memo's own copy: a filter that changes its
	// body slice in place later cannot change what the next one is shown.
	own := append(m.body[:0:0], body...)
	req, err := ParseRequest(own, lim)
	if err != nil {
		return nil, err
	}
	m.body, m.lim, m.req = own, lim, req
	return req, nil
}

// Reset forgets the remembered parse (and the body it holds).
func (m *Memo) Reset() {
	if m != nil {
		*m = Memo{}
	}
}
