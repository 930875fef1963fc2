package proxywasm

import (
	"errors"
	"strconv"
)

// Status is a proxy-wasm host call result code; non-OK values become errors.
type Status uint32

// Status codes defined by ABI v0.2.1.
const (
	StatusOK                   Status = 0
	StatusNotFound             Status = 1
	StatusBadArgument          Status = 2
	StatusSerializationFailure Status = 3
	StatusParseFailure         Status = 4
	StatusInvalidMemoryAccess  Status = 6
	StatusEmpty                Status = 7
	StatusCASMismatch          Status = 8
	StatusInternalFailure      Status = 10
	StatusUnimplemented        Status = 12
)

// StatusError is the typed error for a non-OK host status, comparable with errors.Is against the Err* values.
type StatusError struct {
	Status Status
}

func (e *StatusError) Error() string {
	switch e.Status {
	case StatusNotFound:
		return "proxy-wasm: not found"
	case StatusBadArgument:
		return "proxy-wasm: bad argument"
	case StatusSerializationFailure:
		return "proxy-wasm: serialization failure"
	case StatusParseFailure:
		return "proxy-wasm: parse failure"
	case StatusInvalidMemoryAccess:
		return "proxy-wasm: invalid memory access"
	case StatusEmpty:
		return "proxy-wasm: empty"
	case StatusCASMismatch:
		return "proxy-wasm: cas mismatch"
	case StatusInternalFailure:
		return "proxy-wasm: internal failure"
	case StatusUnimplemented:
		return "proxy-wasm: unimplemented"
	}
	return "proxy-wasm: status " + strconv.FormatUint(uint64(e.Status), 10)
}

// Is lets errors.Is match two StatusErrors by code.
func (e *StatusError) Is(target error) bool {
	var t *StatusError
	return errors.As(target, &t) && t.Status == e.Status
}

// Sentinel errors, one per status, for errors.Is checks in plugin code.
var (
	ErrNotFound             error = &StatusError{StatusNotFound}
	ErrBadArgument          error = &StatusError{StatusBadArgument}
	ErrSerializationFailure error = &StatusError{StatusSerializationFailure}
	ErrParseFailure         error = &StatusError{StatusParseFailure}
	ErrInvalidMemoryAccess  error = &StatusError{StatusInvalidMemoryAccess}
	ErrEmpty                error = &StatusError{StatusEmpty}
	ErrCASMismatch          error = &StatusError{StatusCASMismatch}
	ErrInternalFailure      error = &StatusError{StatusInternalFailure}
	ErrUnimplemented        error = &StatusError{StatusUnimplemented}
)

// StatusToError converts a host status into nil or the matching sentinel error.
func StatusToError(s Status) error {
	switch s {
	case StatusOK:
		return nil
	case StatusNotFound:
		return ErrNotFound
	case StatusBadArgument:
		return ErrBadArgument
	case StatusSerializationFailure:
		return ErrSerializationFailure
	case StatusParseFailure:
		return ErrParseFailure
	case StatusInvalidMemoryAccess:
		return ErrInvalidMemoryAccess
	case StatusEmpty:
		return ErrEmpty
	case StatusCASMismatch:
		return ErrCASMismatch
	case StatusInternalFailure:
		return ErrInternalFailure
	case StatusUnimplemented:
		return ErrUnimplemented
	}
	return &StatusError{s}
}

// Action tells the host whether to continue the stream after a callback.
type Action uint32

const (
	// ActionContinue passes the headers or data on to the next filter.
	ActionContinue Action = 0
	// ActionPause stops iteration; for body callbacks it buffers until end of stream.
	ActionPause Action = 1
)

// LogLevel is the proxy-wasm log level.
type LogLevel uint32

// Log levels defined by the ABI.
const (
	LogLevelTrace LogLevel = iota
	LogLevelDebug
	LogLevelInfo
	LogLevelWarn
	LogLevelError
	LogLevelCritical
)

// MapType selects one of the host's header maps.
type MapType uint32

// Header map types defined by the ABI.
const (
	MapRequestHeaders           MapType = 0
	MapRequestTrailers          MapType = 1
	MapResponseHeaders          MapType = 2
	MapResponseTrailers         MapType = 3
	MapGrpcInitialMetadata      MapType = 4
	MapGrpcTrailingMetadata     MapType = 5
	MapHttpCallResponseHeaders  MapType = 6
	MapHttpCallResponseTrailers MapType = 7
)

// BufferType selects one of the host's byte buffers.
type BufferType uint32

// Buffer types defined by the ABI.
const (
	BufferRequestBody          BufferType = 0
	BufferResponseBody         BufferType = 1
	BufferDownstreamData       BufferType = 2
	BufferUpstreamData         BufferType = 3
	BufferHttpCallResponseBody BufferType = 4
	BufferGrpcReceive          BufferType = 5
	BufferVMConfiguration      BufferType = 6
	BufferPluginConfiguration  BufferType = 7
	BufferForeignCallArgs      BufferType = 8
)

// StreamType selects the direction proxy_continue_stream / proxy_close_stream act on.
type StreamType uint32

// Stream types defined by the ABI.
const (
	StreamRequest    StreamType = 0
	StreamResponse   StreamType = 1
	StreamDownstream StreamType = 2
	StreamUpstream   StreamType = 3
)

// MetricType is the kind of a host metric.
type MetricType uint32

// Metric types defined by the ABI.
const (
	MetricCounter   MetricType = 0
	MetricGauge     MetricType = 1
	MetricHistogram MetricType = 2
)
