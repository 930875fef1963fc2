package wasmhost

import (
	"fmt"
	"time"
)

// Status is a proxy-wasm ABI result code returned by every env import.
type Status uint32

// ABI v0.2.1 status codes.
const (
	StatusOK                  Status = 0
	StatusNotFound            Status = 1
	StatusBadArgument         Status = 2
	StatusSerializationFailed Status = 3
	StatusParseFailure        Status = 4
	StatusInvalidMemoryAccess Status = 6
	StatusEmpty               Status = 7
	StatusCasMismatch         Status = 8
	StatusInternalFailure     Status = 10
	StatusBrokenConnection    Status = 11
	StatusUnimplemented       Status = 12
)

// LogLevel is the proxy-wasm log level (Envoy's spdlog levels).
type LogLevel uint32

// Log levels of proxy_log.
const (
	LogTrace LogLevel = iota
	LogDebug
	LogInfo
	LogWarn
	LogError
	LogCritical
)

// String returns the lower-case level name.
func (l LogLevel) String() string {
	switch l {
	case LogTrace:
		return "trace"
	case LogDebug:
		return "debug"
	case LogInfo:
		return "info"
	case LogWarn:
		return "warn"
	case LogError:
		return "error"
	case LogCritical:
		return "critical"
	}
	return fmt.Sprintf("level(%d)", uint32(l))
}

// LogEntry is one message logged by a VM (proxy_log, or stdout/stderr
// through WASI fd_write) or by the host about the VM (traps, failures).
type LogEntry struct {
	Level   LogLevel
	Message string
	// Context is the context id the call was attributed to.
	Context uint32
	Time    time.Time
}

// Map types of the header map functions.
const (
	mapRequestHeaders       = 0
	mapRequestTrailers      = 1
	mapResponseHeaders      = 2
	mapResponseTrailers     = 3
	mapGrpcInitialMetadata  = 4
	mapGrpcTrailingMetadata = 5
	mapHTTPCallHeaders      = 6
	mapHTTPCallTrailers     = 7
	mapMax                  = 7
)

// Buffer types of the buffer functions.
const (
	bufRequestBody   = 0
	bufResponseBody  = 1
	bufDownstream    = 2
	bufUpstream      = 3
	bufHTTPCallBody  = 4
	bufGrpcReceive   = 5
	bufVMConfig      = 6
	bufPluginConfig  = 7
	bufForeignArgs   = 8
	bufMax           = 8
	streamRequest    = 0
	streamResponse   = 1
	streamDownstream = 2
	streamUpstream   = 3
	streamMax        = 3
)

// MetricType is the type passed to proxy_define_metric.
type MetricType uint32

// Metric types.
const (
	MetricCounter   MetricType = 0
	MetricGauge     MetricType = 1
	MetricHistogram MetricType = 2
)

// HeadersStatus is Envoy's FilterHeadersStatus after the conversion Envoy
// applies to a plugin's return value.
type HeadersStatus int

// Envoy FilterHeadersStatus values.
const (
	HeadersContinue HeadersStatus = iota
	HeadersStopIteration
	HeadersContinueAndDontEndStream
	HeadersStopAllIterationAndBuffer
	HeadersStopAllIterationAndWatermark
)

// String names the status like Envoy does.
func (s HeadersStatus) String() string {
	switch s {
	case HeadersContinue:
		return "Continue"
	case HeadersStopIteration:
		return "StopIteration"
	case HeadersContinueAndDontEndStream:
		return "ContinueAndDontEndStream"
	case HeadersStopAllIterationAndBuffer:
		return "StopAllIterationAndBuffer"
	case HeadersStopAllIterationAndWatermark:
		return "StopAllIterationAndWatermark"
	}
	return fmt.Sprintf("HeadersStatus(%d)", int(s))
}

// DataStatus is Envoy's FilterDataStatus after conversion.
type DataStatus int

// Envoy FilterDataStatus values.
const (
	DataContinue DataStatus = iota
	DataStopIterationAndBuffer
	DataStopIterationAndWatermark
	DataStopIterationNoBuffer
)

// String names the status like Envoy does.
func (s DataStatus) String() string {
	switch s {
	case DataContinue:
		return "Continue"
	case DataStopIterationAndBuffer:
		return "StopIterationAndBuffer"
	case DataStopIterationAndWatermark:
		return "StopIterationAndWatermark"
	case DataStopIterationNoBuffer:
		return "StopIterationNoBuffer"
	}
	return fmt.Sprintf("DataStatus(%d)", int(s))
}

// TrailersStatus is Envoy's FilterTrailersStatus after conversion.
type TrailersStatus int

// Envoy FilterTrailersStatus values.
const (
	TrailersContinue TrailersStatus = iota
	TrailersStopIteration
)

// String names the status like Envoy does.
func (s TrailersStatus) String() string {
	if s == TrailersContinue {
		return "Continue"
	}
	return "StopIteration"
}

// FailurePolicy is the PluginConfig failure_policy: what streams get once
// the VM has failed (trapped).
type FailurePolicy int

// Failure policies of Envoy's wasm PluginConfig.
const (
	// FailClosed answers 503 to every stream once the VM has failed (default).
	FailClosed FailurePolicy = iota
	// FailOpen skips the filter for new streams once the VM has failed; the
	// stream whose callback trapped still gets 503, as Envoy 1.40 does.
	FailOpen
	// FailReload recreates the VM for a new stream once ReloadBackoff has
	// passed since the last load; until then streams get 503.
	FailReload
)

// FailState says why a VM stopped working.
type FailState int

// Fail states (subset of proxy-wasm-cpp-host's FailState).
const (
	FailNone FailState = iota
	FailUnableToInitialize
	FailStart
	FailConfigure
	FailRuntimeError
)

// String names the state.
func (f FailState) String() string {
	switch f {
	case FailNone:
		return "ok"
	case FailUnableToInitialize:
		return "unable to initialize"
	case FailStart:
		return "start failed"
	case FailConfigure:
		return "configure failed"
	case FailRuntimeError:
		return "runtime error"
	}
	return fmt.Sprintf("FailState(%d)", int(f))
}
