// Command wasm is the guard filter's standalone module (build/guard.wasm).
package main

import (
	"github.com/tollgate/tollgate/filters/guard"
	"github.com/tollgate/tollgate/shared/proxywasm"
)

func init() { proxywasm.SetPluginFactory(guard.New) }

func main() {}
