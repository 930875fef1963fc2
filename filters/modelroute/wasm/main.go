// Command wasm is the modelroute filter's standalone module (build/modelroute.wasm).
package main

import (
	"github.com/tollgate/tollgate/filters/modelroute"
	"github.com/tollgate/tollgate/shared/proxywasm"
)

func init() { proxywasm.SetPluginFactory(modelroute.New) }

func main() {}
