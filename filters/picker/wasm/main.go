// Command wasm is the picker filter's standalone module (build/picker.wasm).
package main

import (
	"github.com/tollgate/tollgate/filters/picker"
	"github.com/tollgate/tollgate/shared/proxywasm"
)

func init() { proxywasm.SetPluginFactory(picker.New) }

func main() {}
