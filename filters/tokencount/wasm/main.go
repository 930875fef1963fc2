// Command wasm is the tokencount filter's standalone module (build/tokencount.wasm).
package main

import (
	"github.com/tollgate/tollgate/filters/tokencount"
	"github.com/tollgate/tollgate/shared/proxywasm"
)

func init() { proxywasm.SetPluginFactory(tokencount.New) }

func main() {}
