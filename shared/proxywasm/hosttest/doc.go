// Package hosttest is an in-memory proxy-wasm host for native Go tests: a
// filter's glue (its PluginContext and HttpContexts) runs in the test binary
// itself, so it can be covered, debugged and table-tested before it is built
// to Wasm. It follows the Envoy 1.40 behaviours shared/wasmhost documents and
// verifies against real Envoy; what it does not model is listed below.
//
//	h := hosttest.New(t, hosttest.Config{PluginConfig: []byte(`{...}`)})
//	res := h.Do(hosttest.Request{Method: "POST", Path: "/v1/chat/completions", Body: body})
//	require.Equal(t, 200, res.Status)
//
// Do drives one stream like Envoy's connection manager with this filter and
// then the router: request headers, body and trailers, pausing and resuming,
// callouts (answered by Config.Callouts or left pending), the upstream
// (Config.Upstream or a plain 200), then the response through the filter.
// NewStream gives the per-callback API for the cases Do cannot express.
//
// Envoy behaviours kept:
//   - a request headers PAUSE stops all iteration unless
//     Config.AllowOnHeadersStopIteration: body frames wait and arrive in one
//     body callback once the stream resumes;
//   - body PAUSE buffers: the next body callback reports the accumulated size
//     and the request body buffer holds all of it;
//   - once request headers continue, the request map is gone: get answers
//     BAD_ARGUMENT, get-pairs an empty map, request.* properties NOT_FOUND;
//   - a local reply is deferred until the callback returns, then runs through
//     this filter's response callbacks and the upstream is never reached;
//     sent from the response headers callback it replaces the response;
//     request callbacks after it are not delivered; continue is ignored;
//   - set_buffer_bytes: start 0 drains size bytes and prepends, start at or
//     past the end appends, anything else BAD_ARGUMENT; content-length is
//     never fixed by the host;
//   - callouts: tokens 4, 8, ...; unknown cluster or a missing :method,
//     :path or :authority is BAD_ARGUMENT; the answer arrives later on the
//     root context and its maps and body are readable only then;
//   - shared data CAS from 1, changed by every set; queues from 1, enqueue
//     wakes OnQueueReady after the current callback; metrics ids 4n+type,
//     counters reject increments <= 0, histograms only record;
//   - ticks only when the test calls Tick; clear_route_cache is counted.
//
// Differences: one VM (one worker) per host; no WASI, no memory limits, no
// traps (a panic the binding does not recover fails the test); the upstream
// is a function, not a cluster; timeouts of callouts are the test's to
// simulate (Respond with a 504 or a failure).
package hosttest
