// Command suite is the Tollgate suite module (build/tollgate.wasm): every
// filter in one Go runtime, each registered under its own root_id. Envoy
// configurations that give all Tollgate filters the same vm_config (same
// vm_id, same code) run one VM per worker for the whole chain instead of one
// per filter: one Go heap, one runtime and one V8 compilation.
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

func init() {
	proxywasm.RegisterPlugin(apikey.RootID, apikey.New)
	proxywasm.RegisterPlugin(quota.RootID, quota.New)
	proxywasm.RegisterPlugin(modelroute.RootID, modelroute.New)
	proxywasm.RegisterPlugin(tokencount.RootID, tokencount.New)
	proxywasm.RegisterPlugin(picker.RootID, picker.New)
	proxywasm.RegisterPlugin(guard.RootID, guard.New)
}

func main() {}
