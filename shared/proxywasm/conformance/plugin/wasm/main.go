// Command wasm is the conformance plugin's module (build/conformance.wasm):
// the plugin under root_id "conformance", and the same plugin as the only
// link of a chain under plugin.ChainRootID.
package main

import (
	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/proxywasm/conformance/plugin"
)

func init() {
	proxywasm.RegisterPlugin("conformance", plugin.New)
	proxywasm.RegisterPlugin(plugin.ChainRootID, plugin.NewChained())
}

func main() {}
