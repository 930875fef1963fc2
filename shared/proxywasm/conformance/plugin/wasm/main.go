// Command wasm is the conformance plugin's module (build/conformance.wasm).
package main

import (
	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/proxywasm/conformance/plugin"
)

func init() { proxywasm.SetPluginFactory(plugin.New) }

func main() {}
