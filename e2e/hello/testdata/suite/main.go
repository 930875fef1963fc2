// Command suite is a module holding one filter under two root_ids, the way
// a suite module registers every filter: proxywasm.RegisterPlugin picks the
// constructor by the root_id each PluginConfig names.
package main

import (
	"github.com/tollgate/tollgate/examples/filter/hello"
	"github.com/tollgate/tollgate/shared/proxywasm"
)

func init() {
	proxywasm.RegisterPlugin(hello.RootID, hello.New)
	proxywasm.RegisterPlugin("hola", hello.New)
}

func main() {}
