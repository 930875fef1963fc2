;; watnop: a proxy-wasm filter with no language runtime at all, in
;; WebAssembly text. Its callbacks return constants and it makes no host
;; call, so BenchmarkFilterAlone's "wat-nop" is what Envoy and V8 alone
;; charge for a Wasm filter's callbacks; against "nop" (the same callbacks
;; in upstream Go) it isolates the Go runtime's cost of entering an export.
;; nop.wasm is built from this file: wasm-as nop.wat -o nop.wasm (binaryen).
(module
  (memory (export "memory") 2)
  (func (export "proxy_abi_version_0_2_1"))
  ;; every allocation gets the same scratch page: nothing is kept
  (func (export "proxy_on_memory_allocate") (param i32) (result i32)
    (if (result i32) (i32.gt_u (local.get 0) (i32.const 65536))
      (then (i32.const 0))
      (else (i32.const 65536))))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))
