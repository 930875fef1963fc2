// Command emptyfilter is the Tollgate proxy-wasm binding with a plugin that
// does nothing: what the shared dispatch costs per request by itself.
package main

import "github.com/tollgate/tollgate/shared/proxywasm"

func init() {
	proxywasm.SetPluginFactory(func(uint32) proxywasm.PluginContext { return proxywasm.DefaultPluginContext{} })
}

func main() {}
