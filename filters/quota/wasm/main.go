// Command wasm is the quota filter's standalone module (build/quota.wasm).
package main

import (
	"github.com/tollgate/tollgate/filters/quota"
	"github.com/tollgate/tollgate/shared/proxywasm"
)

func init() { proxywasm.SetPluginFactory(quota.New) }

func main() {}
