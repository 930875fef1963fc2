package envoytest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"
)

// Latency summarises the round-trip times of a run of sequential requests.
type Latency struct {
	// N is the number of requests measured.
	N int
	// Min, Median, P90, P99 and Max are order statistics of the round trips.
	Min, Median, P90, P99, Max time.Duration
	// Mean is the arithmetic mean.
	Mean time.Duration
	// Status counts responses by status code.
	Status map[int]int
}

// String formats the summary on one line.
func (l Latency) String() string {
	return fmt.Sprintf("n=%d min=%v p50=%v p90=%v p99=%v max=%v mean=%v status=%v",
		l.N, l.Min, l.Median, l.P90, l.P99, l.Max, l.Mean, l.Status)
}

// MeasureLatency sends n requests one after another with client (each built by
// newReq, which may return the same method and URL every time) and returns
// their latency distribution, bodies read to the end. It is meant for "filter
// vs bare Envoy in the same run" comparisons in benchmarks, not for timed
// assertions in tests.
func MeasureLatency(ctx context.Context, client *http.Client, n int, newReq func(context.Context) (*http.Request, error)) (Latency, error) {
	if n <= 0 {
		return Latency{}, fmt.Errorf("envoytest: MeasureLatency needs n > 0, got %d", n)
	}
	times := make([]time.Duration, 0, n)
	status := map[int]int{}
	var total time.Duration
	for i := range n {
		req, err := newReq(ctx)
		if err != nil {
			return Latency{}, fmt.Errorf("envoytest: request %d: %w", i, err)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return Latency{}, fmt.Errorf("envoytest: request %d: %w", i, err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return Latency{}, fmt.Errorf("envoytest: request %d: read body: %w", i, err)
		}
		d := time.Since(start)
		times = append(times, d)
		total += d
		status[resp.StatusCode]++
	}
	slices.Sort(times)
	q := func(p float64) time.Duration {
		i := int(p * float64(len(times)-1))
		return times[i]
	}
	return Latency{
		N: n, Min: times[0], Median: q(0.5), P90: q(0.9), P99: q(0.99), Max: times[len(times)-1],
		Mean: total / time.Duration(n), Status: status,
	}, nil
}

// GetRequest returns a newReq function for MeasureLatency and BenchRequests
// that GETs url.
func GetRequest(url string) func(context.Context) (*http.Request, error) {
	return func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	}
}

// BenchRequests runs b's loop with one request per iteration through client
// and reports p50 and p99 latency (as p50-ns/op and p99-ns/op) next to ns/op.
// A non-2xx answer fails the benchmark.
func BenchRequests(b *testing.B, client *http.Client, newReq func(context.Context) (*http.Request, error)) {
	b.Helper()
	ctx := b.Context()
	var times []time.Duration
	for b.Loop() {
		req, err := newReq(ctx)
		if err != nil {
			b.Fatalf("envoytest: %v", err)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatalf("envoytest: %v", err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatalf("envoytest: read body: %v", err)
		}
		times = append(times, time.Since(start))
		if resp.StatusCode/100 != 2 {
			b.Fatalf("envoytest: status %d", resp.StatusCode)
		}
	}
	if len(times) == 0 {
		return
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "p50-ns/op")
	b.ReportMetric(float64(times[int(0.99*float64(len(times)-1))].Nanoseconds()), "p99-ns/op")
}
