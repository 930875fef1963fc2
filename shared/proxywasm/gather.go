package proxywasm

// BodyHandler receives the outcome of gathering a whole request body.
type BodyHandler interface {
	// BodyComplete runs once with the whole body; its action ends the gathering callback.
	BodyComplete(body []byte) Action
	// BodyTooLarge runs when the body outgrows the limit, before it is all read.
	BodyTooLarge() Action
	// BodyUnreadable runs when the host cannot return the buffered body.
	BodyUnreadable(err error) Action
}

// BodyGatherer buffers a request body until its end (end_of_stream or
// trailers), for filters that decide on the whole body before the request
// goes upstream; one per stream. The plugin configuration must set
// allow_on_headers_stop_iteration, or Envoy never delivers the body.
type BodyGatherer struct {
	// Limit is the largest body accepted; 0 means no limit.
	Limit  int64
	active bool
}

// Start begins gathering: return its action from OnRequestHeaders.
func (g *BodyGatherer) Start() Action {
	g.active = true
	return ActionPause
}

// OnBody is OnRequestBody while gathering; without Start it continues.
func (g *BodyGatherer) OnBody(bodySize int, endOfStream bool, h BodyHandler) Action {
	if !g.active {
		return ActionContinue
	}
	if g.Limit > 0 && int64(bodySize) > g.Limit {
		g.active = false
		return h.BodyTooLarge()
	}
	if !endOfStream {
		return ActionPause
	}
	return g.complete(h)
}

// OnTrailers is OnRequestTrailers: trailers end a body whose data never
// carried end_of_stream (HTTP/2 requests with trailers).
func (g *BodyGatherer) OnTrailers(h BodyHandler) Action {
	if !g.active {
		return ActionContinue
	}
	return g.complete(h)
}

func (g *BodyGatherer) complete(h BodyHandler) Action {
	g.active = false
	body, err := RequestBody.GetAll()
	if err != nil {
		return h.BodyUnreadable(err)
	}
	return h.BodyComplete(body)
}
