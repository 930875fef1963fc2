//go:build !wasip1

package hostctx

// statusUnimplemented is proxy-wasm's UNIMPLEMENTED: native builds have no host.
const statusUnimplemented = 12

func setEffectiveContext(uint32) uint32 { return statusUnimplemented }
