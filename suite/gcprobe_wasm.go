//go:build wasip1 && gcprobe

package main

// A test-only build (go build -tags gcprobe, see gc_test.go): the fused
// filter with one more link, "gcprobe", that logs the Go runtime's own
// allocation and collector counters when a request carries the header
// x-gcprobe, so a test can read what the VM allocates and collects
// per request, and ("x-gcprobe: allocs") its allocation profile. It is
// never part of build/tollgate.wasm.

import (
	"bytes"
	"encoding/base64"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/shared/proxywasm"
)

// gcProbeMetrics are the runtime/metrics samples the probe logs, in order.
var gcProbeMetrics = []string{
	"/gc/heap/allocs:bytes",
	"/gc/heap/allocs:objects",
	"/gc/cycles/total:gc-cycles",
	"/gc/heap/live:bytes",
	"/gc/heap/goal:bytes",
	"/memory/classes/total:bytes",
	"/gc/gogc:percent",
	"/gc/gomemlimit:bytes",
}

func init() {
	if os.Getenv("GCPROBE_ALLOCS") == "1" {
		runtime.MemProfileRate = 1 // every allocation, for "x-gcprobe: allocs"
	}
	links := append(FusedLinks(), proxywasm.Link{Name: "gcprobe", New: func(uint32) proxywasm.PluginContext { return gcProbe{} }})
	proxywasm.RegisterPlugin("tollgate-gcprobe", proxywasm.NewChain(links))
}

type gcProbe struct{ proxywasm.DefaultPluginContext }

func (gcProbe) OnPluginStart([]byte) error { return nil }

func (gcProbe) NewHttpContext(uint32) proxywasm.HttpContext { return gcProbeStream{} }

type gcProbeStream struct{ proxywasm.DefaultHttpContext }

func (gcProbeStream) OnRequestHeaders(int, bool) proxywasm.Action {
	mode, err := proxywasm.RequestHeaders.Get("x-gcprobe")
	if err != nil {
		return proxywasm.ActionContinue
	}
	if mode == "allocs" { // the allocation profile so far, base64 in one log line
		var buf bytes.Buffer
		if err := pprof.Lookup("allocs").WriteTo(&buf, 0); err != nil {
			proxywasm.Log(proxywasm.LogLevelError, "gcprobe: "+err.Error())
		}
		proxywasm.Log(proxywasm.LogLevelInfo, "gcprobe-allocs "+base64.StdEncoding.EncodeToString(buf.Bytes()))
		return proxywasm.ActionContinue
	}
	samples := make([]metrics.Sample, len(gcProbeMetrics))
	for i, name := range gcProbeMetrics {
		samples[i].Name = name
	}
	metrics.Read(samples)
	var b strings.Builder
	b.WriteString("gcprobe")
	for _, s := range samples {
		b.WriteString(" " + s.Name + "=")
		if s.Value.Kind() == metrics.KindUint64 {
			b.WriteString(strconv.FormatUint(s.Value.Uint64(), 10))
		} else {
			b.WriteString("?")
		}
	}
	proxywasm.Log(proxywasm.LogLevelInfo, b.String())
	return proxywasm.ActionContinue
}
