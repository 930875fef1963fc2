//go:build wasip1

package hostctx

//go:wasmimport env proxy_set_effective_context
func proxySetEffectiveContext(contextID uint32) uint32

func setEffectiveContext(contextID uint32) uint32 { return proxySetEffectiveContext(contextID) }
