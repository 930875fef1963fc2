// Command wasm is the hello filter's standalone module (build/hello.wasm).
package main

import (
	"github.com/tollgate/tollgate/examples/filter/hello"
	"github.com/tollgate/tollgate/shared/proxywasm"
)

// c-shared modules never run main: the filter registers in init.
func init() { proxywasm.SetPluginFactory(hello.New) }

func main() {}
