// Command suite is the Tollgate suite module (build/tollgate.wasm): every
// filter in one Go runtime, each registered under its own root_id. Envoy
// configurations that give all Tollgate filters the same vm_config (same
// vm_id, same code) run one VM per worker for the whole chain instead of one
// per filter: one Go heap, one runtime and one V8 compilation.
//
// The root_id "tollgate" is the fused filter: one Envoy filter that runs
// the policies in the product's order in one context (see FusedLinks).
package main

import (
	"github.com/tollgate/tollgate/filters/apikey"
	"github.com/tollgate/tollgate/filters/guard"
	"github.com/tollgate/tollgate/filters/modelroute"
	"github.com/tollgate/tollgate/filters/picker"
	"github.com/tollgate/tollgate/filters/quota"
	"github.com/tollgate/tollgate/filters/tokencount"
	"github.com/tollgate/tollgate/shared/proxywasm"
)

// FusedRootID is the root_id of the fused filter.
const FusedRootID = "tollgate"

// FusedLinks are the filters of the fused filter in the product's order:
// who is calling, how often, which model, is it safe, how many tokens,
// which endpoint. Each is configured by the section of its own name; the
// option is the one each needs alone (the body before deciding).
func FusedLinks() []proxywasm.Link {
	return []proxywasm.Link{
		{Name: apikey.RootID, New: apikey.New},
		{Name: quota.RootID, New: quota.New},
		{Name: modelroute.RootID, New: modelroute.New, AllowOnHeadersStopIteration: true},
		{Name: guard.RootID, New: guard.New, AllowOnHeadersStopIteration: true},
		{Name: tokencount.RootID, New: tokencount.New, AllowOnHeadersStopIteration: true},
		{Name: picker.RootID, New: picker.New, AllowOnHeadersStopIteration: true},
	}
}

func init() {
	proxywasm.RegisterPlugin(apikey.RootID, apikey.New)
	proxywasm.RegisterPlugin(quota.RootID, quota.New)
	proxywasm.RegisterPlugin(modelroute.RootID, modelroute.New)
	proxywasm.RegisterPlugin(tokencount.RootID, tokencount.New)
	proxywasm.RegisterPlugin(picker.RootID, picker.New)
	proxywasm.RegisterPlugin(guard.RootID, guard.New)
	proxywasm.RegisterPlugin(FusedRootID, proxywasm.NewChain(FusedLinks()))
}

func main() {}
