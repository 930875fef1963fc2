//go:build wasip1

package proxywasm

// Raw host imports of ABI v0.2.1; every one returns a Status code.

import "unsafe"

//go:wasmimport env proxy_log
func proxy_log(level uint32, msg unsafe.Pointer, msgLen uint32) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxy_set_tick_period_milliseconds(ms uint32) uint32

//go:wasmimport env proxy_get_buffer_status
func proxy_get_buffer_status(bufferType uint32, size *uint32, flags *uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxy_get_buffer_bytes(bufferType, start, maxSize uint32, retData *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_set_buffer_bytes
func proxy_set_buffer_bytes(bufferType, start, size uint32, data unsafe.Pointer, dataLen uint32) uint32

//go:wasmimport env proxy_get_header_map_pairs
func proxy_get_header_map_pairs(mapType uint32, retData *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_set_header_map_pairs
func proxy_set_header_map_pairs(mapType uint32, data unsafe.Pointer, dataLen uint32) uint32

//go:wasmimport env proxy_get_header_map_value
func proxy_get_header_map_value(mapType uint32, key unsafe.Pointer, keyLen uint32, retData *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_add_header_map_value
func proxy_add_header_map_value(mapType uint32, key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32) uint32

//go:wasmimport env proxy_replace_header_map_value
func proxy_replace_header_map_value(mapType uint32, key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32) uint32

//go:wasmimport env proxy_remove_header_map_value
func proxy_remove_header_map_value(mapType uint32, key unsafe.Pointer, keyLen uint32) uint32

//go:wasmimport env proxy_continue_stream
func proxy_continue_stream(streamType uint32) uint32

//go:wasmimport env proxy_send_local_response
func proxy_send_local_response(status uint32, details unsafe.Pointer, detailsLen uint32, body unsafe.Pointer, bodyLen uint32, headers unsafe.Pointer, headersLen uint32, grpcStatus int32) uint32

//go:wasmimport env proxy_http_call
func proxy_http_call(cluster unsafe.Pointer, clusterLen uint32, headers unsafe.Pointer, headersLen uint32, body unsafe.Pointer, bodyLen uint32, trailers unsafe.Pointer, trailersLen uint32, timeoutMs uint32, token *uint32) uint32

//go:wasmimport env proxy_get_shared_data
func proxy_get_shared_data(key unsafe.Pointer, keyLen uint32, retData *uint32, retSize *uint32, cas *uint32) uint32

//go:wasmimport env proxy_set_shared_data
func proxy_set_shared_data(key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32, cas uint32) uint32

//go:wasmimport env proxy_register_shared_queue
func proxy_register_shared_queue(name unsafe.Pointer, nameLen uint32, queueID *uint32) uint32

//go:wasmimport env proxy_resolve_shared_queue
func proxy_resolve_shared_queue(vmID unsafe.Pointer, vmIDLen uint32, name unsafe.Pointer, nameLen uint32, queueID *uint32) uint32

//go:wasmimport env proxy_enqueue_shared_queue
func proxy_enqueue_shared_queue(queueID uint32, data unsafe.Pointer, dataLen uint32) uint32

//go:wasmimport env proxy_dequeue_shared_queue
func proxy_dequeue_shared_queue(queueID uint32, retData *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_define_metric
func proxy_define_metric(metricType uint32, name unsafe.Pointer, nameLen uint32, metricID *uint32) uint32

//go:wasmimport env proxy_increment_metric
func proxy_increment_metric(metricID uint32, delta int64) uint32

//go:wasmimport env proxy_record_metric
func proxy_record_metric(metricID uint32, value uint64) uint32

//go:wasmimport env proxy_get_metric
func proxy_get_metric(metricID uint32, value *uint64) uint32

//go:wasmimport env proxy_get_property
func proxy_get_property(path unsafe.Pointer, pathLen uint32, retData *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_set_property
func proxy_set_property(path unsafe.Pointer, pathLen uint32, value unsafe.Pointer, valueLen uint32) uint32

//go:wasmimport env proxy_call_foreign_function
func proxy_call_foreign_function(name unsafe.Pointer, nameLen uint32, args unsafe.Pointer, argsLen uint32, retData *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_set_effective_context
func proxy_set_effective_context(contextID uint32) uint32

//go:wasmimport env proxy_done
func proxy_done() uint32
