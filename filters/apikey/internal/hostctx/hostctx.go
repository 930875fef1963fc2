// Package hostctx lets the apikey filter act on a paused stream from a
// callback of another context (a timer tick, or another stream's callout
// response), which coalescing needs: the waiting streams are resumed when an
// answer arrives for someone else.
//
// shared/proxywasm makes the dispatching stream current for callout
// responses but exports no way to switch to an arbitrary stream, so this
// package declares proxy_set_effective_context itself. It can be replaced by
// a proxywasm export without changing callers.
package hostctx

import "errors"

// ErrRejected reports that the host refused to switch (unknown context id).
var ErrRejected = errors.New("hostctx: host refused proxy_set_effective_context")

// Set makes contextID the context that later host calls in this callback act on.
func Set(contextID uint32) error {
	if st := setEffectiveContext(contextID); st != 0 {
		return ErrRejected
	}
	return nil
}
