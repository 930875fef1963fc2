// Command wasm is the apikey filter's standalone module (build/apikey.wasm).
package main

import (
	"github.com/tollgate/tollgate/filters/apikey"
	"github.com/tollgate/tollgate/shared/proxywasm"
)

func init() { proxywasm.SetPluginFactory(apikey.New) }

func main() {}
